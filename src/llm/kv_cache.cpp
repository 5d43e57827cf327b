#include "llm/kv_cache.h"

#include "util/error.h"

namespace flame::llm {

torch::Tensor KvCache::next_positions() const {
  if (!valid.defined() || length() == 0) {
    return torch::zeros({batch_size()}, torch::TensorOptions().dtype(torch::kInt64).device(valid.device()));
  }
  const torch::Tensor last = torch::where(valid, positions, torch::full_like(positions, -1)).amax(1);
  return last + 1;
}

KvCache KvCache::select_rows(const torch::Tensor& rows) const {
  KvCache out;
  const torch::Tensor r = rows.to(valid.device(), torch::kInt64);
  for (size_t i = 0; i < keys.size(); ++i) {
    out.keys.push_back(keys[i].index_select(0, r));
    out.values.push_back(values[i].index_select(0, r));
  }
  out.valid = valid.index_select(0, r);
  out.positions = positions.index_select(0, r);
  return out;
}

void KvCache::check() const {
  if (!valid.defined() || !positions.defined()) fail("KV cache: valid and positions must be set");
  if (valid.dim() != 2 || valid.scalar_type() != torch::kBool) fail("KV cache: valid must be a [B, P] bool tensor");
  if (positions.sizes() != valid.sizes()) fail("KV cache: positions and valid shapes differ");
  if (keys.size() != values.size()) fail("KV cache: {} key tensors but {} value tensors", keys.size(), values.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    if (keys[i].dim() != 4 || keys[i].size(0) != batch_size() || keys[i].size(2) != length() ||
        values[i].sizes() != keys[i].sizes()) {
      fail("KV cache: layer {} keys/values do not have shape [{}, heads, {}, head_dim]", i, batch_size(), length());
    }
  }
}

BatchPast::BatchPast(const KvCache* past, const torch::Tensor& past_rows, int64_t rows_per_past,
                     int64_t batch, int64_t layers, const torch::Device& device) {
  if (past == nullptr || past->length() == 0) return;
  past->check();
  if (past->num_layers() < layers) {
    fail("forward: the KV cache holds {} layers, this pass needs {}", past->num_layers(), layers);
  }
  const int64_t cache_rows = past->batch_size();
  if (rows_per_past < 1) fail("forward: rows_per_past must be at least 1, not {}", rows_per_past);
  past_ = past;
  if (past_rows.defined()) {
    if (rows_per_past != 1) fail("forward: give past_rows or rows_per_past, not both");
    const torch::Tensor rows = past_rows.to(torch::kCPU, torch::kInt64).reshape({-1});
    if (rows.size(0) != batch) fail("forward: past_rows has {} entries for {} rows", rows.size(0), batch);
    if (rows.numel() > 0 && (rows.min().item<int64_t>() < 0 || rows.max().item<int64_t>() >= cache_rows)) {
      fail("forward: past_rows refers to rows outside the cache's {} rows", cache_rows);
    }
    selected_ = past->select_rows(rows);
    copied_ = true;
  } else if (rows_per_past == 1 && cache_rows != batch) {
    fail("forward: the KV cache has {} rows but the batch {}; give past_rows", cache_rows, batch);
  } else if (cache_rows * rows_per_past != batch) {
    fail("forward: rows_per_past {} over the KV cache's {} rows makes {} rows, the batch has {}",
         rows_per_past, cache_rows, cache_rows * rows_per_past, batch);
  }
  rows_per_past_ = rows_per_past;
  valid_ = per_row(cache().valid).to(device);
  positions_ = per_row(cache().positions).to(device);
}

torch::Tensor BatchPast::per_row(const torch::Tensor& t) const {
  return rows_per_past_ > 1 ? t.repeat_interleave(rows_per_past_, 0) : t;
}

torch::Tensor BatchPast::next_positions() const {
  return per_row(cache().next_positions()).to(valid_.device());
}

torch::Tensor BatchPast::key_positions(const torch::Tensor& positions) const {
  return empty() ? positions : torch::cat({positions_, positions}, 1);
}

KvCache BatchPast::extend(const std::vector<torch::Tensor>& keys, const std::vector<torch::Tensor>& values,
                          const torch::Tensor& valid, const torch::Tensor& key_positions) const {
  KvCache out;
  if (empty()) {
    out.keys = keys;
    out.values = values;
  } else {
    for (size_t i = 0; i < keys.size(); ++i) {
      out.keys.push_back(torch::cat({per_row(cache().keys[i]), keys[i]}, 2));
      out.values.push_back(torch::cat({per_row(cache().values[i]), values[i]}, 2));
    }
  }
  out.valid = empty() ? valid : torch::cat({valid_, valid}, 1);
  out.positions = key_positions.contiguous();
  return out;
}

}  // namespace flame::llm
