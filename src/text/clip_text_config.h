// ClipTextConfig: the shape of a CLIP baseline's trainable text tower (an
// OpenCLIP-style causal text transformer) and the tokenizer it reads. Presets
// are JSON data in configs/models/clip-text/ (clip-text-b, clip-text-micro),
// a subfolder of the ViT presets' directory so that the ViT preset list stays
// ViT-only; a config can also be any JSON file with the same fields.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace flame::text {

struct ClipTextConfig {
  std::string name;
  int64_t context_length = 77;  // tokens per caption, EOT included
  int64_t width = 512;
  int64_t heads = 8;
  int64_t layers = 12;
  double mlp_ratio = 4.0;   // MLP hidden = int(width * mlp_ratio), as OpenCLIP
  int64_t embed_dim = 512;  // text_projection output
  // A tokenizer.json / .gguf / directory. A bare word ("smollm") names
  // <shared>/tokenizers/<word>; any other relative path is relative to <shared>
  // ($FLAME_SHARED_DIR, else the source tree's ../shared).
  std::string tokenizer = "smollm";

  int64_t mlp_width() const { return static_cast<int64_t>(static_cast<double>(width) * mlp_ratio); }
  // Parameters of the tower for a vocabulary of `vocab_size` tokens.
  int64_t parameter_count(int64_t vocab_size) const;
  // `tokenizer` resolved as described above.
  std::filesystem::path tokenizer_path() const;
};

// Parses and validates a config; errors name `source` and the field. Unknown
// fields are rejected so a typo cannot silently fall back to a default.
ClipTextConfig clip_text_config_from_json(const nlohmann::json& json, const std::string& source);

nlohmann::json to_json(const ClipTextConfig& config);

// A preset name ("clip-text-b", looked up in clip_text_config_dir()) or a path
// to a .json file. A file without "name" takes its file stem.
ClipTextConfig load_clip_text_config(const std::string& name_or_path);

// vision::model_config_dir() / "clip-text".
std::filesystem::path clip_text_config_dir();

// Preset names, sorted.
std::vector<std::string> list_clip_text_presets();

}  // namespace flame::text
