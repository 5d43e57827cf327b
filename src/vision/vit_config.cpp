#include "vision/vit_config.h"

#include <algorithm>
#include <cstdlib>
#include <set>

#include "util/error.h"
#include "util/file.h"
#include "util/strings.h"

namespace flame::vision {

namespace {

using nlohmann::json;

const std::vector<std::string>& known_fields() {
  static const std::vector<std::string> fields = {
      "name", "image_size",    "patch_size",         "width",           "layers", "heads", "mlp_ratio",
      "pool", "patch_dropout", "grad_checkpointing", "projector_hidden"};
  return fields;
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ", ") + item;
  return out;
}

int64_t get_int(const json& j, const char* key, const std::string& source, bool required, int64_t fallback) {
  if (!j.contains(key)) {
    if (required) fail("{}: missing required field '{}'", source, key);
    return fallback;
  }
  const json& v = j.at(key);
  if (!v.is_number_integer()) fail("{}: field '{}' must be an integer, got {}", source, key, v.dump());
  return v.get<int64_t>();
}

double get_number(const json& j, const char* key, const std::string& source, double fallback) {
  if (!j.contains(key)) return fallback;
  const json& v = j.at(key);
  if (!v.is_number()) fail("{}: field '{}' must be a number, got {}", source, key, v.dump());
  return v.get<double>();
}

void require_positive(int64_t value, const char* key, const std::string& source) {
  if (value <= 0) fail("{}: field '{}' must be positive, got {}", source, key, value);
}

}  // namespace

int64_t VitConfig::parameter_count() const {
  const int64_t w = width;
  const int64_t m = mlp_width();
  const int64_t block = 2 * (2 * w)          // ln_1, ln_2
                        + 3 * w * w + 3 * w  // attn.in_proj
                        + w * w + w          // attn.out_proj
                        + w * m + m          // mlp.c_fc
                        + m * w + w;         // mlp.c_proj
  return 3 * patch_size * patch_size * w     // conv1 (no bias)
         + w                                 // class_embedding
         + (num_patches() + 1) * w           // positional_embedding
         + 2 * w                             // ln_pre
         + layers * block + 2 * w;           // blocks, ln_post
}

VitConfig vit_config_from_json(const json& j, const std::string& source) {
  if (!j.is_object()) fail("{}: a model config must be a JSON object", source);
  const auto& known = known_fields();
  for (const auto& item : j.items()) {
    if (std::find(known.begin(), known.end(), item.key()) == known.end()) {
      fail("{}: unknown field '{}' (known fields: {})", source, item.key(), join(known));
    }
  }
  VitConfig c;
  if (j.contains("name")) {
    if (!j.at("name").is_string()) fail("{}: field 'name' must be a string", source);
    c.name = j.at("name").get<std::string>();
  }
  c.image_size = get_int(j, "image_size", source, true, 0);
  c.patch_size = get_int(j, "patch_size", source, true, 0);
  c.width = get_int(j, "width", source, true, 0);
  c.layers = get_int(j, "layers", source, true, 0);
  c.heads = get_int(j, "heads", source, true, 0);
  c.mlp_ratio = get_number(j, "mlp_ratio", source, c.mlp_ratio);
  c.patch_dropout = get_number(j, "patch_dropout", source, c.patch_dropout);
  c.projector_hidden = get_int(j, "projector_hidden", source, false, c.projector_hidden);
  if (j.contains("pool")) {
    if (!j.at("pool").is_string()) fail("{}: field 'pool' must be a string", source);
    c.pool = j.at("pool").get<std::string>();
  }
  if (j.contains("grad_checkpointing")) {
    if (!j.at("grad_checkpointing").is_boolean()) {
      fail("{}: field 'grad_checkpointing' must be true or false", source);
    }
    c.grad_checkpointing = j.at("grad_checkpointing").get<bool>();
  }

  require_positive(c.image_size, "image_size", source);
  require_positive(c.patch_size, "patch_size", source);
  require_positive(c.width, "width", source);
  require_positive(c.layers, "layers", source);
  require_positive(c.heads, "heads", source);
  if (c.image_size % c.patch_size != 0) {
    fail("{}: field 'image_size' ({}) must be a multiple of 'patch_size' ({})", source, c.image_size,
         c.patch_size);
  }
  if (c.width % c.heads != 0) {
    fail("{}: field 'width' ({}) must be a multiple of 'heads' ({})", source, c.width, c.heads);
  }
  if (!(c.mlp_ratio > 0) || c.mlp_width() < 1) {
    fail("{}: field 'mlp_ratio' must give an MLP width of at least 1, got {}", source, c.mlp_ratio);
  }
  if (c.pool != "avg" && c.pool != "cls") {
    fail("{}: field 'pool' must be \"avg\" or \"cls\", got \"{}\"", source, c.pool);
  }
  if (!(c.patch_dropout >= 0.0 && c.patch_dropout < 1.0)) {
    fail("{}: field 'patch_dropout' must be in [0, 1), got {}", source, c.patch_dropout);
  }
  if (c.projector_hidden < 0) {
    fail("{}: field 'projector_hidden' must be >= 0 (0 = the text dimension), got {}", source,
         c.projector_hidden);
  }
  return c;
}

json to_json(const VitConfig& c) {
  return {{"name", c.name},
          {"image_size", c.image_size},
          {"patch_size", c.patch_size},
          {"width", c.width},
          {"layers", c.layers},
          {"heads", c.heads},
          {"mlp_ratio", c.mlp_ratio},
          {"pool", c.pool},
          {"patch_dropout", c.patch_dropout},
          {"grad_checkpointing", c.grad_checkpointing},
          {"projector_hidden", c.projector_hidden}};
}

std::filesystem::path model_config_dir() {
  if (const char* env = std::getenv("FLAME_CONFIG_DIR")) return std::filesystem::path(env) / "models";
  return std::filesystem::path(FLAME_SOURCE_DIR) / "configs" / "models";
}

std::vector<std::string> list_vit_presets() {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(model_config_dir(), ec)) {
    if (entry.path().extension() == ".json") names.push_back(entry.path().stem().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

VitConfig load_vit_config(const std::string& name_or_path) {
  // Anything that looks like a path is one; a bare word is a preset name.
  const bool is_path = ends_with(name_or_path, ".json") || name_or_path.find('/') != std::string::npos;
  const std::filesystem::path path =
      is_path ? std::filesystem::path(name_or_path) : model_config_dir() / (name_or_path + ".json");
  if (!std::filesystem::is_regular_file(path)) {
    if (is_path) fail("model config '{}' does not exist", path.string());
    fail("unknown model preset '{}' (no file '{}'; presets: {})", name_or_path, path.string(),
         join(list_vit_presets()));
  }
  VitConfig config = vit_config_from_json(read_json_file(path), path.string());
  if (config.name.empty()) config.name = path.stem().string();
  return config;
}

}  // namespace flame::vision
