#include "eval/linear_probe.h"

#include <algorithm>
#include <cmath>
#include <functional>

#include "eval/metrics.h"
#include "util/error.h"

namespace flame::eval {

namespace {

namespace F = torch::nn::functional;

struct Split {
  torch::Tensor x;                // [N, D] float64, CPU
  torch::Tensor y;                // [N] int64, CPU
  std::vector<int64_t> y_vector;  // the same labels, for classification_accuracy
};

// The split's features as contiguous float64 and labels as int64, after checking them.
Split checked_split(const torch::Tensor& x, const torch::Tensor& y, int64_t dim, const char* split) {
  if (!x.defined() || x.dim() != 2) {
    fail("linear_probe: {}_x must be a 2-D tensor [N, D], got {}", split,
         x.defined() ? c10::str(x.sizes()) : std::string("an undefined tensor"));
  }
  if (!x.is_floating_point())
    fail("linear_probe: {}_x must be floating point, got {}", split, c10::str(x.dtype()));
  if (x.size(0) == 0) fail("linear_probe: {} split is empty", split);
  if (dim >= 0 && x.size(1) != dim) {
    fail("linear_probe: {}_x has {} features per row but train_x has {}", split, x.size(1), dim);
  }
  if (!y.defined() || y.dim() != 1 || y.is_floating_point() || y.scalar_type() == torch::kBool) {
    fail("linear_probe: {}_y must be a 1-D integer tensor, got {}", split,
         y.defined() ? c10::str(y.dtype(), " ", y.sizes()) : std::string("an undefined tensor"));
  }
  if (y.size(0) != x.size(0)) {
    fail("linear_probe: {}_y has {} labels for {} rows of {}_x", split, y.size(0), x.size(0), split);
  }
  Split out;
  out.y = y.detach().to(torch::kCPU, torch::kLong).contiguous();
  out.y_vector.assign(out.y.data_ptr<int64_t>(), out.y.data_ptr<int64_t>() + out.y.numel());
  for (size_t i = 0; i < out.y_vector.size(); ++i)
    if (out.y_vector[i] < 0) fail("linear_probe: {}_y[{}] is negative ({})", split, i, out.y_vector[i]);
  out.x = x.detach().to(torch::kCPU, torch::kDouble).contiguous();
  if (!torch::isfinite(out.x).all().item<bool>()) fail("linear_probe: {}_x contains NaN or infinity", split);
  return out;
}

// x -> (x - mean) * inv_std, with the statistics of the fitting set.
struct Standardizer {
  torch::Tensor mean;     // [D]
  torch::Tensor inv_std;  // [D]

  static Standardizer fit(const torch::Tensor& x, bool enabled) {
    const int64_t d = x.size(1);
    if (!enabled) return {torch::zeros({d}, x.options()), torch::ones({d}, x.options())};
    const torch::Tensor std = x.std(0, /*unbiased=*/false);
    // A constant feature has std 0: centre it only (it becomes 0 everywhere).
    const torch::Tensor safe = torch::where(std > 1e-12, std, torch::ones_like(std));
    return {x.mean(0), safe.reciprocal()};
  }
  torch::Tensor apply(const torch::Tensor& x) const { return (x - mean) * inv_std; }
};

struct Probe {
  torch::Tensor weight;  // [C, D]
  torch::Tensor bias;    // [C]

  torch::Tensor logits(const torch::Tensor& x) const { return torch::addmm(bias, x, weight.t()); }
};

// Minimises the documented objective from `start` with full-batch L-BFGS.
Probe fit_probe(const torch::Tensor& x, const torch::Tensor& y, double l2, const Probe& start,
                const LinearProbeOptions& options) {
  torch::AutoGradMode grad_mode(true);  // callers may hold a NoGradGuard
  torch::Tensor weight = start.weight.clone().requires_grad_(true);
  torch::Tensor bias = start.bias.clone().requires_grad_(true);
  torch::optim::LBFGS optimizer({weight, bias}, torch::optim::LBFGSOptions(1.0)
                                                    .max_iter(options.max_iterations)
                                                    .tolerance_grad(options.tolerance)
                                                    .tolerance_change(options.tolerance * 1e-3)
                                                    .history_size(20)
                                                    .line_search_fn("strong_wolfe"));
  auto closure = [&]() -> torch::Tensor {
    optimizer.zero_grad();
    torch::Tensor loss =
        F::cross_entropy(torch::addmm(bias, x, weight.t()), y) + 0.5 * l2 * weight.pow(2).sum();
    loss.backward();
    return loss;
  };
  optimizer.step(closure);
  return {weight.detach(), bias.detach()};
}

double top1(const Probe& probe, const torch::Tensor& x, const std::vector<int64_t>& y) {
  return classification_accuracy(probe.logits(x), y).top1;
}

}  // namespace

LinearProbeResult linear_probe(const torch::Tensor& train_x, const torch::Tensor& train_y,
                               const torch::Tensor& val_x, const torch::Tensor& val_y,
                               const torch::Tensor& test_x, const torch::Tensor& test_y,
                               const LinearProbeOptions& options) {
  if (options.l2_grid.empty()) fail("linear_probe: l2_grid is empty");
  for (const double l2 : options.l2_grid)
    if (!(l2 >= 0) || !std::isfinite(l2)) fail("linear_probe: l2 strength {} is not a finite value >= 0", l2);
  if (options.max_iterations < 1)
    fail("linear_probe: max_iterations must be >= 1, got {}", options.max_iterations);
  if (!(options.tolerance > 0)) fail("linear_probe: tolerance must be > 0, got {}", options.tolerance);

  const Split train = checked_split(train_x, train_y, -1, "train");
  const int64_t dim = train.x.size(1);
  const Split val = checked_split(val_x, val_y, dim, "val");
  const Split test = checked_split(test_x, test_y, dim, "test");
  int64_t num_classes = 0;
  for (const Split* split : {&train, &val, &test})
    num_classes = std::max(num_classes, split->y.max().item<int64_t>() + 1);
  const auto double_options = train.x.options();

  // Grid on train, scored on val. Strongest penalty first: each fit starts from
  // the previous optimum (a regularisation path), which converges faster than
  // from zero and, the objective being convex, lands on the same optimum.
  std::vector<double> grid = options.l2_grid;
  std::sort(grid.begin(), grid.end(), std::greater<double>());
  grid.erase(std::unique(grid.begin(), grid.end()), grid.end());
  const Standardizer train_scale = Standardizer::fit(train.x, options.standardize);
  const torch::Tensor train_std = train_scale.apply(train.x), val_std = train_scale.apply(val.x);

  LinearProbeResult result;
  Probe probe{torch::zeros({num_classes, dim}, double_options), torch::zeros({num_classes}, double_options)};
  Probe best_probe;
  bool have_best = false;
  for (const double l2 : grid) {
    probe = fit_probe(train_std, train.y, l2, probe, options);
    const double accuracy = top1(probe, val_std, val.y_vector);
    result.val_top1_by_l2[l2] = accuracy;
    // Descending order: a later (smaller) l2 must be strictly better to win.
    if (!have_best || accuracy > result.val_top1) {
      have_best = true;
      result.best_l2 = l2;
      result.val_top1 = accuracy;
      best_probe = probe;
    }
  }

  // Refit on train + val with the chosen strength, from the chosen fit.
  const torch::Tensor all = torch::cat({train.x, val.x});
  const Standardizer all_scale = Standardizer::fit(all, options.standardize);
  const Probe refit =
      fit_probe(all_scale.apply(all), torch::cat({train.y, val.y}), result.best_l2, best_probe, options);

  // Fold the standardisation in: W ((x - mean) * s) + b = (W * s) x + (b - (W * s) mean).
  result.weight = refit.weight * all_scale.inv_std;
  result.bias = refit.bias - torch::mv(result.weight, all_scale.mean);
  result.test_top1 = top1(Probe{result.weight, result.bias}, test.x, test.y_vector);
  return result;
}

}  // namespace flame::eval
