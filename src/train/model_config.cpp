#include "train/model_config.h"

#include "util/error.h"
#include "util/json_fields.h"

namespace flame::train {

namespace {

// Counted in double: the int64 sums of parameter_count() overflow for the
// absurd sizes a corrupt file can hold.
double vit_parameters(const vision::VitConfig& c) {
  const double w = static_cast<double>(c.width), m = static_cast<double>(c.width) * c.mlp_ratio;
  const double block = 4.0 * w * w + 2.0 * w * m;
  const double patches = static_cast<double>(c.image_size / c.patch_size);
  return 3.0 * c.patch_size * c.patch_size * w + (patches * patches + 1) * w + c.layers * block;
}

double clip_text_parameters(const text::ClipTextConfig& c, int64_t vocab_size) {
  const double w = static_cast<double>(c.width), m = static_cast<double>(c.width) * c.mlp_ratio;
  return (static_cast<double>(vocab_size) + c.context_length + c.embed_dim) * w +
         c.layers * (4.0 * w * w + 2.0 * w * m);
}

}  // namespace

ModelConfig model_config_from_json(const nlohmann::json& config, const std::string& source) {
  if (!config.is_object()) fail("{}: a checkpoint config must be a JSON object", source);
  if (!config.contains("vit") || !config.contains("text_dim")) fail("{}: lacks 'vit' or 'text_dim'", source);
  ModelConfig out;
  out.vit = vision::vit_config_from_json(config["vit"], source);
  out.text_dim = json_int(config, "text_dim", source, true, 0);
  require_positive(out.text_dim, "text_dim", source);
  const auto tower = config.find("text_tower");
  if (tower != config.end() && !tower->is_string()) fail("{}: field 'text_tower' must be a string", source);
  out.tower =
      parse_choice<TextTower>(config.value("text_tower", "llm"), fmt::format("{}: text_tower", source));
  double parameters = vit_parameters(out.vit) + static_cast<double>(out.text_dim) * out.vit.width * 2;
  if (out.tower == TextTower::kClip) {
    if (!config.contains("clip_text") || !config.contains("vocab_size")) {
      fail("{}: a CLIP checkpoint needs 'clip_text' and 'vocab_size'", source);
    }
    out.clip_text = text::clip_text_config_from_json(config["clip_text"], source);
    out.vocab_size = json_int(config, "vocab_size", source, true, 0);
    require_positive(out.vocab_size, "vocab_size", source);
    parameters += clip_text_parameters(out.clip_text, out.vocab_size);
  }
  if (!(parameters <= kMaxCheckpointParameters)) {
    fail("{}: these shapes make {:.3g} parameters, more than the limit of {:.0e}: the config is corrupt",
         source, parameters, kMaxCheckpointParameters);
  }
  return out;
}

}  // namespace flame::train
