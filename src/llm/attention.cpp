#include "llm/attention.h"

#include <algorithm>
#include <limits>

#include "llm/cpu_kernels.h"
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

std::vector<QueryBlock> plan_query_blocks(const torch::Tensor& allowed, int64_t past, int64_t block_size) {
  const int64_t T = allowed.size(1);
  // last[t] = 1 + the last new key query t may attend to in any row (0: none).
  const torch::Tensor any = allowed.narrow(2, past, T).any(0).to(torch::kCPU);  // [T, T]
  const torch::Tensor index = torch::arange(1, T + 1, torch::kInt64);
  const torch::Tensor last = torch::where(any, index.unsqueeze(0), torch::zeros_like(index).unsqueeze(0)).amax(1);
  const auto* l = last.data_ptr<int64_t>();
  const int64_t n = std::max<int64_t>(1, (T + block_size - 1) / block_size);
  std::vector<QueryBlock> blocks;
  for (int64_t i = 0; i < n; ++i) {
    QueryBlock b;
    b.begin = i * T / n;
    b.size = (i + 1) * T / n - b.begin;
    for (int64_t t = b.begin; t < b.begin + b.size; ++t) b.new_keys = std::max(b.new_keys, l[t]);
    b.new_keys = std::max<int64_t>(1, b.new_keys);  // a block of padding still gets one key: no empty softmax
    blocks.push_back(b);
  }
  return blocks;
}

torch::Tensor grouped_attention(const AttentionInputs& in) {
  const int64_t B = in.q.size(0), Hq = in.q.size(1), T = in.q.size(2), D = in.q.size(3);
  const int64_t Hkv = in.k.size(1), G = Hq / Hkv;
  const bool has_past = in.past_k.defined() && in.past_k.size(2) > 0;
  const int64_t P = has_past ? in.past_k.size(2) : 0;
  const int64_t K = has_past ? in.rows_per_past : 1;
  if (B % K != 0) fail("attention: {} rows do not divide into groups of {}", B, K);
  const int64_t groups = B / K;
  const auto dtype = in.q.scalar_type();
  const std::vector<QueryBlock> blocks = in.blocks.empty() ? std::vector<QueryBlock>{{0, T, T}} : in.blocks;

  torch::Tensor out = torch::empty({B, T, Hq, D}, in.q.options());
  const int64_t per_group = K * Hq * T * (P + T);
  const int64_t step = std::max<int64_t>(1, in.chunk_elements / std::max<int64_t>(1, per_group));
  for (int64_t g0 = 0; g0 < groups; g0 += step) {
    const int64_t ng = std::min(step, groups - g0), r0 = g0 * K, nr = ng * K;
    for (const QueryBlock& block : blocks) {
      const int64_t Tq = block.size, Tk = block.new_keys, S = P + Tk;
      // Queries of the block: [nr, Hq, Tq, D] -> rows of all heads of a kv head's group.
      torch::Tensor q = in.q.narrow(0, r0, nr).narrow(2, block.begin, Tq);
      if (Tq != T) q = q.contiguous();
      const torch::Tensor k = in.k.narrow(0, r0, nr).narrow(2, 0, Tk).reshape({nr * Hkv, Tk, D});
      const torch::Tensor v = in.v.narrow(0, r0, nr).narrow(2, 0, Tk).reshape({nr * Hkv, Tk, D});

      // Scores in fp32: [rows, kv_heads, group, Tq, S], past keys first.
      torch::Tensor scores = torch::empty({nr, Hkv, G, Tq, S}, in.q.options().dtype(torch::kFloat32));
      const torch::Tensor s_new = torch::bmm(q.view({nr * Hkv, G * Tq, D}), k.transpose(1, 2));
      scores.narrow(-1, P, Tk).copy_(s_new.view({nr, Hkv, G, Tq, Tk}));
      if (has_past) {
        // The K rows sharing a past row multiply its keys in one matmul.
        const torch::Tensor q_past =
            K == 1 ? q.view({ng * Hkv, G * Tq, D})
                   : contiguous_as(q.view({ng, K, Hkv, G * Tq, D}).permute({0, 2, 1, 3, 4}), dtype)
                         .view({ng * Hkv, K * G * Tq, D});
        const torch::Tensor pk = in.past_k.narrow(0, g0, ng).reshape({ng * Hkv, P, D});
        const torch::Tensor s_past = torch::bmm(q_past, pk.transpose(1, 2));  // [ng*Hkv, K*G*Tq, P]
        scores.narrow(-1, 0, P).view({ng, K, Hkv, G, Tq, P}).copy_(
            s_past.view({ng, Hkv, K, G, Tq, P}).permute({0, 2, 1, 3, 4, 5}));
      }
      torch::Tensor probs = scores.view({nr, Hkv * G, Tq, S});
      masked_softmax_(probs, in.allowed.narrow(0, r0, nr).narrow(1, block.begin, Tq).narrow(2, 0, S));
      probs = probs.view({nr, Hkv, G, Tq, S});

      const torch::Tensor p_new = contiguous_as(probs.narrow(-1, P, Tk), dtype);
      torch::Tensor o = torch::bmm(p_new.view({nr * Hkv, G * Tq, Tk}), v);  // [nr*Hkv, G*Tq, D]
      if (has_past) {
        const torch::Tensor p_past =
            contiguous_as(probs.narrow(-1, 0, P).view({ng, K, Hkv, G, Tq, P}).permute({0, 2, 1, 3, 4, 5}), dtype);
        const torch::Tensor pv = in.past_v.narrow(0, g0, ng).reshape({ng * Hkv, P, D});
        const torch::Tensor o_past = torch::bmm(p_past.view({ng * Hkv, K * G * Tq, P}), pv);
        o.view({ng, K, Hkv, G, Tq, D}).add_(o_past.view({ng, Hkv, K, G, Tq, D}).permute({0, 2, 1, 3, 4, 5}));
      }
      out.narrow(0, r0, nr).narrow(1, block.begin, Tq).copy_(o.view({nr, Hq, Tq, D}).transpose(1, 2));
    }
  }
  return out.view({B, T, Hq * D});
}

}  // namespace flame::llm
