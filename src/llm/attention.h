// Grouped-query attention over a read-only past (KV cache) plus the new
// tokens, with an explicit boolean mask. Written with batched matmuls and an
// fp32 softmax (PyTorch 1.13 has no fused attention): scores are computed per
// key/value head for all query heads of its group at once, so K/V are never
// repeated, and a past row shared by several continuations is multiplied with
// all of their queries in one matmul instead of being copied per continuation.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <optional>
#include <vector>

namespace flame::llm {

// Which keys each new token may attend to: [B, T, P + T] bool, true = allowed.
// Keys are the P past entries of the row's cache row, then the T new tokens.
//   new_valid      [B, T] bool: false = padding (never attended)
//   past_valid     [B, P] bool (already mapped to the B rows) or undefined when P = 0
//   custom         [B, T, P + T] bool or undefined = causal over the new
//                  tokens, everything valid in the past
//   q_positions    [B, T] int64, k_positions [B, P + T] int64: used for the
//                  sliding window, which keeps keys with q_pos - k_pos < window
torch::Tensor build_attention_mask(const torch::Tensor& new_valid, const torch::Tensor& past_valid,
                                   const torch::Tensor& custom, const torch::Tensor& q_positions,
                                   const torch::Tensor& k_positions, std::optional<int64_t> sliding_window);

// A block of consecutive queries and how many of the new keys it needs: with
// a causal (or block) mask, early queries never see late keys, so their scores
// are not computed.
struct QueryBlock {
  int64_t begin = 0;
  int64_t size = 0;
  int64_t new_keys = 0;  // keys P .. P + new_keys - 1 of the new tokens (past keys: all)
};

// Splits T queries into blocks of about `block_size`, each with 1 + the last
// new key any query of the block may attend to in any row of `allowed`
// ([B, T, P + T]). One host sync; computed once per pass, shared by all layers.
std::vector<QueryBlock> plan_query_blocks(const torch::Tensor& allowed, int64_t past, int64_t block_size = 128);

struct AttentionInputs {
  torch::Tensor q;          // [B, q_heads, T, D] contiguous, already multiplied by 1/sqrt(D)
  torch::Tensor k;          // [B, kv_heads, T, D] contiguous (RoPE applied)
  torch::Tensor v;          // [B, kv_heads, T, D] contiguous
  torch::Tensor past_k;     // [B / rows_per_past, kv_heads, P, D] or undefined
  torch::Tensor past_v;     // same
  int64_t rows_per_past = 1;  // row b continues past row b / rows_per_past
  torch::Tensor allowed;    // [B, T, P + T] bool (build_attention_mask)
  std::vector<QueryBlock> blocks;  // plan_query_blocks; empty = all queries, all keys
  // Rows are processed in chunks so the fp32 scores of one chunk stay near
  // this many elements (bounds memory, keeps the softmax in cache).
  int64_t chunk_elements = int64_t{1} << 22;
};

// softmax(q k^T over the allowed keys) v, returned as [B, T, q_heads * D] in
// q's dtype; a query with no allowed key (padding) gets zeros.
torch::Tensor grouped_attention(const AttentionInputs& in);

}  // namespace flame::llm
