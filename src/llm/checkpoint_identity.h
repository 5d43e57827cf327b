// Which LLM checkpoint made a store's vectors, cheaply enough to check on every
// start and resume of a multi-GB checkpoint.
//
// Hashing every weight byte (24 GB for Mistral-Nemo-12B) costs minutes per
// start. Instead the fingerprint hashes, per weight file in name order: the
// file name, its size, its whole safetensors header (every tensor's name,
// dtype, shape and offsets) and kSamplesPerFile evenly spaced 16 KiB samples
// of its data (the first and the last bytes included), about 1 MiB per file.
// Shapes alone cannot tell a fine-tune from its base model; the samples can,
// since fine-tuning changes essentially every weight. What it does not see is
// an edit confined to unsampled bytes: a deliberately altered checkpoint
// should get a new directory name or config.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>

namespace flame::llm {

inline constexpr int kSamplesPerFile = 64;
inline constexpr uint64_t kSampleBytes = 16 * 1024;

struct CheckpointIdentity {
  // {"name", "architecture", "config_sha256", "weights_fingerprint"}; the
  // fingerprint is "sampled-v1:<sha256 hex>". Compared as a whole.
  nlohmann::json json;
  uint64_t bytes_hashed = 0;  // config + headers + samples: what was read
};

// Throws flame::Error naming the directory or file when the checkpoint is
// unreadable (no config.json, no or malformed weight files).
CheckpointIdentity checkpoint_identity(const std::filesystem::path& llm_dir);

}  // namespace flame::llm
