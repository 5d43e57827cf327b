// A training checkpoint's config.json, as load_checkpoint reads it before
// building the model: the ViT and (CLIP) text tower shapes, within the
// parameter limit.
#include "fuzz_targets.h"
#include "train/model_config.h"
#include "util/error.h"
#include "util/file.h"

namespace flame::fuzz {

bool checkpoint_config(const uint8_t* data, size_t size) {
  try {
    const auto config =
        train::model_config_from_json(read_json_file(input_file(data, size, "config.json")), "config.json");
    if (config.vit.width < 1 || config.text_dim < 1) __builtin_trap();
    return true;
  } catch (const Error&) {
    return false;
  }
}

}  // namespace flame::fuzz

FLAME_FUZZ_ENTRY(checkpoint_config)
