// CLIP_benchmark's linear probe (eval/adamw_probe.h) against an independent
// PyTorch run of the same procedure (tests/python/clip_benchmark_probe_reference.py,
// Debian's python3-torch): equal logits for equal seeds, on features with a
// partial last batch; and a probe that learns a separable problem.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "eval/adamw_probe.h"
#include "test_helpers.h"
#include "util/error.h"
#include "util/file.h"

namespace flame {
namespace {

namespace fs = std::filesystem;

// Three noisy clusters in 6 dimensions: N rows, labels 0..2 in turn.
std::pair<torch::Tensor, torch::Tensor> clusters(int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  const torch::Tensor centres = torch::randn({3, 6});
  const torch::Tensor y = torch::arange(n, torch::kInt64) % 3;
  return {centres.index_select(0, y) + 0.8 * torch::randn({n, 6}), y};
}

nlohmann::json rows_json(const torch::Tensor& t) {
  nlohmann::json out = nlohmann::json::array();
  const torch::Tensor c = t.contiguous();
  for (int64_t i = 0; i < c.size(0); ++i) {
    if (c.dim() == 1) {
      out.push_back(c[i].item<int64_t>());
      continue;
    }
    std::vector<float> row(c.size(1));
    for (int64_t j = 0; j < c.size(1); ++j) row[j] = c[i][j].item<float>();
    out.push_back(row);
  }
  return out;
}

TEST(AdamwProbe, EqualsPyTorchRunOfClipBenchmarksProcedure) {
  const fs::path dir = test::fresh_temp_dir();
  const auto [x, y] = clusters(100, 1);
  const torch::Tensor train_x = x.slice(0, 0, 70), train_y = y.slice(0, 0, 70);  // batches of 32: 32, 32, 6
  const torch::Tensor test_x = x.slice(0, 70);
  eval::AdamwProbeOptions o;
  o.lr = 0.1;
  o.epochs = 3;
  o.batch_size = 32;
  o.seed = 7;
  const torch::Tensor logits = eval::adamw_probe_logits(train_x, train_y, test_x, o);
  ASSERT_EQ(logits.sizes(), (std::vector<int64_t>{30, 3}));

  write_json_file_atomic(dir / "input.json", {{"train_x", rows_json(train_x)},
                                              {"train_y", rows_json(train_y)},
                                              {"test_x", rows_json(test_x)},
                                              {"lr", o.lr},
                                              {"epochs", o.epochs},
                                              {"batch_size", o.batch_size},
                                              {"seed", o.seed}});
  const fs::path script =
      test::test_data_dir().parent_path() / "python" / "clip_benchmark_probe_reference.py";
  const test::CommandResult r = test::run_command(
      fmt::format(FLAME_PYTHON " {} {} 2>&1", script.string(), (dir / "input.json").string()));
  ASSERT_EQ(r.status, 0) << r.output;
  const auto reference = nlohmann::json::parse(r.output).get<std::vector<std::vector<float>>>();
  ASSERT_EQ(reference.size(), 30u);
  float worst = 0;
  for (int64_t i = 0; i < 30; ++i)
    for (int64_t j = 0; j < 3; ++j)
      worst = std::max(worst, std::abs(logits[i][j].item<float>() - reference[i][j]));
  EXPECT_LT(worst, 1e-5) << "largest logit difference from the PyTorch run";

  // Another seed shuffles and initialises otherwise: other logits.
  o.seed = 8;
  EXPECT_GT((eval::adamw_probe_logits(train_x, train_y, test_x, o) - logits).abs().max().item<float>(), 1e-3);
}

TEST(AdamwProbe, LearnsSeparableClassesAndRefusesBadInput) {
  const auto [x, y] = clusters(390, 3);
  const torch::Tensor train_x = x.slice(0, 0, 300), train_y = y.slice(0, 0, 300);
  const torch::Tensor test_x = x.slice(0, 300), test_y = y.slice(0, 300);
  const torch::Tensor logits = eval::adamw_probe_logits(train_x, train_y, test_x, {});
  const double accuracy = logits.argmax(1).eq(test_y).to(torch::kFloat64).mean().item<double>();
  EXPECT_GT(accuracy, 0.8);
  EXPECT_THROW(eval::adamw_probe_logits(train_x, train_y.slice(0, 1), test_x, {}), Error);
  EXPECT_THROW(eval::adamw_probe_logits(train_x, train_y, test_x.slice(1, 1), {}), Error);
  eval::AdamwProbeOptions zero_epochs;
  zero_epochs.epochs = 0;
  EXPECT_THROW(eval::adamw_probe_logits(train_x, train_y, test_x, zero_epochs), Error);
}

}  // namespace
}  // namespace flame
