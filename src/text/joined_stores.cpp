#include "text/joined_stores.h"

#include <fmt/format.h>

#include "text/store_content.h"
#include "util/error.h"

namespace flame::text {

namespace {

// Stores joined into one text side must be facets of the same encoding: the
// same layer, normalisation and facet positions (their prompt sets may
// differ), and no store twice (its facets would count as two positives).
void check_joinable(const EmbeddingStore& first, const EmbeddingStore& store, const EmbeddingStore* earlier) {
  const StoreIdentity& a = first.identity();
  const StoreIdentity& b = store.identity();
  const auto llm = llm_differences(a.llm, b.llm);
  if (!llm.empty()) {
    fail("cannot join stores made by different LLMs: {}",
         describe_differences(llm, first.dir().string(), store.dir().string() + " with"));
  }
  std::vector<IdentityDifference> differences;
  for (const auto& d : identity_differences(a, b))
    if (d.field == "layer" || d.field == "normalized" || d.field == "facet positions")
      differences.push_back(d);
  if (!differences.empty()) {
    fail("cannot join stores computed differently: {}",
         describe_differences(differences, first.dir().string(), store.dir().string() + " with"));
  }
  if (earlier != nullptr) {
    fail("cannot join {} and {}: they are the same store, given twice", earlier->dir().string(),
         store.dir().string());
  }
}

// What a store's job read ("inputs_sha256" of its manifest "job", embed_job.h),
// "" when not recorded (older stores, or stores written by other tools).
std::string inputs_fingerprint(const EmbeddingStore& store) {
  const nlohmann::json& manifest = store.manifest();
  if (!manifest.contains("job") || !manifest["job"].is_object()) return "";
  const nlohmann::json& job = manifest["job"];
  const auto it = job.find("inputs_sha256");
  return it != job.end() && it->is_string() ? it->get<std::string>() : "";
}

// Content identity, not paths: a copy of a store, or the same inputs embedded
// twice with the same prompt set (e.g. in another dtype), holds the same
// facets, and joined it counts every positive twice. The same prompt set over
// other texts (another --field or caption file) is a distinct positive and
// still joins; stores that record neither checksums nor inputs are not compared.
void check_not_the_same_facets(const EmbeddingStore& earlier, const EmbeddingStore& store) {
  const StoreIdentity& a = earlier.identity();
  const StoreIdentity& b = store.identity();
  if (a.prompt_set_name != b.prompt_set_name || a.prompt_set_sha256 != b.prompt_set_sha256 ||
      a.facets != b.facets)
    return;
  const std::string content = store_content_sha256(earlier);
  const bool copy = !content.empty() && content == store_content_sha256(store);
  const std::string inputs = inputs_fingerprint(earlier);
  const bool same_inputs = !inputs.empty() && inputs == inputs_fingerprint(store);
  if (!copy && !same_inputs) return;
  fail("cannot join {} and {}: {} (prompt set '{}', sha256 {}): every positive would count twice",
       earlier.dir().string(), store.dir().string(),
       copy ? "the second is a copy of the first (same shard checksums)"
            : "both hold the same facets of the same inputs (inputs_sha256 " + inputs + "), embedded twice",
       a.prompt_set_name, a.prompt_set_sha256);
}

}  // namespace

JoinedStores::JoinedStores(std::vector<EmbeddingStore> stores) : stores_(std::move(stores)) {
  if (stores_.empty()) fail("no stores to join");
  const EmbeddingStore& first = stores_.front();
  for (size_t i = 0; i < stores_.size(); ++i) {
    const EmbeddingStore& store = stores_[i];
    const EmbeddingStore* earlier = nullptr;
    for (size_t j = 0; j < i; ++j)
      if (std::filesystem::weakly_canonical(stores_[j].dir()) ==
          std::filesystem::weakly_canonical(store.dir()))
        earlier = &stores_[j];
    check_joinable(first, store, earlier);
    for (size_t j = 0; j < i; ++j) check_not_the_same_facets(stores_[j], store);
    if (store.dim() != first.dim()) {
      fail("cannot join stores of different dims: {} has D={}, {} has D={}", first.dir().string(),
           first.dim(), store.dir().string(), store.dim());
    }
    if (store.size() != first.size()) {
      fail("cannot join stores with different keys: {} has {} embeddings, {} has {}", first.dir().string(),
           first.size(), store.dir().string(), store.size());
    }
    num_facets_ += store.num_facets();
    facets_.insert(facets_.end(), store.facets().begin(), store.facets().end());
    std::vector<int64_t> rows;
    rows.reserve(static_cast<size_t>(first.size()));
    for (const auto& key : first.keys()) {
      const auto row = store.index_of(key);
      if (!row)
        fail("cannot join stores with different keys: '{}' is in {} but not in {}", key, first.dir().string(),
             store.dir().string());
      rows.push_back(*row);
    }
    rows_.push_back(std::move(rows));
  }
}

JoinedStores JoinedStores::open(const std::vector<std::filesystem::path>& dirs) {
  std::vector<EmbeddingStore> stores;
  for (const auto& dir : dirs) stores.push_back(EmbeddingStore::open(dir));
  return JoinedStores(std::move(stores));
}

torch::Tensor JoinedStores::get(int64_t index, torch::ScalarType dtype) const {
  return gather({index}, dtype)[0];
}

torch::Tensor JoinedStores::get(const std::string& key, torch::ScalarType dtype) const {
  const auto index = index_of(key);
  if (!index) fail("{}: no embedding for key '{}'", stores_.front().dir().string(), key);
  return get(*index, dtype);
}

torch::Tensor JoinedStores::gather(const std::vector<int64_t>& indices, torch::ScalarType dtype) const {
  std::vector<torch::Tensor> parts;
  std::vector<int64_t> rows(indices.size());
  for (size_t s = 0; s < stores_.size(); ++s) {
    for (size_t j = 0; j < indices.size(); ++j) {
      if (indices[j] < 0 || indices[j] >= size()) {
        fail("joined stores: index {} out of range ({} keys)", indices[j], size());
      }
      rows[j] = rows_[s][static_cast<size_t>(indices[j])];
    }
    parts.push_back(stores_[s].gather(rows, dtype));
  }
  return torch::cat(parts, 1);
}

}  // namespace flame::text
