// The decoding core behind data/image_decode.h, without torch: JPEG
// (TurboJPEG), PNG (libpng) and still WebP (libwebp), told apart by their magic bytes, always to
// 8-bit RGB, written into memory the caller provides. It is kept free of torch
// so the fuzz target (tests/fuzz/image_decode_fuzz.cpp) runs the very code the
// training loader runs.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace flame::data {

// Images with more pixels are refused (Pillow's decompression-bomb limit):
// a corrupt header must not make a worker allocate gigabytes.
inline constexpr int64_t kMaxImagePixels = 178956970;

// A JPEG above this many pixels is decoded at the largest TurboJPEG scale
// (M/8) that fits: a 10000x10000 photo takes 42 MB instead of 300 MB per
// decoding thread, and every model input is far smaller anyway. PNG cannot be
// decoded at reduced scale; it is bounded by kMaxImagePixels alone.
inline constexpr int64_t kMaxDecodedPixels = 4096 * 4096;

// Returns where [height * width * 3] bytes of RGB are to be written.
using PixelAllocator = std::function<uint8_t*(int64_t height, int64_t width)>;

struct DecodedSize {
  int64_t height = 0, width = 0;
};

// Decodes a JPEG, PNG or WebP into memory from `allocate` (called once, after the
// header was checked) and returns the decoded size. Grayscale and CMYK JPEGs
// and palette, grayscale and 16-bit PNGs become 8-bit RGB; alpha is dropped
// (as Pillow's convert("RGB") does). Throws flame::Error naming `name` for
// corrupt, truncated (a TurboJPEG warning counts as an error), oversized or
// unsupported (animated WebP, GIF, ...) data.
DecodedSize decode_image_pixels(std::string_view bytes, const std::string& name,
                                const PixelAllocator& allocate);

}  // namespace flame::data
