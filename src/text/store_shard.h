// One shard of an embedding store: a safetensors file holding the tensor
// "embeddings" [n, K, D] (F16 or BF16) and, in its __metadata__, the n keys in
// row order ("keys", a JSON array), the store identity ("identity", JSON) and
// the part that computed it ("part", {"index": i, "count": n}). A shard is
// self-describing, so a store can be checked and resumed without a manifest.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "llm/safetensors.h"
#include "text/store_manifest.h"
#include "util/part_selection.h"

namespace flame::text {

struct StoreShard {
  std::shared_ptr<llm::SafetensorsFile> file;
  std::vector<std::string> keys;
  StoreIdentity identity;
  PartSelection part;

  int64_t rows() const { return static_cast<int64_t>(keys.size()); }
  // [n, K, D] over the memory map (read-only: never write into it).
  torch::Tensor embeddings() const;
};

// Opens and validates a shard: a well-formed safetensors file whose
// "embeddings" tensor has the identity's dtype, K and D, and one unique,
// non-empty key per row. Throws flame::Error naming the file otherwise (a
// truncated file included).
StoreShard open_store_shard(const fs::path& path);

// Writes a shard atomically (temp file + rename): after a crash the file is
// complete or absent. `embeddings` is [n, K, D] of any floating dtype on any
// device; it is stored in the identity's dtype.
void write_store_shard(const fs::path& path, const StoreIdentity& identity, const PartSelection& part,
                       const std::vector<std::string>& keys, const torch::Tensor& embeddings);

}  // namespace flame::text
