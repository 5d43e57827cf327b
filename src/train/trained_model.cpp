#include "train/trained_model.h"

#include "train/train_options.h"
#include "util/error.h"

namespace flame::train {

std::vector<torch::Tensor> TrainedModel::decay_parameters() const {
  return vision::weight_decay_group(*root, true);
}

std::vector<torch::Tensor> TrainedModel::no_decay_parameters() const {
  return vision::weight_decay_group(*root, false);
}

TrainedModel make_flame_model(const vision::VitConfig& vit, int64_t text_dim) {
  TrainedModel m;
  m.image = vision::ImageEncoder(vit, text_dim, vision::ImageProjection::kMlp);
  m.root = m.image.ptr();
  return m;
}

TrainedModel make_clip_model(const vision::VitConfig& vit, const text::ClipTextConfig& text,
                             int64_t vocab_size) {
  TrainedModel m;
  m.image = vision::ImageEncoder(vit, text.embed_dim, vision::ImageProjection::kLinear);
  m.text = text::ClipTextTower(text, vocab_size);
  m.root = std::make_shared<torch::nn::Module>("ClipModel");
  m.root->register_module("image", m.image.ptr());
  m.root->register_module("text", m.text.ptr());
  return m;
}

nlohmann::json model_config_json(const TrainedModel& model) {
  nlohmann::json j = {{"vit", vision::to_json(model.image->config())},
                      {"text_dim", model.image->text_dim()},
                      {"image_projection", vision::to_string(model.image->projection())}};
  if (model.is_clip()) {
    j["text_tower"] = to_string(TextTower::kClip);
    j["clip_text"] = text::to_json(model.text->config());
    j["vocab_size"] = model.text->vocab_size();
  }
  return j;
}

TrainedModel model_from_config(const nlohmann::json& config, const std::string& source) {
  if (!config.contains("vit") || !config.contains("text_dim")) fail("{}: lacks 'vit' or 'text_dim'", source);
  const vision::VitConfig vit = vision::vit_config_from_json(config["vit"], source);
  const TextTower tower =
      parse_choice<TextTower>(config.value("text_tower", "llm"), fmt::format("{}: text_tower", source));
  if (tower == TextTower::kLlm) return make_flame_model(vit, config["text_dim"].get<int64_t>());
  if (!config.contains("clip_text") || !config.contains("vocab_size")) {
    fail("{}: a CLIP checkpoint needs 'clip_text' and 'vocab_size'", source);
  }
  return make_clip_model(vit, text::clip_text_config_from_json(config["clip_text"], source),
                         config["vocab_size"].get<int64_t>());
}

}  // namespace flame::train
