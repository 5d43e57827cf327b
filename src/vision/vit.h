// VisionTransformer: the trainable image tower, OpenCLIP's VisionTransformer
// (pre-LN blocks, fused q/k/v projection, GELU MLP, class token, learned
// positions, ln_pre and ln_post) without its final projection matrix; FLAME's
// projector (projector.h) takes that role. Parameter names follow OpenCLIP's
// visual tower (conv1.weight, transformer.resblocks.0.attn.in_proj_weight, ...)
// because checkpoints are written by name.
//
// Initialisation: class and positional embeddings N(0, width^-0.5); in_proj
// N(0, width^-0.5); out_proj and c_proj N(0, width^-0.5 (2 layers)^-0.5);
// c_fc N(0, (2 width)^-0.5); attention biases zero; conv1, MLP biases and norms
// keep PyTorch's defaults.
#pragma once

#include <torch/torch.h>

#include <cstdint>

#include "vision/vit_config.h"

namespace flame::vision {

// Patch dropout (training only): keeps the class token (index 0) and a random
// max(1, int(N (1 - prob))) of the N patch tokens of each image, in their
// original order, as OpenCLIP's PatchDropout (which keeps them in random order).
// Draws from the torch RNG, so it is repeatable under torch::manual_seed.
// tokens: [B, 1 + N, W] -> [B, 1 + kept, W]. prob must be in [0, 1).
torch::Tensor drop_patches(const torch::Tensor& tokens, double prob);

// softmax(q k^T / sqrt(Dh) + attn_mask) v over [B, H, T, Dh] inputs, written
// out as batched matrix products; with a mask the softmax runs in fp32, the
// probabilities cast back to q's dtype.
torch::Tensor explicit_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                 const torch::Tensor& attn_mask);
// The same through scaled_dot_product_attention's fused kernels on CUDA with
// LibTorch >= 2.0; explicit_attention otherwise.
torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        const torch::Tensor& attn_mask);

// Multi-head self-attention with OpenCLIP's (nn.MultiheadAttention's) parameter
// layout: in_proj_weight [3W, W] (q, k, v stacked), in_proj_bias [3W], out_proj.
// attn_mask (optional, as nn.MultiheadAttention's float mask): added to the
// scores before the softmax, broadcastable to [B, H, T, T]; -inf hides a key
// (causal_mask() for the text tower). Undefined: every token sees every token.
class AttentionImpl : public torch::nn::Module {
 public:
  AttentionImpl(int64_t width, int64_t heads);
  // [B, T, W] -> [B, T, W]
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& attn_mask = {});

  torch::Tensor in_proj_weight;
  torch::Tensor in_proj_bias;
  torch::nn::Linear out_proj{nullptr};

 private:
  int64_t heads_;
};
TORCH_MODULE(Attention);

class MlpImpl : public torch::nn::Module {
 public:
  MlpImpl(int64_t width, int64_t hidden);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::Linear c_fc{nullptr};
  torch::nn::GELU gelu{nullptr};
  torch::nn::Linear c_proj{nullptr};
};
TORCH_MODULE(Mlp);

// Pre-LN residual block: x + attn(ln_1(x)), then x + mlp(ln_2(x)). attn_mask
// as AttentionImpl's.
class ResidualAttentionBlockImpl : public torch::nn::Module {
 public:
  ResidualAttentionBlockImpl(int64_t width, int64_t heads, int64_t mlp_width);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& attn_mask = {});

  torch::nn::LayerNorm ln_1{nullptr};
  Attention attn{nullptr};
  torch::nn::LayerNorm ln_2{nullptr};
  Mlp mlp{nullptr};
};
TORCH_MODULE(ResidualAttentionBlock);

// OpenCLIP's init of a stack of `blocks` (ResidualAttentionBlocks of `width`),
// shared by the ViT and the text tower: in_proj N(0, width^-0.5), out_proj and
// c_proj N(0, width^-0.5 (2 layers)^-0.5), c_fc N(0, (2 width)^-0.5), out_proj
// bias zero; block by block, in that order (the RNG draws are part of the seed).
void init_residual_blocks(torch::nn::ModuleList& blocks, int64_t width);

// OpenCLIP's build_causal_mask: [T, T] fp32, 0 on and below the diagonal and
// -inf above it, so token t attends to tokens 0..t only.
torch::Tensor causal_mask(int64_t tokens, const torch::Device& device = torch::kCPU);

// Runs `block` on x without keeping its activations; the backward pass runs it
// again with grad enabled and back-propagates through the recomputation. The
// block must be deterministic (ours is: no dropout inside blocks).
torch::Tensor checkpointed_block(const ResidualAttentionBlock& block, const torch::Tensor& x);

class VisionTransformerImpl : public torch::nn::Module {
 public:
  explicit VisionTransformerImpl(const VitConfig& config);

  // images [B, 3, S, S] (S = image_size, converted to the weights' dtype) ->
  // tokens after ln_post (unless config.ln_post is false) [B, 1 + N', width],
  // class token first. N' = N patches,
  // or fewer while training with patch dropout.
  torch::Tensor forward(const torch::Tensor& images);

  const VitConfig& config() const { return config_; }
  // Recompute blocks in backward (used only while training with grad enabled).
  void set_grad_checkpointing(bool enabled) { config_.grad_checkpointing = enabled; }
  int64_t parameter_count() const;

  torch::nn::Conv2d conv1{nullptr};
  torch::Tensor class_embedding;       // [width]
  torch::Tensor positional_embedding;  // [1 + N, width]
  torch::nn::LayerNorm ln_pre{nullptr};
  std::shared_ptr<torch::nn::Module> transformer;  // holds "resblocks", as OpenCLIP
  torch::nn::ModuleList resblocks{nullptr};
  torch::nn::LayerNorm ln_post{nullptr};

 private:
  VitConfig config_;
};
TORCH_MODULE(VisionTransformer);

}  // namespace flame::vision
