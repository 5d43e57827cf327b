// TrainedModel: what a run trains, as one module whose parameter names are the
// checkpoint's tensor names.
//   FLAME (text tower "llm"): the image encoder alone: vit.*, projector.*,
//     logit_scale, logit_bias. Its text side is the frozen LLM, never trained.
//   CLIP baseline (text tower "clip"): image.* (the image encoder with a linear
//     projection, holding logit_scale) and text.* (text::ClipTextTower).
// The checkpoint's config.json holds model_config_json(), from which
// model_from_config() rebuilds the same module.
#pragma once

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "text/clip_text_config.h"
#include "text/clip_text_tower.h"
#include "vision/image_encoder.h"
#include "vision/vit_config.h"

namespace flame::train {

struct TrainedModel {
  vision::ImageEncoder image{nullptr};
  text::ClipTextTower text{nullptr};        // CLIP baseline only
  std::shared_ptr<torch::nn::Module> root;  // every trained parameter, by checkpoint name

  bool is_clip() const { return !text.is_empty(); }
  // AdamW groups over every trained parameter (vision::weight_decay_group).
  std::vector<torch::Tensor> decay_parameters() const;
  std::vector<torch::Tensor> no_decay_parameters() const;
};

// FLAME: images into the LLM's `text_dim`-wide space through the MLP projector.
TrainedModel make_flame_model(const vision::VitConfig& vit, int64_t text_dim);
// CLIP: both towers into the text config's embed_dim; `vocab_size` tokens.
TrainedModel make_clip_model(const vision::VitConfig& vit, const text::ClipTextConfig& text,
                             int64_t vocab_size);

// {"vit", "text_dim", "image_projection"} and, for CLIP, {"text_tower": "clip",
// "clip_text", "vocab_size"}: the part of config.json that fixes the shapes.
nlohmann::json model_config_json(const TrainedModel& model);
// The module model_config_json() describes, freshly initialised; errors name
// `source` and the missing or bad field.
TrainedModel model_from_config(const nlohmann::json& config, const std::string& source);

}  // namespace flame::train
