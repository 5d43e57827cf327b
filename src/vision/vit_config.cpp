#include "vision/vit_config.h"

#include <algorithm>
#include <cstdlib>
#include <set>

#include "util/config_files.h"
#include "util/error.h"
#include "util/file.h"
#include "util/json_fields.h"
#include "util/strings.h"

namespace flame::vision {

namespace {

using nlohmann::json;

const std::vector<std::string>& known_fields() {
  static const std::vector<std::string> fields = {"name",
                                                  "image_size",
                                                  "patch_size",
                                                  "width",
                                                  "layers",
                                                  "heads",
                                                  "mlp_ratio",
                                                  "pool",
                                                  "patch_dropout",
                                                  "grad_checkpointing",
                                                  "projector_hidden",
                                                  "ln_post"};
  return fields;
}

}  // namespace

int64_t residual_block_parameter_count(int64_t w, int64_t m) {
  return 2 * (2 * w)          // ln_1, ln_2
         + 3 * w * w + 3 * w  // attn.in_proj
         + w * w + w          // attn.out_proj
         + w * m + m          // mlp.c_fc
         + m * w + w;         // mlp.c_proj
}

int64_t VitConfig::parameter_count() const {
  const int64_t w = width;
  const int64_t block = residual_block_parameter_count(w, mlp_width());
  return 3 * patch_size * patch_size * w  // conv1 (no bias)
         + w                              // class_embedding
         + (num_patches() + 1) * w        // positional_embedding
         + 2 * w                          // ln_pre
         + layers * block + 2 * w;        // blocks, ln_post
}

VitConfig vit_config_from_json(const json& j, const std::string& source) {
  if (!j.is_object()) fail("{}: a model config must be a JSON object", source);
  check_known_fields(j, known_fields(), source);
  VitConfig c;
  if (j.contains("name")) {
    if (!j.at("name").is_string()) fail("{}: field 'name' must be a string", source);
    c.name = j.at("name").get<std::string>();
  }
  c.image_size = json_int(j, "image_size", source, true, 0);
  c.patch_size = json_int(j, "patch_size", source, true, 0);
  c.width = json_int(j, "width", source, true, 0);
  c.layers = json_int(j, "layers", source, true, 0);
  c.heads = json_int(j, "heads", source, true, 0);
  c.mlp_ratio = json_number(j, "mlp_ratio", source, c.mlp_ratio);
  c.patch_dropout = json_number(j, "patch_dropout", source, c.patch_dropout);
  c.projector_hidden = json_int(j, "projector_hidden", source, false, c.projector_hidden);
  if (j.contains("pool")) {
    if (!j.at("pool").is_string()) fail("{}: field 'pool' must be a string", source);
    c.pool = j.at("pool").get<std::string>();
  }
  for (const auto& [field, value] :
       {std::pair<const char*, bool*>{"grad_checkpointing", &c.grad_checkpointing},
        {"ln_post", &c.ln_post}}) {
    if (!j.contains(field)) continue;
    if (!j.at(field).is_boolean()) fail("{}: field '{}' must be true or false", source, field);
    *value = j.at(field).get<bool>();
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
  // Checked in double first: mlp_width() casts, undefined past int64.
  if (!(c.mlp_ratio > 0) || !(static_cast<double>(c.width) * c.mlp_ratio < 1e15) || c.mlp_width() < 1) {
    fail("{}: field 'mlp_ratio' must give an MLP width of at least 1 (and below 1e15), got {}", source,
         c.mlp_ratio);
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
          {"projector_hidden", c.projector_hidden},
          {"ln_post", c.ln_post}};
}

std::filesystem::path model_config_dir() {
  return config_dir("models");
}

std::vector<std::string> list_vit_presets() {
  return list_presets(model_config_dir());
}

VitConfig load_vit_config(const std::string& name_or_path) {
  const std::filesystem::path path = find_preset(name_or_path, {model_config_dir(), "model", "model preset"});
  VitConfig config = vit_config_from_json(read_json_file(path), path.string());
  if (config.name.empty()) config.name = path.stem().string();
  return config;
}

}  // namespace flame::vision
