#include "eval/adamw_probe.h"

#include <cmath>

#include "eval/task_common.h"
#include "util/error.h"

namespace flame::eval {

namespace {

namespace F = torch::nn::functional;

void check_inputs(const torch::Tensor& train_x, const torch::Tensor& train_y, const torch::Tensor& test_x,
                  const AdamwProbeOptions& o) {
  if (!train_x.defined() || train_x.dim() != 2 || train_x.size(0) == 0 || !train_x.is_floating_point())
    fail("adamw_probe: train_x must be a non-empty floating point [N, D] tensor");
  if (!train_y.defined() || train_y.dim() != 1 || train_y.size(0) != train_x.size(0) ||
      train_y.is_floating_point())
    fail("adamw_probe: train_y must hold one integer label per train_x row");
  if (train_y.min().item<int64_t>() < 0) fail("adamw_probe: train_y has a negative label");
  if (!test_x.defined() || test_x.dim() != 2 || test_x.size(1) != train_x.size(1))
    fail("adamw_probe: test_x must be [M, {}] as train_x", train_x.size(1));
  if (o.lr <= 0 || o.epochs <= 0 || o.batch_size <= 0)
    fail("adamw_probe: lr, epochs and batch size must be positive (got {}, {}, {})", o.lr, o.epochs,
         o.batch_size);
}

// The draw torch.empty((), dtype=torch.int64).random_() makes from the default generator.
int64_t draw_seed() {
  return torch::empty({}, torch::kInt64).random_().item<int64_t>();
}

}  // namespace

torch::Tensor adamw_probe_logits(const torch::Tensor& train_x, const torch::Tensor& train_y,
                                 const torch::Tensor& test_x, const AdamwProbeOptions& o) {
  check_inputs(train_x, train_y, test_x, o);
  torch::NoGradGuard outside;  // only the probe's own step records gradients
  torch::manual_seed(o.seed);
  const torch::Tensor order = torch::randperm(train_x.size(0), torch::kInt64);  // few-shot selection: all
  const torch::Tensor x = l2_normalize(train_x.to(torch::kFloat32)).index_select(0, order).to(o.device);
  const torch::Tensor y = train_y.to(torch::kInt64).index_select(0, order).to(o.device);
  const int64_t n = x.size(0), classes = y.max().item<int64_t>() + 1;
  torch::nn::Linear probe(x.size(1), classes);  // initialised on the CPU, then moved, as CLIP_benchmark
  probe->to(o.device);
  torch::optim::AdamW optimizer(probe->parameters(), torch::optim::AdamWOptions(o.lr).weight_decay(0));
  const int64_t batches = (n + o.batch_size - 1) / o.batch_size, steps = o.epochs * batches;
  for (int64_t epoch = 0; epoch < o.epochs; ++epoch) {
    draw_seed();  // the DataLoader iterator's base seed (unused without workers' own draws)
    auto generator = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(draw_seed()));
    const torch::Tensor shuffled = torch::randperm(n, generator, torch::kInt64);
    for (int64_t b = 0; b < batches; ++b) {
      const int64_t step = epoch * batches + b;
      const double lr =
          0.5 * (1 + std::cos(M_PI * static_cast<double>(step) / static_cast<double>(steps))) * o.lr;
      for (auto& group : optimizer.param_groups())
        static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
      const torch::Tensor rows =
          shuffled.slice(0, b * o.batch_size, std::min(n, (b + 1) * o.batch_size)).to(o.device);
      torch::AutoGradMode with_grad(true);
      optimizer.zero_grad();
      const torch::Tensor loss = F::cross_entropy(probe(x.index_select(0, rows)), y.index_select(0, rows));
      loss.backward();
      optimizer.step();
    }
  }
  return probe(l2_normalize(test_x.to(torch::kFloat32)).to(o.device)).cpu();
}

}  // namespace flame::eval
