// An LLM's config.json, read as `flame llm ...` reads it (load_llm_config),
// and the parameter count of what it describes.
#include "fuzz_targets.h"
#include "llm/config.h"
#include "util/error.h"

namespace flame::fuzz {

bool llm_config(const uint8_t* data, size_t size) {
  try {
    const llm::LlmConfig config = llm::load_llm_config(input_file(data, size, "config.json"));
    if (config.parameter_count() <= 0) __builtin_trap();
    return true;
  } catch (const Error&) {
    return false;
  }
}

}  // namespace flame::fuzz

FLAME_FUZZ_ENTRY(llm_config)
