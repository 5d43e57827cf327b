#include "train/lr_schedule.h"

#include <algorithm>
#include <cmath>

namespace flame::train {

double cosine_lr(int64_t step, int64_t total_steps, int64_t warmup_steps, double lr, double min_lr) {
  if (step < warmup_steps) return lr * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
  const int64_t decay_steps = total_steps - warmup_steps;
  if (decay_steps <= 1) return lr;
  const double progress = std::clamp(static_cast<double>(step - warmup_steps) / (decay_steps - 1), 0.0, 1.0);
  return min_lr + (lr - min_lr) * 0.5 * (1.0 + std::cos(M_PI * progress));
}

}  // namespace flame::train
