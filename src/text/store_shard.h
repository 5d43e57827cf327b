// One shard of an embedding store: a safetensors file holding the tensor
// "embeddings" [n, K, D] (F16, BF16, or I8 with "scales" [n, K] F32 beside it:
// vector = embeddings[r, k].float() * scales[r, k]) and, in its __metadata__, the n keys in
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

#include "text/store_manifest.h"
#include "util/part_selection.h"
#include "util/safetensors.h"

namespace flame::text {

struct StoreShard {
  std::shared_ptr<SafetensorsFile> file;
  std::vector<std::string> keys;
  StoreIdentity identity;
  PartSelection part;
  std::string sha256;  // recorded at write time (empty in older shards)

  int64_t rows() const { return static_cast<int64_t>(keys.size()); }
  // [n, K, D] over the memory map (read-only: never write into it).
  torch::Tensor embeddings() const;
  // int8 shards: [n, K] f32 over the map; undefined otherwise.
  torch::Tensor scales() const;
};

// Symmetric int8 with one fp32 scale per [D] vector (scale = max|x| / 127),
// dequantised as values * scale. Unit-norm LLM vectors keep cosine > 0.999
// unless a few outlier dimensions dominate (the writer warns then).
struct QuantizedEmbeddings {
  torch::Tensor values;  // [..., D] int8
  torch::Tensor scales;  // [...] f32
};
QuantizedEmbeddings quantize_int8(const torch::Tensor& embeddings);
torch::Tensor dequantize_int8(const torch::Tensor& values, const torch::Tensor& scales);

// The dtype of a store's "embeddings" tensor (kInt8 for int8 stores).
torch::ScalarType store_torch_dtype(const StoreIdentity& identity);

// Opens and validates a shard: a well-formed safetensors file whose
// "embeddings" tensor has the identity's dtype, K and D, and one unique,
// non-empty key per row. Throws flame::Error naming the file otherwise (a
// truncated file included).
StoreShard open_store_shard(const fs::path& path);

// The SHA-256 of a shard's vectors as stored: the "embeddings" bytes, then
// the "scales" bytes of an int8 shard. write_store_shard records it in the
// metadata; it is not checked on open (a training run reads every shard),
// only by `embed verify` and when a job resumes.
std::string shard_vectors_sha256(const StoreShard& shard);
// Throws flame::Error naming the shard when its vectors no longer hash to
// the recorded value (changed on disk after they were written).
void check_shard_checksum(const StoreShard& shard);

// Writes a shard atomically (temp file + rename): after a crash the file is
// complete or absent. `embeddings` is [n, K, D] of any floating dtype on any
// device; it is stored in the identity's dtype.
void write_store_shard(const fs::path& path, const StoreIdentity& identity, const PartSelection& part,
                       const std::vector<std::string>& keys, const torch::Tensor& embeddings);

}  // namespace flame::text
