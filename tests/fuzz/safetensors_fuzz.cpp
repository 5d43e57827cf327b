// Any byte string either parses as a safetensors header or is refused with
// flame::Error; a parsed header describes bytes inside the input.
#include "fuzz_targets.h"
#include "util/error.h"
#include "util/safetensors.h"

namespace flame::fuzz {

bool safetensors(const uint8_t* data, size_t size) {
  try {
    const auto header = parse_safetensors_header(data, size, "fuzz");
    for (const auto& [name, info] : header.tensors) {
      if (header.data_start + info.end > size) __builtin_trap();
    }
    return true;
  } catch (const Error&) {
    return false;
  }
}

}  // namespace flame::fuzz

FLAME_FUZZ_ENTRY(safetensors)
