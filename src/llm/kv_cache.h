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

// The past of one forward pass, mapped to the batch's rows: row b continues
// row b / rows_per_past() of cache(). cache() is the caller's cache itself
// (rows_per_past() consecutive rows share each of its rows without copies) or,
// for an arbitrary row mapping, a copy of the selected rows.
class BatchPast {
 public:
  BatchPast() = default;  // no past

  // past: nullptr or of length 0 = no past. The batch's rows map to the
  // cache's by past_rows ([B] int64 cache rows, copied) or else rows_per_past
  // (row b -> b / rows_per_past). `layers`: how many the pass runs. The
  // valid/positions of the rows are put on `device`. Throws flame::Error.
  BatchPast(const KvCache* past, const torch::Tensor& past_rows, int64_t rows_per_past, int64_t batch,
            int64_t layers, const torch::Device& device);

  bool empty() const { return past_ == nullptr; }
  int64_t length() const { return empty() ? 0 : past_->length(); }  // P
  const KvCache& cache() const { return copied_ ? selected_ : *past_; }
  int64_t rows_per_past() const { return rows_per_past_; }
  const torch::Tensor& valid() const { return valid_; }  // [B, P] bool; undefined without a past

  // [B] int64: where each row's positions start by default (KvCache::next_positions).
  torch::Tensor next_positions() const;

  // [B, P + T]: the past's positions then the new tokens' ([B, T]).
  torch::Tensor key_positions(const torch::Tensor& positions) const;

  // The past followed by the new tokens: per layer run, keys/values
  // [B, kv_heads, T, head_dim]; valid [B, T]; key_positions as above.
  KvCache extend(const std::vector<torch::Tensor>& keys, const std::vector<torch::Tensor>& values,
                 const torch::Tensor& valid, const torch::Tensor& key_positions) const;

 private:
  // The cache's rows ([B / rows_per_past, ...]) as the batch's [B, ...].
  torch::Tensor per_row(const torch::Tensor& t) const;

  const KvCache* past_ = nullptr;  // the caller's cache
  bool copied_ = false;            // past_rows selected rows: cache() = selected_
  KvCache selected_;
  int64_t rows_per_past_ = 1;
  torch::Tensor valid_, positions_;  // [B, P] on the device
};

}  // namespace flame::llm
