// Loading a frozen LLM (weights + tokenizer) from a checkpoint directory and
// the --dtype / --device strings of the commands: one place, so a bad flag
// value gets the same readable error in `flame embed`, `eval`, `interpret`
// and `llm embed|generate`.
#pragma once

#include <torch/torch.h>

#include <filesystem>
#include <memory>
#include <string>

#include "llm/tokenizer.h"
#include "llm/transformer.h"

namespace flame::llm {

// "cpu", "cuda" or "cuda:N". Throws flame::Error naming the value and the
// choices, or saying that CUDA is unavailable.
torch::Device parse_device(const std::string& value);

// bf16, f16 or f32 (and their long spellings, see parse_compute_dtype).
// Throws flame::Error naming the value and the choices.
torch::ScalarType parse_dtype(const std::string& value);

struct LoadedLlm {
  Transformer model;
  std::unique_ptr<Tokenizer> tokenizer;
};

// The checkpoint in `dir` in compute dtype `dtype` on `device` (flag values,
// checked before any weights are read) and its tokenizer.
LoadedLlm load_llm(const std::filesystem::path& dir, const std::string& dtype, const std::string& device);

}  // namespace flame::llm
