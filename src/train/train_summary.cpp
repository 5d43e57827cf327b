#include "train/train_summary.h"

namespace flame::train {

nlohmann::json TrainSummary::to_json() const {
  return {{"first_step", first_step},
          {"steps", steps},
          {"final_loss", final_loss},
          {"images_per_s", images_per_second},
          {"data_wait_fraction", data_wait_fraction},
          {"skipped_images", skipped_images},
          {"images_without_embedding", images_without_embedding},
          {"truncated_captions", truncated_captions},
          {"last_checkpoint", last_checkpoint.string()}};
}

}  // namespace flame::train
