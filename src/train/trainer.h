// `flame train`: the image encoder learns to match the stored facet embeddings
// (FLAME), or, with text_tower "clip", an image and a text tower are trained
// together from scratch on the same images and captions (the CLIP baseline).
// What differs between the two is a TrainTask (train/task.h): the text side,
// the model, the features and loss of a batch, the parameter groups. The loop
// in trainer.cpp never asks which one it runs.
//
// One optimizer step, top to bottom (train_step in trainer.cpp):
//   for each of accum_steps micro-batches:
//     batch  = loader.next()                      images + the K facet embeddings of each
//                                                 (CLIP: + the caption rows)
//     loss   = task.loss(model, batch):
//       image = normalize(encoder(images).pooled) [b, D] on this rank
//       text  = normalize(task's text features)   [b, K, D]; CLIP: the text tower on the
//                                                 tokenized captions, [b, 1, D]
//       all   = gather(image), gather(text)       [B, D], [B, K, D] over all ranks
//       multi-positive InfoNCE or sigmoid over the whole batch
//     (loss / accum_steps).backward()             gradients reach this rank's rows only
//     a non-finite loss stops the run
//   all-reduce (sum) the gradients, clip (a non-finite norm stops the run), AdamW step
//   with the cosine lr, clamp the logit scale
//   log a JSONL line; every save_every steps, a checkpoint (train/checkpoint.h).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>

#include "train/train_options.h"
#include "train/train_summary.h"
#include "vision/image_encoder.h"

namespace flame::train {

struct StepLog {
  int64_t step = 0;  // 1-based: optimizer steps done
  int64_t epoch = 0;
  double loss = 0;
  double lr = 0;
  double logit_scale = 0;  // exp(logit_scale), the inverse temperature
  double grad_norm = 0;    // before clipping
  double images_per_second = 0;
  double data_wait_fraction = 0;  // share of the step spent waiting for the loader
  int64_t skipped_images = 0;
  nlohmann::json to_json() const;
};

struct TrainHooks {
  std::function<void(const StepLog&)> on_step;
  // Tests: called before optimizer step `step` (0-based) with the model, e.g.
  // to plant a NaN.
  std::function<void(int64_t step, vision::ImageEncoder&)> before_step;
  // Tests: stop (as if killed) once this many steps are done, without a final
  // checkpoint. -1: run to the end.
  int64_t stop_after_step = -1;
};

// How a run treats its folder (options.out). kNew refuses a folder that already
// holds a run (checkpoints/, train-log.jsonl or summary.json): mixing two runs
// would lose both. kResume continues its latest checkpoint (or starts when there
// is none). kOverwrite deletes the old run's checkpoints and logs first.
enum class RunStart { kNew, kResume, kOverwrite };

// Runs (or continues) a run. Rank 0 holds DIR/.lock while it runs (a second
// process on the folder fails naming the holder) and removes the temp files
// of a checkpoint or log write that was interrupted; a resumed run's
// train-log.jsonl is cut back to the checkpoint's step, so no step is logged
// twice. Data parallel when the torchrun variables are set
// (util/distributed.h). Throws flame::Error on bad input, on a non-finite
// loss or gradient (naming the step; the last checkpoint is left intact), and
// when too many images are unreadable.
TrainSummary run_training(const TrainOptions& options, RunStart start, const TrainHooks& hooks = {});
inline TrainSummary run_training(const TrainOptions& options, bool resume, const TrainHooks& hooks = {}) {
  return run_training(options, resume ? RunStart::kResume : RunStart::kNew, hooks);
}

}  // namespace flame::train
