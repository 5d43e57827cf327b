#include "llm/attention.h"

#include <algorithm>
#include <limits>

#include "util/error.h"

namespace flame::llm {

torch::Tensor build_attention_mask(const torch::Tensor& new_valid, const torch::Tensor& past_valid,
                                   const torch::Tensor& custom, const torch::Tensor& q_positions,
                                   const torch::Tensor& k_positions, std::optional<int64_t> sliding_window) {
  const int64_t B = new_valid.size(0), T = new_valid.size(1);
  const int64_t P = past_valid.defined() ? past_valid.size(1) : 0;
  const torch::Tensor key_valid = P > 0 ? torch::cat({past_valid, new_valid}, 1) : new_valid;  // [B, S]
  torch::Tensor allowed;
  if (custom.defined()) {
    if (custom.dim() != 3 || custom.size(0) != B || custom.size(1) != T || custom.size(2) != P + T) {
      fail("attention mask has shape [{}], expected [{}, {}, {}] (batch, new tokens, past + new tokens)",
           fmt::join(custom.sizes(), ", "), B, T, P + T);
    }
    allowed = custom.to(new_valid.device(), torch::kBool).logical_and(key_valid.unsqueeze(1));
  } else {
    const auto opts = torch::TensorOptions().dtype(torch::kBool).device(new_valid.device());
    const torch::Tensor causal = torch::ones({T, T}, opts).tril();
    torch::Tensor pattern = P > 0 ? torch::cat({torch::ones({T, P}, opts), causal}, 1) : causal;
    allowed = pattern.unsqueeze(0).logical_and(key_valid.unsqueeze(1));
  }
  if (sliding_window) {
    const torch::Tensor distance = q_positions.unsqueeze(2) - k_positions.unsqueeze(1);  // [B, T, S]
    allowed = allowed.logical_and(distance < *sliding_window);
  }
  return allowed.contiguous();
}

namespace {

// Copies src into a new tensor of `dtype` with src's logical shape, contiguous.
torch::Tensor contiguous_as(const torch::Tensor& src, torch::ScalarType dtype) {
  torch::Tensor out = torch::empty(src.sizes(), src.options().dtype(dtype));
  out.copy_(src);
  return out;
}

}  // namespace

torch::Tensor grouped_attention(const AttentionInputs& in) {
  const int64_t B = in.q.size(0), Hq = in.q.size(1), T = in.q.size(2), D = in.q.size(3);
  const int64_t Hkv = in.k.size(1), G = Hq / Hkv;
  const bool has_past = in.past_k.defined() && in.past_k.size(2) > 0;
  const int64_t P = has_past ? in.past_k.size(2) : 0, S = P + T;
  const int64_t K = has_past ? in.rows_per_past : 1;
  if (B % K != 0) fail("attention: {} rows do not divide into groups of {}", B, K);
  const int64_t groups = B / K;
  const auto dtype = in.q.scalar_type();
  const float lowest = std::numeric_limits<float>::lowest();

  torch::Tensor out = torch::empty({B, T, Hq, D}, in.q.options());
  const int64_t per_group = K * Hq * T * S;
  const int64_t step = std::max<int64_t>(1, in.chunk_elements / std::max<int64_t>(1, per_group));
  for (int64_t g0 = 0; g0 < groups; g0 += step) {
    const int64_t ng = std::min(step, groups - g0), r0 = g0 * K, nr = ng * K;
    const torch::Tensor q = in.q.narrow(0, r0, nr);
    const torch::Tensor k = in.k.narrow(0, r0, nr);
    const torch::Tensor v = in.v.narrow(0, r0, nr);

    // Scores in fp32: [rows, kv_heads, group, T, S], past keys first.
    torch::Tensor scores = torch::empty({nr, Hkv, G, T, S}, in.q.options().dtype(torch::kFloat32));
    const torch::Tensor s_new = torch::bmm(q.view({nr * Hkv, G * T, D}), k.view({nr * Hkv, T, D}).transpose(1, 2));
    scores.narrow(-1, P, T).copy_(s_new.view({nr, Hkv, G, T, T}));
    torch::Tensor q_past;  // queries of the K rows sharing a past row, side by side
    if (has_past) {
      q_past = K == 1 ? q.view({ng * Hkv, G * T, D})
                      : contiguous_as(q.view({ng, K, Hkv, G * T, D}).permute({0, 2, 1, 3, 4}), dtype)
                            .view({ng * Hkv, K * G * T, D});
      const torch::Tensor pk = in.past_k.narrow(0, g0, ng).reshape({ng * Hkv, P, D});
      const torch::Tensor s_past = torch::bmm(q_past, pk.transpose(1, 2));  // [ng*Hkv, K*G*T, P]
      scores.narrow(-1, 0, P).view({ng, K, Hkv, G, T, P}).copy_(s_past.view({ng, Hkv, K, G, T, P}).permute({0, 2, 1, 3, 4, 5}));
    }
    const torch::Tensor blocked = in.allowed.narrow(0, r0, nr).logical_not().view({nr, 1, 1, T, S});
    scores.masked_fill_(blocked, lowest);  // lowest, not -inf: a fully masked (padding) row stays finite
    const torch::Tensor probs = torch::softmax(scores, -1);

    const torch::Tensor p_new = contiguous_as(probs.narrow(-1, P, T), dtype);
    torch::Tensor o = torch::bmm(p_new.view({nr * Hkv, G * T, T}), v.view({nr * Hkv, T, D}));  // [nr*Hkv, G*T, D]
    if (has_past) {
      const torch::Tensor p_past =
          contiguous_as(probs.narrow(-1, 0, P).view({ng, K, Hkv, G, T, P}).permute({0, 2, 1, 3, 4, 5}), dtype);
      const torch::Tensor pv = in.past_v.narrow(0, g0, ng).reshape({ng * Hkv, P, D});
      const torch::Tensor o_past = torch::bmm(p_past.view({ng * Hkv, K * G * T, P}), pv);
      o.view({ng, K, Hkv, G, T, D}).add_(o_past.view({ng, Hkv, K, G, T, D}).permute({0, 2, 1, 3, 4, 5}));
    }
    out.narrow(0, r0, nr).copy_(o.view({nr, Hq, T, D}).transpose(1, 2));
  }
  return out.view({B, T, Hq * D});
}

}  // namespace flame::llm
