// An LLM in one GGUF file, as llama.cpp writes them (convert_hf_to_gguf.py):
// its config from the "<arch>.*" metadata and its weights under Hugging Face's
// names, dequantised on load, so the Transformer and the tokenizer treat a
// .gguf file like a checkpoint folder. Architectures: llama (also Mistral and
// SmolLM, which llama.cpp writes as llama) and qwen2.
//
// llama.cpp stores llama's q/k projection rows permuted for its interleaved
// RoPE (LlamaModel.permute: per head [2, D/2] rows -> [D/2, 2]); the loader
// permutes them back to Hugging Face's rotate-half order. qwen2 is stored as is.
#pragma once

#include <torch/torch.h>

#include <filesystem>
#include <map>
#include <string>

#include "llm/config.h"
#include "llm/gguf.h"
#include "llm/gguf_config.h"
#include "llm/weights.h"
#include "util/file.h"

namespace flame::llm {

// A tensor of `file` (parsed from `map`), dequantised to float32 in GGUF's
// row order and PyTorch's dimension order ([ne1, ne0]): what the gguf
// package's quants.dequantize gives. Errors name the file, tensor and type.
torch::Tensor dequantize_gguf_tensor(const GgufFile& file, const MappedFile& map, const GgufTensorInfo& info);

class GgufWeights : public WeightSource {
 public:
  explicit GgufWeights(const std::filesystem::path& path);

  const GgufFile& file() const { return file_; }
  const LlmConfig& config() const { return config_; }
  const MappedFile& mapping() const { return map_; }

  bool contains(const std::string& name) const override { return by_hf_name_.count(name) != 0; }
  bool copies(const std::string&, torch::ScalarType, const torch::Device&) const override { return true; }
  // Dequantised to float32 (dequantize_gguf_tensor), un-permuted, then
  // converted to `dtype` on `device`.
  torch::Tensor get(const std::string& name, torch::ScalarType dtype, const torch::Device& device,
                    const std::vector<int64_t>& expected_shape = {}) const override;

 private:
  MappedFile map_;
  GgufFile file_;
  LlmConfig config_;
  bool permuted_qk_ = false;                                 // llama.cpp permuted q/k rows (llama), see above
  std::map<std::string, const GgufTensorInfo*> by_hf_name_;  // Hugging Face name -> stored tensor
};

}  // namespace flame::llm
