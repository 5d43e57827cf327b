#include "text/embedding_store.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "util/error.h"
#include "util/file.h"

namespace flame::text {

namespace {

using nlohmann::json;

// Temp files are named ".<final name>.tmp.<pid>.<hex>" (util/file.h).
bool is_store_temp_file(const std::string& name) {
  return name.find(".tmp.") != std::string::npos &&
         (name.rfind(".shard-", 0) == 0 || name.rfind(std::string(".") + kManifestFile, 0) == 0 ||
          name.rfind(".inputs.json", 0) == 0);  // embed_job's kInputsRecordFile
}

// A manifest without "part" is a whole store (part 0 of 1).
PartSelection parse_part(const json& manifest, const std::string& source) {
  const auto it = manifest.find("part");
  return it == manifest.end() ? PartSelection{} : PartSelection::from_json(*it, source);
}

}  // namespace

EmbeddingStoreWriter::EmbeddingStoreWriter(const fs::path& dir, StoreIdentity identity, PartSelection part)
    : dir_(dir), identity_(std::move(identity)), part_(part) {
  identity_.validate(dir_.string());
  part_.validate(dir_.string());
  lock_ = std::make_unique<DirectoryLock>(dir_, "the store");
  {
    // With the lock held, temp files can only be leftovers of killed jobs.
    for (const auto& entry : fs::directory_iterator(dir_)) {
      if (is_store_temp_file(entry.path().filename().string())) {
        spdlog::info("removing '{}', left by an interrupted job", entry.path().string());
        fs::remove(entry.path());
      }
    }
    const fs::path manifest_path = dir_ / kManifestFile;
    const bool has_manifest = fs::exists(manifest_path);
    if (has_manifest) {
      const json manifest = read_json_file(manifest_path);
      const StoreIdentity existing = identity_from_json(manifest, manifest_path.string());
      const auto differences = identity_differences(existing, identity_);
      if (!differences.empty()) {
        fail("{}: {}", dir_.string(), describe_differences(differences, "store", "this job uses"));
      }
      const PartSelection existing_part = parse_part(manifest, manifest_path.string());
      if (!(existing_part == part_)) {
        fail("{}: store was made as part {} of {}, this job is part {} of {}", dir_.string(),
             existing_part.index, existing_part.count, part_.index, part_.count);
      }
    }
    for (const auto& [id, path] : list_shard_files(dir_)) {
      StoreShard shard;
      try {
        shard = open_store_shard(path);
      } catch (const Error& e) {
        fail("{} (delete the file to compute the shard again)", e.what());
      }
      const auto differences = identity_differences(shard.identity, identity_);
      if (!differences.empty()) {
        fail("{}: {}", path.string(), describe_differences(differences, "store", "this job uses"));
      }
      // Vectors changed on disk since they were written: the job computes
      // the shard again (its keys are known from the inputs), so drop it.
      try {
        check_shard_checksum(shard);
      } catch (const Error& e) {
        spdlog::warn("{}; computing the shard again", e.what());
        shard = StoreShard();  // unmaps the file before it is removed
        fs::remove(path);
        fs::remove(manifest_path);  // the store is no longer finished
        continue;
      }
      // A merged store keeps the part of origin in its shards; its manifest rules.
      if (!has_manifest && !(shard.part == part_)) {
        fail("{}: store was made as part {} of {}, this job is part {} of {}", path.string(),
             shard.part.index, shard.part.count, part_.index, part_.count);
      }
      shard_ids_.push_back(id);
    }
  }
}

EmbeddingStoreWriter::~EmbeddingStoreWriter() = default;

bool EmbeddingStoreWriter::has_shard(int64_t shard_id, const std::vector<std::string>* expected_keys) const {
  if (!std::binary_search(shard_ids_.begin(), shard_ids_.end(), shard_id)) return false;
  if (expected_keys != nullptr) {
    const fs::path path = dir_ / shard_file_name(shard_id);
    const StoreShard shard = open_store_shard(path);
    if (shard.keys != *expected_keys) {
      // Name where they part: the first keys can agree (a store merged from
      // launched parts numbers its shards by part, not by input order).
      const std::vector<std::string>& have = shard.keys;
      size_t at = 0;
      while (at < have.size() && at < expected_keys->size() && have[at] == (*expected_keys)[at]) ++at;
      const auto key = [at](const std::vector<std::string>& keys) {
        return at < keys.size() ? "'" + keys[at] + "'" : std::string("none");
      };
      fail(
          "{}: holds {} keys, but this job's shard {} has {} keys; they differ at position {} ({} vs {}): "
          "the inputs, the shard size or the part count changed since it was written (a store merged "
          "from launched parts resumes under scripts/launch with the same --nproc); use a new directory",
          path.string(), have.size(), shard_id, expected_keys->size(), at, key(have), key(*expected_keys));
    }
  }
  return true;
}

void EmbeddingStoreWriter::write_shard(int64_t shard_id, const std::vector<std::string>& keys,
                                       const torch::Tensor& embeddings) {
  if (shard_id < 0) fail("{}: invalid shard id {}", dir_.string(), shard_id);
  // The store is no longer finished once it changes.
  fs::remove(dir_ / kManifestFile);
  write_store_shard(dir_ / shard_file_name(shard_id), identity_, part_, keys, embeddings);
  const auto it = std::lower_bound(shard_ids_.begin(), shard_ids_.end(), shard_id);
  if (it == shard_ids_.end() || *it != shard_id) shard_ids_.insert(it, shard_id);
}

json EmbeddingStoreWriter::finalize(json job_info) {
  const auto files = list_shard_files(dir_);
  std::unordered_map<std::string, int64_t> shard_of_key;
  json shards = json::array();
  int64_t count = 0;
  for (size_t i = 0; i < files.size(); ++i) {
    const auto& [id, path] = files[i];
    if (id != static_cast<int64_t>(i)) {
      fail("{}: shard {} is missing ({} is present): the job has not finished", dir_.string(),
           shard_file_name(static_cast<int64_t>(i)), path.filename().string());
    }
    const StoreShard shard = open_store_shard(path);
    const auto differences = identity_differences(shard.identity, identity_);
    if (!differences.empty()) {
      fail("{}: {}", path.string(), describe_differences(differences, "store", "this job uses"));
    }
    for (const auto& key : shard.keys) {
      const auto [it, inserted] = shard_of_key.emplace(key, id);
      if (!inserted) {
        fail("{}: key '{}' is in both {} and {}", dir_.string(), key, shard_file_name(it->second),
             path.filename().string());
      }
    }
    shards.push_back({{"file", path.filename().string()}, {"count", shard.rows()}});
    count += shard.rows();
  }
  json manifest = identity_to_json(identity_);
  manifest["count"] = count;
  manifest["part"] = part_.to_json();
  manifest["shards"] = std::move(shards);
  manifest["job"] = std::move(job_info);
  write_json_file_atomic(dir_ / kManifestFile, manifest);
  return manifest;
}

EmbeddingStore EmbeddingStore::open(const fs::path& dir) {
  EmbeddingStore store;
  store.dir_ = dir;
  const fs::path manifest_path = dir / kManifestFile;
  if (!fs::exists(dir)) fail("{}: no such embedding store (the path does not exist)", dir.string());
  if (!fs::is_directory(dir)) fail("{}: not an embedding store (a store is a folder)", dir.string());
  if (!fs::exists(manifest_path)) {
    fail("{}: no {}: not an embedding store, or its job has not finished (the manifest is written last)",
         dir.string(), kManifestFile);
  }
  const std::string source = manifest_path.string();
  store.manifest_ = read_json_file(manifest_path);
  const StoreManifest manifest = manifest_from_json(store.manifest_, source);
  store.identity_ = manifest.identity;
  store.part_ = manifest.part;
  // Nothing is reserved from the manifest's numbers: a corrupt count must not
  // allocate before the shards (which hold the keys) are read.
  for (const ManifestShard& entry : manifest.shards) {
    const std::string& file = entry.file;
    const fs::path path = dir / file;
    if (!fs::exists(path)) fail("{}: shard '{}' listed in the manifest is missing", source, path.string());
    const StoreShard shard = open_store_shard(path);
    const auto differences = identity_differences(store.identity_, shard.identity);
    if (!differences.empty()) {
      fail("{}: {}", path.string(), describe_differences(differences, "manifest", "this shard has"));
    }
    if (shard.rows() != entry.count) {
      fail("{}: has {} embeddings, the manifest lists {}", path.string(), shard.rows(), entry.count);
    }
    store.shard_begin_.push_back(store.size());
    for (const auto& key : shard.keys) {
      const auto [it, inserted] = store.index_.emplace(key, store.size());
      if (!inserted) {
        fail("{}: key '{}' is in both {} and {}", dir.string(), key,
             store.shard_paths_[store.locate(it->second).first].filename().string(), file);
      }
      store.keys_.push_back(key);
    }
    store.shard_paths_.push_back(path);
    store.shard_embeddings_.push_back(shard.embeddings());
    store.shard_scales_.push_back(shard.scales());
  }
  if (store.size() != manifest.count) {
    fail("{}: the shards hold {} embeddings, the manifest says count {}", source, store.size(),
         manifest.count);
  }
  return store;
}

std::optional<int64_t> EmbeddingStore::index_of(const std::string& key) const {
  const auto it = index_.find(key);
  if (it == index_.end()) return std::nullopt;
  return it->second;
}

const std::string& EmbeddingStore::key(int64_t index) const {
  if (index < 0 || index >= size()) {
    fail("{}: index {} out of range (the store has {} embeddings)", dir_.string(), index, size());
  }
  return keys_[static_cast<size_t>(index)];
}

std::pair<size_t, int64_t> EmbeddingStore::locate(int64_t index) const {
  if (index < 0 || index >= size()) {
    fail("{}: index {} out of range (the store has {} embeddings)", dir_.string(), index, size());
  }
  // The last shard starting at or before `index` (empty shards share a start
  // with the next one, which is the one that holds it).
  const auto it = std::upper_bound(shard_begin_.begin(), shard_begin_.end(), index);
  const size_t shard = static_cast<size_t>(it - shard_begin_.begin()) - 1;
  return {shard, index - shard_begin_[shard]};
}

torch::Tensor EmbeddingStore::get(int64_t index) const {
  const auto [shard, row] = locate(index);
  if (identity_.quantized()) return dequantize_int8(shard_embeddings_[shard][row], shard_scales_[shard][row]);
  return shard_embeddings_[shard][row];
}

torch::Tensor EmbeddingStore::get(const std::string& key) const {
  const auto index = index_of(key);
  if (!index) fail("{}: no embedding for key '{}'", dir_.string(), key);
  return get(*index);
}

torch::Tensor EmbeddingStore::gather(const std::vector<int64_t>& indices, torch::ScalarType dtype) const {
  const int64_t n = static_cast<int64_t>(indices.size());
  torch::Tensor out = torch::empty({n, num_facets(), dim()}, torch::TensorOptions().dtype(dtype));
  // One index_select per shard rather than one copy per row.
  std::vector<std::vector<int64_t>> positions(shard_embeddings_.size()), rows(shard_embeddings_.size());
  for (int64_t j = 0; j < n; ++j) {
    const auto [shard, row] = locate(indices[static_cast<size_t>(j)]);
    positions[shard].push_back(j);
    rows[shard].push_back(row);
  }
  for (size_t s = 0; s < shard_embeddings_.size(); ++s) {
    if (positions[s].empty()) continue;
    const torch::Tensor shard_rows = torch::tensor(rows[s], torch::kLong);
    torch::Tensor selected = shard_embeddings_[s].index_select(0, shard_rows);
    if (identity_.quantized())
      selected = dequantize_int8(selected, shard_scales_[s].index_select(0, shard_rows));
    out.index_copy_(0, torch::tensor(positions[s], torch::kLong), selected.to(dtype));
  }
  return out;
}

}  // namespace flame::text
