#include "vision/image_encoder.h"

#include <cmath>
#include <string>

#include "util/error.h"
#include "util/strings.h"

namespace flame::vision {

std::string to_string(ImageProjection projection) {
  return projection == ImageProjection::kLinear ? "linear" : "mlp";
}

ImageProjection parse_image_projection(const std::string& name, const std::string& source) {
  if (name == "mlp") return ImageProjection::kMlp;
  if (name == "linear") return ImageProjection::kLinear;
  fail("{}: image projection must be mlp or linear, not '{}'", source, name);
}

ImageEncoderImpl::ImageEncoderImpl(const VitConfig& config, int64_t text_dim, ImageProjection projection)
    : config_(config), text_dim_(text_dim), projection_(projection) {
  if (text_dim <= 0) fail("{}: text dimension must be positive, got {}", config.name, text_dim);
  vit = register_module("vit", VisionTransformer(config));
  if (projection == ImageProjection::kLinear) {
    proj = register_module("proj",
                           torch::nn::Linear(torch::nn::LinearOptions(config.width, text_dim).bias(false)));
    torch::NoGradGuard no_grad;
    proj->weight.normal_(0.0, std::pow(static_cast<double>(config.width), -0.5));  // OpenCLIP: scale * randn
  } else {
    const int64_t hidden = config.projector_hidden > 0 ? config.projector_hidden : text_dim;
    projector = register_module("projector", Projector(config.width, hidden, text_dim));
  }
  logit_scale = register_parameter("logit_scale", torch::full({}, std::log(1.0 / 0.07)));
  logit_bias = register_parameter("logit_bias", torch::full({}, kInitLogitBias));
}

torch::Tensor ImageEncoderImpl::project(const torch::Tensor& tokens) {
  return projection_ == ImageProjection::kLinear ? proj(tokens) : projector(tokens);
}

// With the linear projection, projecting every token and then pooling equals
// OpenCLIP's pool-then-project (the mean commutes with a linear map).
ImageFeatures ImageEncoderImpl::encode(const torch::Tensor& images) {
  const torch::Tensor hidden = vit(images);  // [B, 1 + N', W]
  ImageFeatures out;
  if (config_.pool == "cls") {
    const torch::Tensor projected = project(hidden);
    out.tokens = projected.slice(1, 1);
    out.pooled = projected.select(1, 0);
  } else {
    out.tokens = project(hidden.slice(1, 1));
    out.pooled = out.tokens.mean(1);
  }
  return out;
}

torch::Tensor ImageEncoderImpl::visual_features(const torch::Tensor& images) {
  const torch::Tensor hidden = vit(images);  // [B, 1 + N', W]
  return config_.pool == "cls" ? hidden.select(1, 0) : hidden.slice(1, 1).mean(1);
}

torch::Tensor ImageEncoderImpl::logit_scale_exp() const {
  return logit_scale.exp().clamp_max(kMaxLogitScale);
}

void ImageEncoderImpl::clamp_logit_scale_() {
  torch::NoGradGuard no_grad;
  logit_scale.clamp_(0.0, std::log(kMaxLogitScale));
}

std::vector<torch::Tensor> weight_decay_group(const torch::nn::Module& module, bool decay) {
  std::vector<torch::Tensor> group;
  for (const auto& item : module.named_parameters()) {
    const std::string& name = item.key();
    // Embeddings are 2-D but are not decayed.
    const bool is_embedding = ends_with(name, "class_embedding") || ends_with(name, "positional_embedding") ||
                              ends_with(name, "token_embedding.weight");
    const bool decays = item.value().dim() >= 2 && !is_embedding;
    if (decays == decay) group.push_back(item.value());
  }
  return group;
}

}  // namespace flame::vision
