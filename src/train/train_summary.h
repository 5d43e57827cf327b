// What a training run did, as `flame train` prints it and summary.json holds
// it. Apart from the trainer, so a task (train/task.h) can add to it without
// including the loop.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>

namespace flame::train {

struct TrainSummary {
  int64_t first_step = 0;  // steps already done when this run started (resumed)
  int64_t steps = 0;       // steps done at the end
  double final_loss = 0;
  double images_per_second = 0;
  double data_wait_fraction = 0;
  int64_t skipped_images = 0;
  int64_t images_without_embedding = 0;
  // CLIP baseline: captions cut to the text tower's context, counted over the
  // captions this run trained on (all ranks; a resumed run counts its own steps).
  int64_t truncated_captions = 0;
  std::filesystem::path last_checkpoint;
  nlohmann::json to_json() const;
};

}  // namespace flame::train
