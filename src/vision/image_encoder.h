// ImageEncoder: the whole trainable side of FLAME. A ViT turns images into
// tokens, the projector maps every token into the frozen LLM's embedding space,
// (the CLIP baseline's image tower: a linear projection into the shared space),
// and the pooled token is what the contrastive loss compares with the stored
// text embeddings. The learned temperature (logit_scale) and the sigmoid
// loss's bias live here too so one module holds every trained parameter.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "vision/projector.h"
#include "vision/vit.h"
#include "vision/vit_config.h"

namespace flame::vision {

struct ImageFeatures {
  torch::Tensor tokens;  // [B, N', text_dim] projected patch tokens (no class token)
  torch::Tensor pooled;  // [B, text_dim], not normalised
};

// How ViT tokens reach the text space: FLAME's MLP projector (projector.h), or
// CLIP's bias-free linear projection ("proj", as OpenCLIP's visual.proj).
enum class ImageProjection { kMlp, kLinear };
std::string to_string(ImageProjection projection);
// "mlp" or "linear"; throws flame::Error naming `source` otherwise.
ImageProjection parse_image_projection(const std::string& name, const std::string& source);

class ImageEncoderImpl : public torch::nn::Module {
 public:
  // The projector's hidden width is config.projector_hidden, or text_dim when 0.
  ImageEncoderImpl(const VitConfig& config, int64_t text_dim,
                   ImageProjection projection = ImageProjection::kMlp);

  // images [B, 3, S, S]. Pooling "avg" = mean of the projected patch tokens,
  // "cls" = the projected class token.
  ImageFeatures encode(const torch::Tensor& images);
  // [B, width]: the ViT's output pooled as `encode` pools, before the
  // projection into the text space (the method's linear probe features,
  // its encode_image(visual_only=True)).
  torch::Tensor visual_features(const torch::Tensor& images);

  // exp(logit_scale) clamped to at most kMaxLogitScale. Below the clamp the
  // gradient reaches the parameter unchanged; above it, it is zero.
  torch::Tensor logit_scale_exp() const;
  // Clamps the parameter itself into [0, log(kMaxLogitScale)], as OpenCLIP does
  // after each optimizer step, so it can never sit in the zero-gradient region.
  void clamp_logit_scale_();

  const VitConfig& config() const { return config_; }
  int64_t text_dim() const { return text_dim_; }
  ImageProjection projection() const { return projection_; }

  static constexpr double kMaxLogitScale = 100.0;
  static constexpr double kInitLogitBias = -10.0;  // SigLIP's initial bias

  VisionTransformer vit{nullptr};
  Projector projector{nullptr};     // kMlp
  torch::nn::Linear proj{nullptr};  // kLinear
  torch::Tensor logit_scale;        // scalar, init log(1 / 0.07)
  torch::Tensor logit_bias;         // scalar, init -10; used by the sigmoid loss only

 private:
  torch::Tensor project(const torch::Tensor& tokens);

  VitConfig config_;
  int64_t text_dim_;
  ImageProjection projection_;
};
TORCH_MODULE(ImageEncoder);

// The parameters of `module` that take (decay = true) or skip weight decay:
// weight matrices (>= 2-D) decay; biases, norms, class / positional / token
// embeddings and logit_scale / logit_bias do not. The two groups hold every
// parameter once: the AdamW groups of every trained model (train/trained_model).
std::vector<torch::Tensor> weight_decay_group(const torch::nn::Module& module, bool decay);

}  // namespace flame::vision
