// ClipTextTower: the trainable text tower of a CLIP baseline, OpenCLIP's
// TextTransformer: token and learned positional embeddings, pre-LN residual
// blocks (the ViT's, vision/vit.h) under a causal mask, ln_final, and the
// features at each caption's EOT token times text_projection. Parameter names
// follow OpenCLIP's text side (token_embedding.weight, positional_embedding,
// transformer.resblocks.0.attn.in_proj_weight, ..., ln_final.weight,
// text_projection) because checkpoints are written by name. The causal mask is
// built per call, not stored, so it is no buffer in the state dict (OpenCLIP's
// attn_mask is not persistent either).
//
// Initialisation (OpenCLIP's TextTransformer.init_parameters): token embedding
// N(0, 0.02); positional embedding N(0, 0.01); in_proj N(0, width^-0.5);
// out_proj and c_proj N(0, width^-0.5 (2 layers)^-0.5); c_fc N(0, (2 width)^-0.5);
// text_projection N(0, width^-0.5); attention biases zero; MLP biases and norms
// keep PyTorch's defaults.
#pragma once

#include <torch/torch.h>

#include <cstdint>

#include "text/clip_text_config.h"

namespace flame::text {

class ClipTextTowerImpl : public torch::nn::Module {
 public:
  ClipTextTowerImpl(const ClipTextConfig& config, int64_t vocab_size);

  // ids [N, T] (T <= context_length; clip_tokenize's rows) -> every position
  // after ln_final [N, T, width]. Position t depends on ids[:, 0..t] only.
  torch::Tensor hidden_states(const torch::Tensor& ids);
  // ids [N, T], eot_index [N] -> [N, embed_dim]: the hidden state at each
  // row's EOT times text_projection, not normalised. Runs the positions up
  // to the last EOT only (the rest cannot change the result).
  torch::Tensor forward(const torch::Tensor& ids, const torch::Tensor& eot_index);

  const ClipTextConfig& config() const { return config_; }
  int64_t vocab_size() const { return vocab_size_; }
  int64_t parameter_count() const;

  torch::nn::Embedding token_embedding{nullptr};
  torch::Tensor positional_embedding;              // [context_length, width]
  std::shared_ptr<torch::nn::Module> transformer;  // holds "resblocks", as OpenCLIP
  torch::nn::ModuleList resblocks{nullptr};
  torch::nn::LayerNorm ln_final{nullptr};
  torch::Tensor text_projection;  // [width, embed_dim]

 private:
  ClipTextConfig config_;
  int64_t vocab_size_;
};
TORCH_MODULE(ClipTextTower);

}  // namespace flame::text
