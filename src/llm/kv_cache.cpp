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

}  // namespace flame::llm
