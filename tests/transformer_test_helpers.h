// Shared by the Transformer tests: loading tiny checkpoints, random token ids
// and tensor comparisons.
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>
#include <vector>

#include "llm/transformer.h"
#include "test_helpers.h"

namespace flame::test {

inline llm::Transformer load_tiny(const std::string& arch, const std::string& stored = "f32",
                                  torch::ScalarType compute = torch::kFloat32, bool fuse = true) {
  llm::TransformerOptions options;
  options.dtype = compute;
  options.fuse_projections = fuse;
  return llm::Transformer::load(tiny_checkpoint(arch, stored), options);
}

// `n` token ids in [3, vocab), seeded.
inline std::vector<int64_t> random_ids(int64_t n, int64_t vocab, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  const torch::Tensor t = torch::randint(3, vocab, {n}, gen, torch::kInt64);
  return std::vector<int64_t>(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + n);
}

inline std::vector<int64_t> concat(std::vector<int64_t> a, const std::vector<int64_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

inline double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

// Max difference relative to b's largest magnitude (at least 1).
inline double relative_diff(const torch::Tensor& a, const torch::Tensor& b) {
  const double scale = std::max(1.0, b.to(torch::kFloat64).abs().max().item<double>());
  return max_abs_diff(a, b) / scale;
}

#define EXPECT_TENSOR_NEAR(a, b, tol) \
  EXPECT_LE(::flame::test::relative_diff((a), (b)), (tol)) << #a " vs " #b

// Hidden states of a single sequence (no batch dim): [T, hidden] per requested layer.
inline std::vector<torch::Tensor> single_pass(const llm::Transformer& model, const std::vector<int64_t>& ids,
                                              const std::vector<int64_t>& layers) {
  llm::ForwardInput in;
  in.input_ids = torch::tensor(ids, torch::kInt64).unsqueeze(0);
  llm::ForwardRequest req;
  req.hidden_layers = layers;
  auto out = model.forward(in, req);
  for (auto& h : out.hidden) h = h.squeeze(0);
  return out.hidden;
}

inline std::vector<int64_t> all_layers(const llm::Transformer& model) {
  std::vector<int64_t> layers;
  for (int64_t i = 0; i <= model.num_layers(); ++i) layers.push_back(i);
  return layers;
}

}  // namespace flame::test
