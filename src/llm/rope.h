// Rotary position embeddings as Hugging Face transformers computes them:
// inv_freq[i] = 1 / theta^(2i / head_dim) in float32, rescaled for "linear" or
// "llama3" rope_scaling, angles = position * inv_freq, and the "rotate_half"
// convention: the first half of a head's dimensions pairs with the second half.
#pragma once

#include <torch/torch.h>

#include <cstdint>

#include "llm/config.h"

namespace flame::llm {

// inv_freq [head_dim / 2], float32, on the CPU.
torch::Tensor rope_inverse_frequencies(int64_t head_dim, double theta, const RopeScaling& scaling);

// Cosines and sines of the angles for each position, half width (HF repeats
// them for the second half of the head): each [positions.sizes()..., head_dim / 2].
struct RopeTables {
  torch::Tensor cos;
  torch::Tensor sin;
};

class RotaryEmbedding {
 public:
  RotaryEmbedding() = default;
  RotaryEmbedding(int64_t head_dim, double theta, const RopeScaling& scaling, const torch::Device& device);

  // Angles computed in float32 (as HF), returned in `dtype` on `positions`' device.
  RopeTables tables(const torch::Tensor& positions, torch::ScalarType dtype) const;

  const torch::Tensor& inverse_frequencies() const { return inv_freq_; }

 private:
  torch::Tensor inv_freq_;  // float32 on the model's device
};

// x: [B, heads, T, head_dim] (any strides); tables: [B, T, head_dim / 2] in
// x's dtype. Returns x * cos + rotate_half(x) * sin as a new contiguous
// [B, heads, T, head_dim] tensor.
torch::Tensor apply_rope(const torch::Tensor& x, const RopeTables& tables);

}  // namespace flame::llm
