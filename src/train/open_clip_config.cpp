#include "train/open_clip_config.h"

#include <fmt/format.h>

#include "text/store_manifest.h"
#include "train/model_config.h"
#include "util/error.h"
#include "util/json_fields.h"

namespace flame::train {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// A positive integer field, if present (a width, a depth, a size).
void check_positive_field(const json& section, const char* key, const std::string& source) {
  if (section.contains(key)) require_positive(json_int(section, key, source, false, 0), key, source);
}

// flame.text_stores as checkpoints hold it (read_text_provenance's reading,
// without its LLM checks).
void check_text_stores(const json& flame, const std::string& source) {
  const auto it = flame.find("text_stores");
  if (it == flame.end()) return;
  if (!it->is_array() || it->empty()) fail("{}: 'text_stores' must be a non-empty array", source);
  for (size_t i = 0; i < it->size(); ++i) {
    const std::string where = fmt::format("{}: text_stores[{}]", source, i);
    // flame records hidden_states' index (embed resolves a negative --layer):
    // a negative one was not written by flame, and eval could not place it.
    if (text::identity_from_json(it->at(i), where).layer < 0)
      fail("{}: field 'layer' {} is negative; flame records the hidden_states index (0 or more)", where,
           it->at(i)["layer"].dump());
  }
}

}  // namespace

// An object-valued section of a config (absent: empty); `where` names it.
json open_clip_config_section(const json& parent, const char* key, const fs::path& config,
                              const std::string& where) {
  if (!parent.contains(key)) return json::object();
  const json& v = parent[key];
  if (!v.is_object()) fail("{}: '{}' must be a JSON object, got {}", config.string(), where, v.dump());
  return v;
}

// A layer as one integer; `from` says where it was given.
int64_t parse_open_clip_layer(const std::string& text, const std::string& from) {
  try {
    size_t used = 0;
    const int64_t value = std::stoll(text, &used);
    if (used == text.size()) return value;
  } catch (const std::out_of_range&) {
    fail("{}: layer {} is out of range: no LLM has that many layers", from, text);
  } catch (const std::exception&) {
  }
  fail("{}: layer '{}' is not an integer (the released configs name one layer, e.g. \"39\")", from, text);
}

// The release config's text_cfg.layer: "39" or 39 (one integer either way).
std::optional<std::string> open_clip_config_layer(const json& config, const fs::path& path,
                                                  std::string* from) {
  const bool wrapped = config.contains("model_cfg");
  const std::string prefix = wrapped ? "model_cfg." : "";
  const json model_cfg = wrapped ? open_clip_config_section(config, "model_cfg", path, "model_cfg") : config;
  const json text_cfg = open_clip_config_section(model_cfg, "text_cfg", path, prefix + "text_cfg");
  if (!text_cfg.contains("layer")) return std::nullopt;
  *from = fmt::format("{}: {}text_cfg.layer", path.string(), prefix);
  const json& v = text_cfg["layer"];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_integer()) return v.dump();
  fail("{}: must be one layer number (\"39\" or 39), got {}", *from, v.dump());
}

void check_open_clip_config(const json& config, const fs::path& path) {
  const std::string file = path.string();
  if (!config.is_object()) fail("{}: a model config must be a JSON object", file);
  if (config.contains("flame")) {  // flame's export: its own record is what import reads
    const json flame = open_clip_config_section(config, "flame", path, "flame");
    if (!flame.contains("model")) fail("{}: the 'flame' section has no 'model'", file);
    if (model_config_from_json(flame["model"], file + ": flame.model").tower != TextTower::kLlm)
      fail("{}: only FLAME models can be imported", file);
    check_text_stores(flame, file + ": flame");
    if (flame.contains("weights_sha256") && !flame["weights_sha256"].is_string())
      fail("{}: flame.weights_sha256 must be a string, got {}", file, flame["weights_sha256"].dump());
    return;
  }
  const bool wrapped = config.contains("model_cfg");
  const std::string prefix = wrapped ? "model_cfg." : "";
  const json model_cfg = wrapped ? open_clip_config_section(config, "model_cfg", path, "model_cfg") : config;
  const json vision_cfg = open_clip_config_section(model_cfg, "vision_cfg", path, prefix + "vision_cfg");
  const std::string vision = fmt::format("{}: {}vision_cfg", file, prefix);
  for (const char* key : {"head_width", "width", "patch_size", "layers"})
    check_positive_field(vision_cfg, key, vision);
  if (vision_cfg.contains("image_size") && vision_cfg["image_size"].is_array()) {  // OpenCLIP's [H, W]
    if (vision_cfg["image_size"].size() != 2)
      fail("{}: field 'image_size' {} is neither one size nor [height, width]", vision,
           vision_cfg["image_size"].dump());
    for (const json& side : vision_cfg["image_size"])
      check_positive_field({{"image_size", side}}, "image_size", vision);
  } else {
    check_positive_field(vision_cfg, "image_size", vision);
  }
  const json pool = vision_cfg.value("pool_type", json("tok"));
  if (!pool.is_string() || (pool != "avg" && pool != "tok"))
    fail("{}: field 'pool_type' {} is not \"avg\" or \"tok\"", vision, pool.dump());
  const std::string mm = prefix + "mm_cfg";
  const json mm_cfg = open_clip_config_section(model_cfg, "mm_cfg", path, mm);
  const int64_t depth = json_int(mm_cfg, "mlp_depth", file + ": " + mm, false, 2);
  if (depth != 2) {
    fail("{}: {}.mlp_depth {}: FLAME's projector has two linear layers (mm.0, GELU, mm.2, LayerNorm mm.3)",
         file, mm, depth);
  }
  for (const char* key : {"width", "projector_dim"}) check_positive_field(mm_cfg, key, file + ": " + mm);
  std::string from;
  if (const auto layer = open_clip_config_layer(config, path, &from)) parse_open_clip_layer(*layer, from);
}

}  // namespace flame::train
