// Several stores of the same captions read side by side, e.g. raw (K=1),
// short (K=3) and long (K=7) facets: rows are joined by key and facets
// concatenated in the order the stores are given, [n, 1+3+7, D].
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "data/paired_texts.h"
#include "text/embedding_store.h"

namespace flame::text {

class JoinedStores : public data::PairedTexts {
 public:
  // Throws flame::Error when the stores were made by different LLMs, have
  // different dims, or do not hold the same keys (naming a key and the store
  // that lacks it).
  explicit JoinedStores(std::vector<EmbeddingStore> stores);
  static JoinedStores open(const std::vector<std::filesystem::path>& dirs);

  const std::vector<EmbeddingStore>& stores() const { return stores_; }
  int64_t size() const override { return stores_.front().size(); }
  int64_t num_facets() const { return num_facets_; }  // the sum of the stores' K
  int64_t dim() const { return stores_.front().dim(); }
  const std::vector<std::string>& facets() const { return facets_; }  // concatenated names
  // Keys in the order of the first store; indices below refer to this order.
  const std::vector<std::string>& keys() const { return stores_.front().keys(); }
  std::optional<int64_t> index_of(const std::string& key) const override {
    return stores_.front().index_of(key);
  }
  const std::string& example_key() const override { return keys().front(); }
  // The training batch's texts: gather(rows) in float32.
  torch::Tensor batch_texts(const std::vector<int64_t>& rows) const override { return gather(rows); }

  // [num_facets, D] in `dtype`.
  torch::Tensor get(int64_t index, torch::ScalarType dtype = torch::kFloat32) const;
  // Throws naming the key when it is absent.
  torch::Tensor get(const std::string& key, torch::ScalarType dtype = torch::kFloat32) const;
  // [n, num_facets, D] in `dtype`.
  torch::Tensor gather(const std::vector<int64_t>& indices, torch::ScalarType dtype = torch::kFloat32) const;

 private:
  std::vector<EmbeddingStore> stores_;
  std::vector<std::vector<int64_t>> rows_;  // rows_[s][i]: row in stores_[s] of keys()[i]
  int64_t num_facets_ = 0;
  std::vector<std::string> facets_;
};

}  // namespace flame::text
