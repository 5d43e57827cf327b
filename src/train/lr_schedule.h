// Learning rate per optimizer step: linear warm-up from 0, then cosine decay to
// min_lr at the last step (OpenCLIP's "cosine" schedule).
#pragma once

#include <cstdint>

namespace flame::train {

// `step` counts from 0; step < warmup: lr * (step + 1) / warmup; afterwards
// min_lr + (lr - min_lr) * (1 + cos(pi * progress)) / 2, progress going from 0
// at the first step after warm-up to 1 at step total - 1.
double cosine_lr(int64_t step, int64_t total_steps, int64_t warmup_steps, double lr, double min_lr = 0.0);

}  // namespace flame::train
