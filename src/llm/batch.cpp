#include "llm/batch.h"

#include <algorithm>

#include "util/error.h"

namespace flame::llm {

TokenBatch pad_right(const std::vector<TokenIds>& sequences, int64_t pad_id, int64_t min_length) {
  const auto B = static_cast<int64_t>(sequences.size());
  int64_t T = min_length;
  for (const auto& s : sequences) T = std::max<int64_t>(T, static_cast<int64_t>(s.size()));
  TokenBatch batch;
  batch.input_ids = torch::full({B, T}, pad_id, torch::kInt64);
  batch.valid = torch::zeros({B, T}, torch::kBool);
  batch.lengths = torch::zeros({B}, torch::kInt64);
  batch.last_index = torch::zeros({B, 1}, torch::kInt64);
  auto ids = batch.input_ids.accessor<int64_t, 2>();
  auto valid = batch.valid.accessor<bool, 2>();
  for (int64_t b = 0; b < B; ++b) {
    const auto& s = sequences[static_cast<size_t>(b)];
    const auto n = static_cast<int64_t>(s.size());
    for (int64_t t = 0; t < n; ++t) {
      ids[b][t] = s[static_cast<size_t>(t)];
      valid[b][t] = true;
    }
    batch.lengths[b] = n;
    batch.last_index[b][0] = std::max<int64_t>(0, n - 1);
  }
  return batch;
}

FacetPositions parse_facet_positions(const std::string& name, const std::string& source) {
  if (name == "separate") return FacetPositions::kSeparate;
  if (name == "concatenated") return FacetPositions::kConcatenated;
  fail("{}: facet positions must be separate or concatenated, not '{}'", source, name);
}

std::string to_string(FacetPositions positions) {
  return positions == FacetPositions::kConcatenated ? "concatenated" : "separate";
}

FacetPacking pack_facets(const std::vector<TokenIds>& prefixes,
                         const std::vector<std::vector<TokenIds>>& facets, int64_t pad_id,
                         FacetPositions positions) {
  if (prefixes.size() != facets.size()) {
    fail("pack_facets: {} prefixes but {} facet lists", prefixes.size(), facets.size());
  }
  const auto B = static_cast<int64_t>(prefixes.size());
  const int64_t K = B > 0 ? static_cast<int64_t>(facets[0].size()) : 0;
  int64_t T = 0;
  for (int64_t b = 0; b < B; ++b) {
    const auto& row = facets[static_cast<size_t>(b)];
    if (static_cast<int64_t>(row.size()) != K || K == 0) {
      fail("pack_facets: caption {} has {} facets; every caption needs the same number (>= 1), here {}", b,
           row.size(), K);
    }
    int64_t n = static_cast<int64_t>(prefixes[static_cast<size_t>(b)].size());
    for (int64_t f = 0; f < K; ++f) {
      if (row[static_cast<size_t>(f)].empty()) fail("pack_facets: caption {} facet {} is empty", b, f);
      n += static_cast<int64_t>(row[static_cast<size_t>(f)].size());
    }
    T = std::max(T, n);
  }
  FacetPacking p;
  p.input_ids = torch::full({B, T}, pad_id, torch::kInt64);
  p.valid = torch::zeros({B, T}, torch::kBool);
  p.positions = torch::zeros({B, T}, torch::kInt64);
  p.attention_mask = torch::zeros({B, T, T}, torch::kBool);
  p.facet_last = torch::zeros({B, K}, torch::kInt64);
  auto ids = p.input_ids.accessor<int64_t, 2>();
  auto valid = p.valid.accessor<bool, 2>();
  auto pos = p.positions.accessor<int64_t, 2>();
  auto mask = p.attention_mask.accessor<bool, 3>();
  auto last = p.facet_last.accessor<int64_t, 2>();
  for (int64_t b = 0; b < B; ++b) {
    const auto& prefix = prefixes[static_cast<size_t>(b)];
    const auto np = static_cast<int64_t>(prefix.size());
    for (int64_t t = 0; t < np; ++t) {
      ids[b][t] = prefix[static_cast<size_t>(t)];
      valid[b][t] = true;
      pos[b][t] = t;
      for (int64_t j = 0; j <= t; ++j) mask[b][t][j] = true;
    }
    int64_t start = np;
    for (int64_t f = 0; f < K; ++f) {
      const auto& facet = facets[static_cast<size_t>(b)][static_cast<size_t>(f)];
      const auto nf = static_cast<int64_t>(facet.size());
      for (int64_t i = 0; i < nf; ++i) {
        const int64_t t = start + i;
        ids[b][t] = facet[static_cast<size_t>(i)];
        valid[b][t] = true;
        pos[b][t] = positions == FacetPositions::kSeparate ? np + i : t;
        for (int64_t j = 0; j < np; ++j) mask[b][t][j] = true;
        for (int64_t j = start; j <= t; ++j) mask[b][t][j] = true;
      }
      last[b][f] = start + nf - 1;
      start += nf;
    }
  }
  return p;
}

}  // namespace flame::llm
