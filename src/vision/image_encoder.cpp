#include "vision/image_encoder.h"

#include <cmath>
#include <string>

#include "util/error.h"
#include "util/strings.h"

namespace flame::vision {

ImageEncoderImpl::ImageEncoderImpl(const VitConfig& config, int64_t text_dim)
    : config_(config), text_dim_(text_dim) {
  if (text_dim <= 0) fail("{}: text dimension must be positive, got {}", config.name, text_dim);
  vit = register_module("vit", VisionTransformer(config));
  const int64_t hidden = config.projector_hidden > 0 ? config.projector_hidden : text_dim;
  projector = register_module("projector", Projector(config.width, hidden, text_dim));
  logit_scale = register_parameter("logit_scale", torch::full({}, std::log(1.0 / 0.07)));
  logit_bias = register_parameter("logit_bias", torch::full({}, kInitLogitBias));
}

ImageFeatures ImageEncoderImpl::encode(const torch::Tensor& images) {
  const torch::Tensor hidden = vit(images);  // [B, 1 + N', W]
  ImageFeatures out;
  if (config_.pool == "cls") {
    const torch::Tensor projected = projector(hidden);
    out.tokens = projected.slice(1, 1);
    out.pooled = projected.select(1, 0);
  } else {
    out.tokens = projector(hidden.slice(1, 1));
    out.pooled = out.tokens.mean(1);
  }
  return out;
}

torch::Tensor ImageEncoderImpl::logit_scale_exp() const {
  return logit_scale.exp().clamp_max(kMaxLogitScale);
}

void ImageEncoderImpl::clamp_logit_scale_() {
  torch::NoGradGuard no_grad;
  logit_scale.clamp_(0.0, std::log(kMaxLogitScale));
}

std::vector<torch::Tensor> ImageEncoderImpl::parameter_group(bool decay) const {
  std::vector<torch::Tensor> group;
  for (const auto& item : named_parameters()) {
    const std::string& name = item.key();
    // positional_embedding is 2-D but, like every embedding, is not decayed.
    const bool is_embedding = ends_with(name, "class_embedding") || ends_with(name, "positional_embedding");
    const bool decays = item.value().dim() >= 2 && !is_embedding;
    if (decays == decay) group.push_back(item.value());
  }
  return group;
}

std::vector<torch::Tensor> ImageEncoderImpl::decay_parameters() const {
  return parameter_group(true);
}

std::vector<torch::Tensor> ImageEncoderImpl::no_decay_parameters() const {
  return parameter_group(false);
}

}  // namespace flame::vision
