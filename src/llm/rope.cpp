#include "llm/rope.h"

#include <cmath>

#include "util/error.h"

namespace flame::llm {

torch::Tensor rope_inverse_frequencies(int64_t head_dim, double theta, const RopeScaling& scaling) {
  if (head_dim <= 0 || head_dim % 2 != 0) fail("rotary embeddings need an even head_dim, got {}", head_dim);
  // Same float32 operations as HF's _compute_default_rope_parameters, so the
  // frequencies agree to the bit.
  const auto exponents = torch::arange(0, head_dim, 2, torch::kInt64).to(torch::kFloat32) / head_dim;
  torch::Tensor inv_freq = 1.0 / torch::pow(theta, exponents);
  switch (scaling.type) {
    case RopeScaling::Type::None: break;
    case RopeScaling::Type::Linear: inv_freq = inv_freq / scaling.factor; break;
    case RopeScaling::Type::Llama3: {
      // HF _compute_llama3_parameters: long wavelengths are slowed down by
      // `factor`, short ones kept, and the band between interpolated smoothly.
      const double old_context = static_cast<double>(scaling.original_max_position_embeddings);
      const double low_freq_wavelen = old_context / scaling.low_freq_factor;
      const double high_freq_wavelen = old_context / scaling.high_freq_factor;
      const torch::Tensor wavelen = 2.0 * M_PI / inv_freq;
      torch::Tensor scaled = torch::where(wavelen > low_freq_wavelen, inv_freq / scaling.factor, inv_freq);
      const torch::Tensor smooth = (old_context / wavelen - scaling.low_freq_factor) /
                                   (scaling.high_freq_factor - scaling.low_freq_factor);
      const torch::Tensor smoothed = (1 - smooth) * scaled / scaling.factor + smooth * scaled;
      const torch::Tensor medium = (wavelen >= high_freq_wavelen).logical_and(wavelen <= low_freq_wavelen);
      inv_freq = torch::where(medium, smoothed, scaled);
      break;
    }
  }
  return inv_freq.to(torch::kFloat32).contiguous();
}

RotaryEmbedding::RotaryEmbedding(int64_t head_dim, double theta, const RopeScaling& scaling,
                                 const torch::Device& device)
    : inv_freq_(rope_inverse_frequencies(head_dim, theta, scaling).to(device)) {}

RopeTables RotaryEmbedding::tables(const torch::Tensor& positions, torch::ScalarType dtype) const {
  const torch::Tensor angles = positions.to(torch::kFloat32).unsqueeze(-1) * inv_freq_;
  return {angles.cos().to(dtype), angles.sin().to(dtype)};
}

torch::Tensor apply_rope(const torch::Tensor& x, const RopeTables& tables) {
  const int64_t half = x.size(-1) / 2;
  const torch::Tensor x1 = x.narrow(-1, 0, half);
  const torch::Tensor x2 = x.narrow(-1, half, half);
  const torch::Tensor cos = tables.cos.unsqueeze(1);  // broadcast over heads
  const torch::Tensor sin = tables.sin.unsqueeze(1);
  torch::Tensor out = torch::empty(x.sizes(), x.options().memory_format(torch::MemoryFormat::Contiguous));
  torch::Tensor out1 = out.narrow(-1, 0, half);
  torch::Tensor out2 = out.narrow(-1, half, half);
  // rotate_half(x) = [-x2, x1], so out = [x1 cos - x2 sin, x2 cos + x1 sin].
  torch::mul_out(out1, x1, cos);
  out1.addcmul_(x2, sin, -1);
  torch::mul_out(out2, x2, cos);
  out2.addcmul_(x1, sin);
  return out;
}

}  // namespace flame::llm
