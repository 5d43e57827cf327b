// Linear probe: multinomial logistic regression on frozen image features, the
// standard measure of how linearly separable a representation is.
//
// For each L2 strength l2, the probe minimises over W [C, D] and b [C]
//   L(W, b) = (1/N) sum_n CE(W x_n + b, y_n) + (l2 / 2) ||W||_F^2
// (bias not penalised) with full-batch L-BFGS (strong-Wolfe line search) in
// float64, starting from zero. The l2 with the best validation top-1 wins (ties
// go to the larger l2, the simpler model); the probe is then refitted on
// train + val with it and scored on test. Everything is deterministic: the fit
// has no random part.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <vector>

namespace flame::eval {

struct LinearProbeOptions {
  std::vector<double> l2_grid = {1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1};
  int64_t max_iterations = 200;  // L-BFGS iterations per fit
  // Stop when the largest gradient entry is <= tolerance, or when an iteration
  // changes the loss (or moves the parameters) by less than tolerance / 1000.
  double tolerance = 1e-6;
  // Standardise every feature with the mean and std of the fitting set (train
  // for the grid, train + val for the refit); constant features are centred only.
  bool standardize = true;
  uint64_t seed = 0;  // reserved: the fit starts from zero and uses no randomness
};

struct LinearProbeResult {
  double best_l2 = 0;
  double val_top1 = 0;   // of the best_l2 fit on train
  double test_top1 = 0;  // of the train + val refit
  std::map<double, double> val_top1_by_l2;
  // The refitted probe on RAW features (standardisation folded in), float64:
  // logits = x weight^T + bias; weight [C, D], bias [C].
  torch::Tensor weight;
  torch::Tensor bias;
};

// x: [N, D] floating point features of each split (same D); y: [N] integer
// class indices >= 0, one per row. The number of classes C is 1 + the largest label of any
// split. Accuracies use classification_accuracy (pessimistic ties).
LinearProbeResult linear_probe(const torch::Tensor& train_x, const torch::Tensor& train_y,
                               const torch::Tensor& val_x, const torch::Tensor& val_y,
                               const torch::Tensor& test_x, const torch::Tensor& test_y,
                               const LinearProbeOptions& options = {});

}  // namespace flame::eval
