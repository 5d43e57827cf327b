// Test helper: WebP files from RGB tensors through libwebp's encoder (lossless
// or lossy), for the decoder's and the CLIP_benchmark reader's tests.
#pragma once

#include <torch/torch.h>
#include <webp/encode.h>

#include <string>

namespace flame::test {

// uint8 [H, W, 3] RGB -> a WebP file; lossless unless `quality` >= 0.
inline std::string encode_webp(const torch::Tensor& rgb, float quality = -1) {
  const torch::Tensor c = rgb.contiguous();
  const int h = static_cast<int>(c.size(0)), w = static_cast<int>(c.size(1));
  uint8_t* out = nullptr;
  const size_t size = quality < 0 ? WebPEncodeLosslessRGB(c.data_ptr<uint8_t>(), w, h, w * 3, &out)
                                  : WebPEncodeRGB(c.data_ptr<uint8_t>(), w, h, w * 3, quality, &out);
  std::string bytes(reinterpret_cast<const char*>(out), size);
  WebPFree(out);
  return bytes;
}

}  // namespace flame::test
