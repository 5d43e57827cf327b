// Building model inputs from token id lists: right-padded batches, and the
// two layouts for facet-decoupled attention (FDA), where every caption
// "prefix + facet_1 + ... + facet_K" yields one embedding per facet and each
// facet sees the prefix and itself, never another facet:
//   (a) pack_facets: one packed row per caption with a block mask, every
//       facet's positions continuing from the prefix end (the paper's
//       definition: equal to K separate prompts); one forward pass. Or, as the
//       method's released code does, positions numbered along the packed row
//       (FacetPositions::kConcatenated): facet k then starts after facets
//       1..k-1, so its state differs from the separate prompt's.
//   (b) prefix batch -> KvCache -> continuation batch of B*K facet rows that
//       read the shared cache (ForwardInput::rows_per_past = K).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

namespace flame::llm {

using TokenIds = std::vector<int64_t>;

struct TokenBatch {
  torch::Tensor input_ids;   // [B, T] int64, right-padded with pad_id
  torch::Tensor valid;       // [B, T] bool, false = padding
  torch::Tensor lengths;     // [B] int64
  torch::Tensor last_index;  // [B, 1] int64: index of each row's last token (0 for an empty row)
};

// Right-pads the sequences to the longest (at least `min_length`). On the CPU.
TokenBatch pad_right(const std::vector<TokenIds>& sequences, int64_t pad_id = 0, int64_t min_length = 0);

enum class FacetPositions { kSeparate, kConcatenated };
// "separate" | "concatenated"; throws flame::Error naming `source` otherwise.
FacetPositions parse_facet_positions(const std::string& name, const std::string& source);
std::string to_string(FacetPositions positions);

struct FacetPacking {
  torch::Tensor input_ids;       // [B, T] int64: prefix, facet 1, ..., facet K, padding
  torch::Tensor valid;           // [B, T] bool
  torch::Tensor positions;       // [B, T] int64: prefix 0..p-1, each facet p, p+1, ... (separate)
                                 // or 0..T-1 along the row (concatenated)
  torch::Tensor attention_mask;  // [B, T, T] bool: prefix causal; facet -> prefix + itself causally
  torch::Tensor facet_last;      // [B, K] int64: index of each facet's last token
};

// Layout (a). Every caption must have the same number K >= 1 of facets, and
// every facet at least one token. On the CPU.
FacetPacking pack_facets(const std::vector<TokenIds>& prefixes,
                         const std::vector<std::vector<TokenIds>>& facets, int64_t pad_id = 0,
                         FacetPositions positions = FacetPositions::kSeparate);

}  // namespace flame::llm
