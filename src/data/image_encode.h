// PNG encoding (libpng) of 8-bit RGB images: the pictures eval commands write
// (patch-to-word maps). The counterpart of image_decode.h.
#pragma once

#include <torch/torch.h>

#include <filesystem>
#include <string>

namespace flame::data {

// uint8 [H, W, 3] RGB (any device, any strides) -> the bytes of a PNG file.
std::string encode_png(const torch::Tensor& rgb_u8_hwc);

// Writes encode_png(image) to `path` atomically (temp file + rename), so a
// crash never leaves a truncated picture behind.
void write_png(const std::filesystem::path& path, const torch::Tensor& rgb_u8_hwc);

}  // namespace flame::data
