// Image decoding as the training loader does it (decode_image_pixels, which
// decode_image wraps): JPEG, PNG, and anything else refused. The decoder asks
// once for a buffer of a size within the limits and fills exactly that.
#include <memory>

#include "data/image_pixels.h"
#include "fuzz_targets.h"
#include "util/error.h"

namespace flame::fuzz {

bool image_decode(const uint8_t* data, size_t size) {
  // Not zero-filled, as torch::empty: a header claiming 13000x13000 costs no page-in.
  std::unique_ptr<uint8_t[]> pixels;
  size_t allocated = 0;
  int calls = 0;
  const bool jpeg = size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF;
  try {
    const auto decoded = data::decode_image_pixels(
        std::string_view(reinterpret_cast<const char*>(data), size), "fuzz",
        [&](int64_t height, int64_t width) {
          // Asked once, within the pixel limit; a JPEG within the decode budget.
          if (++calls != 1 || height < 1 || width < 1 || height * width > data::kMaxImagePixels)
            __builtin_trap();
          if (jpeg && height * width > data::kMaxDecodedPixels) __builtin_trap();
          allocated = static_cast<size_t>(height * width * 3);
          pixels.reset(new uint8_t[allocated]);
          return pixels.get();
        });
    if (calls != 1 || static_cast<size_t>(decoded.height * decoded.width * 3) != allocated) __builtin_trap();
    return true;
  } catch (const Error&) {
    return false;
  }
}

}  // namespace flame::fuzz

FLAME_FUZZ_ENTRY(image_decode)
