#include "train/trained_model.h"

#include "train/model_config.h"
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
  const ModelConfig c = model_config_from_json(config, source);
  if (c.tower == TextTower::kLlm) return make_flame_model(c.vit, c.text_dim);
  return make_clip_model(c.vit, c.clip_text, c.vocab_size);
}

}  // namespace flame::train
