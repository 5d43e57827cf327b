// CLIP_benchmark's linear probe (clip_benchmark/metrics/linear_probe.py), the
// one the method's table 5 runs (`--task linear_probe --fewshot_lr 0.1
// --fewshot_epochs 20 --batch_size 512`): one linear layer on L2-normalised
// frozen features, trained with AdamW (weight decay 0) on cross-entropy over
// shuffled mini-batches, its learning rate on a per-step cosine schedule
// without warm-up, for a fixed number of epochs over every train row; no
// validation split, no regularisation search. flame's own L-BFGS probe with an
// L2 search is linear_probe.h.
//
// The random draws are CLIP_benchmark's, in its order, from torch's default
// CPU generator seeded with `seed`: the train rows are permuted (its few-shot
// selection, all rows kept), nn.Linear is initialised, and each epoch a
// DataLoader iterator draws its base seed and its RandomSampler a seed for its
// own generator's permutation. Run on CPU in float32, the probe equals one made
// by that code with the same seed (CLIP_benchmark itself runs it on CUDA under
// fp16 autocast, after seeding once for the whole run, so its numbers match to
// that precision, not bit for bit).
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace flame::eval {

struct AdamwProbeOptions {
  double lr = 0.1;          // CLIP_benchmark's --fewshot_lr default
  int64_t epochs = 10;      // its --fewshot_epochs default
  int64_t batch_size = 64;  // its --batch_size default
  uint64_t seed = 0;        // its --seed default
  // Where the probe trains (the evaluation's --device). Random draws stay on
  // the CPU generator, as CLIP_benchmark makes them, so a device changes
  // rounding only.
  torch::Device device = torch::kCPU;
};

// Trains on train_x [N, D] (any float type; normalised here) with labels
// train_y [N] in 0..C-1, C = 1 + the largest train label, and returns the
// logits [M, C] (float32, on the CPU) of test_x [M, D], normalised likewise. Throws
// flame::Error on malformed inputs.
torch::Tensor adamw_probe_logits(const torch::Tensor& train_x, const torch::Tensor& train_y,
                                 const torch::Tensor& test_x, const AdamwProbeOptions& options = {});

}  // namespace flame::eval
