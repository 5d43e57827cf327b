// Torch side of safetensors: a checkpoint's weight files (single file or
// shards listed in model.safetensors.index.json) read as torch tensors through
// memory maps, and torch tensors written as safetensors.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "util/safetensors.h"

namespace flame::llm {

torch::ScalarType to_torch_dtype(DType dtype);
DType from_torch_dtype(torch::ScalarType dtype);

// Parses "bf16" | "f16" | "fp16" | "f32" | "fp32" (any case); throws on others.
torch::ScalarType parse_compute_dtype(const std::string& name);
std::string short_dtype_name(torch::ScalarType dtype);  // "bf16", "f16", "f32"

// A zero-copy CPU tensor over a tensor's bytes in a mapped file; it keeps the
// map alive. Falls back to a copy when the bytes are not aligned for the dtype.
// The memory is read-only: never write into the result.
torch::Tensor mapped_tensor(const SafetensorsFile& file, const TensorInfo& info);

// Named weights of an LLM, whatever holds them: a Hugging Face checkpoint's
// safetensors files (WeightFiles) or one GGUF file (GgufWeights), both under
// Hugging Face's tensor names, so the model is built by one loader.
class WeightSource {
 public:
  virtual ~WeightSource() = default;
  virtual bool contains(const std::string& name) const = 0;
  // Whether get(name, dtype, device) makes a new tensor rather than a view of
  // the file: the loader then fuses projections for free.
  virtual bool copies(const std::string& name, torch::ScalarType dtype,
                      const torch::Device& device) const = 0;
  // The tensor in `dtype` on `device`; `expected_shape`, if given, is checked.
  virtual torch::Tensor get(const std::string& name, torch::ScalarType dtype, const torch::Device& device,
                            const std::vector<int64_t>& expected_shape = {}) const = 0;
};

// All weight files of a Hugging Face checkpoint directory.
class WeightFiles : public WeightSource {
 public:
  explicit WeightFiles(const std::filesystem::path& dir);

  const std::filesystem::path& dir() const { return dir_; }
  std::vector<std::string> names() const;
  bool contains(const std::string& name) const override { return where_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const;
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }

  // No copy when the tensor is stored in `dtype` and `device` is the CPU.
  bool copies(const std::string& name, torch::ScalarType dtype, const torch::Device& device) const override;
  torch::Tensor get(const std::string& name, torch::ScalarType dtype, const torch::Device& device,
                    const std::vector<int64_t>& expected_shape = {}) const override;

 private:
  std::filesystem::path dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const SafetensorsFile*> where_;
};

// Adds a (CPU-copied, contiguous) torch tensor to a writer.
void add_tensor(SafetensorsWriter& writer, const std::string& name, const torch::Tensor& tensor);

// Writes named tensors as DIR/model.safetensors, or, when shard_bytes > 0 and
// the total exceeds it, as model-0000i-of-0000n.safetensors shards plus
// model.safetensors.index.json. Every file is written atomically.
void write_checkpoint_weights(const std::filesystem::path& dir,
                              const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                              uint64_t shard_bytes = 0,
                              const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

}  // namespace flame::llm
