#include "llm/load_llm.h"

#include "llm/weights.h"
#include "util/error.h"

namespace flame::llm {

torch::Device parse_device(const std::string& value) {
  torch::Device device = torch::kCPU;
  try {
    device = torch::Device(value);
  } catch (const c10::Error&) {
    fail("unknown --device '{}' (use cpu or cuda[:N])", value);
  }
  // LibTorch also parses "meta", "xla", "mps", ...: flame runs on none of them.
  if (!device.is_cpu() && !device.is_cuda()) fail("unknown --device '{}' (use cpu or cuda[:N])", value);
  if (device.is_cuda() && !torch::cuda::is_available()) {
    fail("--device {}: CUDA is not available in this LibTorch build or machine", value);
  }
  if (device.is_cuda() && device.has_index() &&
      device.index() >= static_cast<int>(torch::cuda::device_count())) {
    fail("--device {}: this machine has {} CUDA device(s), cuda:0..cuda:{}", value,
         torch::cuda::device_count(), static_cast<int>(torch::cuda::device_count()) - 1);
  }
  return device;
}

torch::ScalarType parse_dtype(const std::string& value) {
  try {
    return parse_compute_dtype(value);
  } catch (const Error&) {
    fail("unknown --dtype '{}' (use bf16, f16 or f32)", value);
  }
}

LoadedLlm load_llm(const std::filesystem::path& dir, const std::string& dtype, const std::string& device) {
  TransformerOptions options;
  options.dtype = parse_dtype(dtype);
  options.device = parse_device(device);
  Transformer model = Transformer::load(dir, options);
  return {std::move(model), Tokenizer::load(dir)};
}

}  // namespace flame::llm
