// Image decoding for training and evaluation: JPEG (TurboJPEG), PNG (libpng)
// and WebP (libwebp; CLIP_benchmark's WebDataset exports store their images
// so), told apart by their magic bytes, always to 8-bit RGB.
//
// Datasets of millions of web images hold some broken files; decoding one must
// end in a flame::Error the loader can catch and skip, never in a crash.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace flame::data {

// Images with more pixels are refused (Pillow's decompression-bomb limit):
// a corrupt header must not make a worker allocate gigabytes.
inline constexpr int64_t kMaxImagePixels = 178956970;

// Decodes a JPEG, PNG or still WebP to uint8 [H, W, 3] RGB. Grayscale and
// CMYK JPEGs and palette, grayscale and 16-bit PNGs become 8-bit RGB; alpha is
// dropped (as Pillow's convert("RGB") does). Throws flame::Error naming `name`
// for corrupt, truncated (a TurboJPEG warning counts as an error), oversized
// or unsupported (animated WebP, GIF, ...) data.
torch::Tensor decode_image(std::string_view bytes, const std::string& name);

}  // namespace flame::data
