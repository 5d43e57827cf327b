// A GGUF file's LLM config, without LibTorch (the config parser and its fuzz
// target use it; the weights are llm/gguf_model.h).
#pragma once

#include <filesystem>

#include "llm/config.h"
#include "llm/gguf.h"

namespace flame::llm {

// A path naming a GGUF file (by extension, or by its magic bytes).
bool is_gguf_file(const std::filesystem::path& path);

// The config a Hugging Face config.json would hold for this GGUF, checked by
// the same parser; errors name the file and the metadata key.
LlmConfig gguf_llm_config(const GgufFile& file);

// llama.cpp permuted llama's q/k projection rows for its interleaved RoPE
// (LlamaModel.permute); qwen2 is stored as is. Throws for an architecture
// flame does not read.
bool gguf_permutes_qk(const GgufFile& file);

}  // namespace flame::llm
