// KvCache: the keys (RoPE applied) and values of every computed layer for a
// batch of token sequences, with which entries are real tokens and their
// positions. A cache is a plain value: forward passes read it without
// changing it and return a new one when asked, so one prefix cache can be
// shared read-only by any number of continuations.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace flame::llm {

struct KvCache {
  std::vector<torch::Tensor> keys;    // per layer [B, kv_heads, P, head_dim], compute dtype
  std::vector<torch::Tensor> values;  // per layer [B, kv_heads, P, head_dim]
  torch::Tensor valid;                // [B, P] bool: false = padding, never attended
  torch::Tensor positions;            // [B, P] int64: the position id of each entry

  bool empty() const { return keys.empty(); }
  int64_t num_layers() const { return static_cast<int64_t>(keys.size()); }
  int64_t batch_size() const { return valid.defined() ? valid.size(0) : 0; }
  int64_t length() const { return valid.defined() ? valid.size(1) : 0; }

  // [B] int64: one past the largest position of a valid entry per row (0 for
  // a row without any), where a continuation's positions start by default.
  torch::Tensor next_positions() const;

  // A cache of the given rows ([N] int64 row indices; copies the entries).
  KvCache select_rows(const torch::Tensor& rows) const;

  // Checks shapes agree across layers and with valid/positions; throws flame::Error.
  void check() const;
};

}  // namespace flame::llm
