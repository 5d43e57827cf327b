// libFuzzer target: any byte string either parses as a safetensors header or
// is refused with flame::Error; nothing else (crash, hang, other exception,
// sanitizer report) is acceptable. Run with scripts/fuzz.
#include <cstddef>
#include <cstdint>

#include "util/error.h"
#include "util/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto header = flame::parse_safetensors_header(data, size, "fuzz");
    // A parsed header must describe bytes inside the input.
    for (const auto& [name, info] : header.tensors) {
      if (header.data_start + info.end > size) __builtin_trap();
    }
  } catch (const flame::Error&) {
  }
  return 0;
}
