// An import config of flame import --format open_clip (open_clip_config.json
// of flame's export, or the method's release model config), as import checks
// it before reading any tensor. Links src/train/open_clip_config.cpp (no
// LibTorch): scripts/fuzz needs it in tests/fuzz/Makefile's SOURCES.
#include "fuzz_targets.h"
#include "train/open_clip_config.h"
#include "util/error.h"
#include "util/file.h"

namespace flame::fuzz {

bool open_clip_config(const uint8_t* data, size_t size) {
  try {
    const std::filesystem::path path = input_file(data, size, "open_clip_config.json");
    const nlohmann::json config = read_json_file(path);
    train::check_open_clip_config(config, path);
    if (!config.is_object()) __builtin_trap();  // accepted: an object, whatever else
    return true;
  } catch (const Error&) {
    return false;
  }
}

}  // namespace flame::fuzz

FLAME_FUZZ_ENTRY(open_clip_config)
