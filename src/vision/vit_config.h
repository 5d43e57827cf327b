// VitConfig: the shape of the trainable image tower (an OpenCLIP-style ViT)
// and its projector. Presets are JSON data in configs/models/ (vit-b-16, ...);
// a config can also be any JSON file with the same fields.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace flame::vision {

struct VitConfig {
  std::string name;
  int64_t image_size = 224;  // square input, pixels
  int64_t patch_size = 16;
  int64_t width = 768;
  int64_t layers = 12;
  int64_t heads = 12;
  double mlp_ratio = 4.0;           // MLP hidden = int(width * mlp_ratio), as OpenCLIP
  std::string pool = "avg";         // "avg": mean of patch tokens | "cls": the class token
  double patch_dropout = 0.0;       // fraction of patches dropped while training, in [0, 1)
  bool grad_checkpointing = false;  // recompute blocks in backward instead of keeping activations
  int64_t projector_hidden = 0;     // projector hidden width; 0 = the text dimension
  // ln_post on the tokens before they are projected. The method's released
  // checkpoints skip it (their projector reads the last block's output): false
  // for those (flame import); ln_post's weights are kept but unused.
  bool ln_post = true;

  int64_t grid_size() const { return image_size / patch_size; }
  int64_t num_patches() const { return grid_size() * grid_size(); }
  int64_t mlp_width() const { return static_cast<int64_t>(static_cast<double>(width) * mlp_ratio); }
  // Parameters of the ViT these shapes describe (no projector, no logit scale).
  int64_t parameter_count() const;
};

// Parses and validates a config; errors name `source` and the field. Unknown
// fields are rejected so a typo cannot silently fall back to a default.
VitConfig vit_config_from_json(const nlohmann::json& json, const std::string& source);

// Parameters of one pre-LN residual attention block (vision/vit.h), shared by
// the ViT and the CLIP text tower: ln_1, ln_2, attention in/out projections,
// MLP c_fc and c_proj, with biases.
int64_t residual_block_parameter_count(int64_t width, int64_t mlp_width);

nlohmann::json to_json(const VitConfig& config);

// A preset name ("vit-b-16", looked up in model_config_dir()) or a path to a
// .json file. A file without "name" takes its file stem.
VitConfig load_vit_config(const std::string& name_or_path);

// Directory of the presets: $FLAME_CONFIG_DIR/models, else the source tree's
// configs/models (as the prompt sets).
std::filesystem::path model_config_dir();

// Preset names, sorted.
std::vector<std::string> list_vit_presets();

}  // namespace flame::vision
