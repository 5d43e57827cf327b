// Image decoding for training and evaluation: JPEG (TurboJPEG), PNG (libpng)
// and WebP (libwebp; CLIP_benchmark's WebDataset exports store their images
// so), always to 8-bit RGB (data/image_pixels.h does the decoding).
//
// Datasets of millions of web images hold some broken files; decoding one must
// end in a flame::Error the loader can catch and skip, never in a crash.
#pragma once

#include <torch/torch.h>

#include <string>
#include <string_view>

#include "data/image_pixels.h"

namespace flame::data {

// Decodes a JPEG, PNG or WebP to uint8 [H, W, 3] RGB (decode_image_pixels: a JPEG
// above kMaxDecodedPixels comes out at reduced scale). Throws flame::Error
// naming `name` for corrupt, truncated, oversized or unsupported data.
torch::Tensor decode_image(std::string_view bytes, const std::string& name);

}  // namespace flame::data
