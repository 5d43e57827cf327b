// Generates Hugging Face checkpoint directories with seeded random weights:
// config.json with the exact fields of a real model (or a tiny test shape),
// model.safetensors (optionally sharded), and the tokenizer files copied from a
// tokenizer directory. Used by tests, the demo and the benchmarks, since no
// pretrained weights can be downloaded here.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace flame::llm {

struct RandomCheckpointOptions {
  std::string arch;    // "llama" | "qwen2" | "mistral"; empty = the preset's own
  std::string preset = "tiny";  // "tiny", a preset in configs/llm/ or a config.json path
  std::filesystem::path tokenizer_dir;  // copied into the output; may be empty
  uint64_t seed = 0;
  std::string dtype = "bf16";  // "bf16" | "f16" | "f32"
  uint64_t shard_bytes = 0;    // 0 = one file
  int64_t num_layers = 0;      // 0 = the preset's; lets benchmarks shrink depth
};

// "tiny" and the real models' config.json files in configs/llm/.
std::vector<std::string> random_checkpoint_presets();

// The config.json that `options` describes. For `tiny`, vocab_size covers the
// tokenizer (`tokenizer_vocab_size`, 0 = none given: 256). Real-model presets
// keep the real model's vocab_size.
nlohmann::ordered_json random_checkpoint_config(const RandomCheckpointOptions& options, int64_t tokenizer_vocab_size);

// Largest token id + 1 in a tokenizer.json (model vocab and added tokens).
int64_t tokenizer_json_vocab_size(const std::filesystem::path& tokenizer_json);

// Writes the checkpoint directory. Throws flame::Error on bad options.
void make_random_checkpoint(const RandomCheckpointOptions& options, const std::filesystem::path& out_dir);

}  // namespace flame::llm
