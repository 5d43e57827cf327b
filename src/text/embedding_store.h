// The offline embedding store: the LLM's facet embeddings of every caption,
// computed once and read by training through memory maps.
//
// A store is a directory of shard files (see store_shard.h) plus manifest.json,
// which is written last: a store is finished exactly when it has a manifest.
// A job writes shards one at a time, each atomically, so a killed job leaves
// only complete shards; rerunning it with the same identity skips them.
// See docs/embedding-store.md for the format.
#pragma once

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "text/store_manifest.h"
#include "text/store_shard.h"
#include "util/file.h"

namespace flame::text {

// Writes one store (or one part of a scale-out job). Resumable: reopening a
// directory keeps the complete shards already there.
class EmbeddingStoreWriter {
 public:
  // Creates `dir` or reopens it. Holds an exclusive lock on DIR/.lock while
  // alive (a second writer fails fast) and removes temp files left by killed
  // jobs. Throws flame::Error saying what differs when the manifest or a shard
  // already in `dir` was made with another identity or part ("store was made
  // with prompt set 'short', this job uses 'long'"), or when a shard there is
  // corrupt.
  EmbeddingStoreWriter(const fs::path& dir, StoreIdentity identity, PartSelection part = {});
  ~EmbeddingStoreWriter();
  EmbeddingStoreWriter(const EmbeddingStoreWriter&) = delete;
  EmbeddingStoreWriter& operator=(const EmbeddingStoreWriter&) = delete;

  const fs::path& dir() const { return dir_; }
  const StoreIdentity& identity() const { return identity_; }

  // Whether shard `shard_id` is complete on disk, so a resumed job can skip it.
  // With `expected_keys`, an existing shard must hold exactly those keys in
  // that order; otherwise throws (the inputs or the shard size changed since
  // the shard was written, and resuming would mix two splits).
  bool has_shard(int64_t shard_id, const std::vector<std::string>* expected_keys = nullptr) const;

  // Writes shard `shard_id`: `embeddings` [n, K, D] (any float dtype, any
  // device) for `keys` (n, unique). Stored in the identity's dtype; refuses
  // NaN/inf values, and vectors off unit norm when the identity says
  // normalized. Replaces a shard with the same id. Removes manifest.json, if
  // any, until finalize() runs again.
  void write_shard(int64_t shard_id, const std::vector<std::string>& keys, const torch::Tensor& embeddings);

  // Checks the shards (ids 0..M-1 without gaps, identity, keys unique across
  // shards) and writes manifest.json atomically; `job_info` is stored as
  // "job". Returns the manifest.
  nlohmann::json finalize(nlohmann::json job_info = nlohmann::json::object());

 private:
  fs::path dir_;
  StoreIdentity identity_;
  PartSelection part_;
  std::unique_ptr<DirectoryLock> lock_;
  std::vector<int64_t> shard_ids_;  // complete shards on disk, sorted
};

// A finished store, read through memory maps. Immutable and safe to share
// between threads.
class EmbeddingStore {
 public:
  // Validates the manifest against every shard it lists (identity, dtype, K, D,
  // row counts, keys unique). Errors name the file at fault.
  static EmbeddingStore open(const fs::path& dir);

  const fs::path& dir() const { return dir_; }
  const nlohmann::json& manifest() const { return manifest_; }
  const StoreIdentity& identity() const { return identity_; }
  const PartSelection& part() const { return part_; }
  int64_t size() const { return static_cast<int64_t>(keys_.size()); }
  int64_t num_facets() const { return identity_.num_facets; }
  int64_t dim() const { return identity_.dim; }
  const std::vector<std::string>& facets() const { return identity_.facets; }
  const std::vector<std::string>& keys() const { return keys_; }
  const std::vector<fs::path>& shard_paths() const { return shard_paths_; }

  std::optional<int64_t> index_of(const std::string& key) const;
  const std::string& key(int64_t index) const;
  // [K, D] in the stored dtype: a view into the memory map (read-only: never
  // write into it; .clone() it first). int8 stores: a dequantised f32 copy.
  torch::Tensor get(int64_t index) const;
  // Throws flame::Error naming the key and the store when the key is absent.
  torch::Tensor get(const std::string& key) const;
  // [n, K, D] in `dtype`, a fresh tensor, rows in the order of `indices`.
  torch::Tensor gather(const std::vector<int64_t>& indices, torch::ScalarType dtype = torch::kFloat32) const;

 private:
  EmbeddingStore() = default;
  // (shard, row) of a store index; throws when out of range.
  std::pair<size_t, int64_t> locate(int64_t index) const;

  fs::path dir_;
  nlohmann::json manifest_;
  StoreIdentity identity_;
  PartSelection part_;
  std::vector<fs::path> shard_paths_;
  std::vector<torch::Tensor> shard_embeddings_;  // [n_s, K, D] over the maps
  std::vector<torch::Tensor> shard_scales_;      // int8 stores: [n_s, K] f32 over the maps
  std::vector<int64_t> shard_begin_;             // first store index of each shard
  std::vector<std::string> keys_;
  std::unordered_map<std::string, int64_t> index_;
};

}  // namespace flame::text
