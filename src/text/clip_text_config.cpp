#include "text/clip_text_config.h"

#include <algorithm>
#include <cstdlib>

#include "util/config_files.h"
#include "util/error.h"
#include "util/file.h"
#include "util/json_fields.h"
#include "util/strings.h"
#include "vision/vit_config.h"

namespace flame::text {

namespace {

using nlohmann::json;

const std::vector<std::string>& known_fields() {
  static const std::vector<std::string> fields = {"name",   "context_length", "width",     "heads",
                                                  "layers", "mlp_ratio",      "embed_dim", "tokenizer"};
  return fields;
}

std::string get_string(const json& j, const char* key, const std::string& source,
                       const std::string& fallback) {
  if (!j.contains(key)) return fallback;
  const json& v = j.at(key);
  if (!v.is_string()) fail("{}: field '{}' must be a string, got {}", source, key, v.dump());
  return v.get<std::string>();
}

}  // namespace

int64_t ClipTextConfig::parameter_count(int64_t vocab_size) const {
  const int64_t w = width;
  const int64_t block = vision::residual_block_parameter_count(w, mlp_width());
  return vocab_size * w            // token_embedding
         + context_length * w      // positional_embedding
         + layers * block + 2 * w  // blocks, ln_final
         + w * embed_dim;          // text_projection
}

std::filesystem::path ClipTextConfig::tokenizer_path() const {
  const std::filesystem::path p(tokenizer);
  if (p.is_absolute()) return p;
  if (tokenizer.find('/') == std::string::npos && !ends_with(tokenizer, ".json") &&
      !ends_with(tokenizer, ".gguf")) {
    return shared_dir() / "tokenizers" / tokenizer;
  }
  return shared_dir() / p;
}

ClipTextConfig clip_text_config_from_json(const json& j, const std::string& source) {
  if (!j.is_object()) fail("{}: a text tower config must be a JSON object", source);
  check_known_fields(j, known_fields(), source);
  ClipTextConfig c;
  c.name = get_string(j, "name", source, c.name);
  c.context_length = json_int(j, "context_length", source, true, 0);
  c.width = json_int(j, "width", source, true, 0);
  c.heads = json_int(j, "heads", source, true, 0);
  c.layers = json_int(j, "layers", source, true, 0);
  c.embed_dim = json_int(j, "embed_dim", source, true, 0);
  c.mlp_ratio = json_number(j, "mlp_ratio", source, c.mlp_ratio);
  c.tokenizer = get_string(j, "tokenizer", source, c.tokenizer);

  require_positive(c.context_length, "context_length", source);
  require_positive(c.width, "width", source);
  require_positive(c.heads, "heads", source);
  require_positive(c.layers, "layers", source);
  require_positive(c.embed_dim, "embed_dim", source);
  if (c.width % c.heads != 0) {
    fail("{}: field 'width' ({}) must be a multiple of 'heads' ({})", source, c.width, c.heads);
  }
  // Checked in double first: mlp_width() casts, undefined past int64.
  if (!(c.mlp_ratio > 0) || !(static_cast<double>(c.width) * c.mlp_ratio < 1e15) || c.mlp_width() < 1) {
    fail("{}: field 'mlp_ratio' must give an MLP width of at least 1 (and below 1e15), got {}", source,
         c.mlp_ratio);
  }
  if (c.tokenizer.empty()) fail("{}: field 'tokenizer' must not be empty", source);
  return c;
}

nlohmann::json to_json(const ClipTextConfig& c) {
  return {{"name", c.name},           {"context_length", c.context_length},
          {"width", c.width},         {"heads", c.heads},
          {"layers", c.layers},       {"mlp_ratio", c.mlp_ratio},
          {"embed_dim", c.embed_dim}, {"tokenizer", c.tokenizer}};
}

std::filesystem::path clip_text_config_dir() {
  return vision::model_config_dir() / "clip-text";
}

std::vector<std::string> list_clip_text_presets() {
  return list_presets(clip_text_config_dir());
}

ClipTextConfig load_clip_text_config(const std::string& name_or_path) {
  const std::filesystem::path path =
      find_preset(name_or_path, {clip_text_config_dir(), "text tower", "text tower preset"});
  ClipTextConfig config = clip_text_config_from_json(read_json_file(path), path.string());
  if (config.name.empty()) config.name = path.stem().string();
  return config;
}

}  // namespace flame::text
