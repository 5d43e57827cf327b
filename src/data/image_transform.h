// Image augmentation and preprocessing as OpenCLIP does it: training takes a
// RandomResizedCrop (torchvision's algorithm), evaluation resizes the shorter
// side and crops the centre; both resample bicubically with antialiasing (as
// Pillow does) and normalise with the CLIP mean and std.
//
// All randomness comes from an explicit seed, drawn with the portable helpers
// of util/rng.h, so a sample's augmentation is the same on every machine, in
// any worker thread, and after a resume.
#pragma once

#include <torch/torch.h>

#include <array>
#include <cstdint>

namespace flame::data {

inline constexpr std::array<double, 3> kClipMean = {0.48145466, 0.4578275, 0.40821073};
inline constexpr std::array<double, 3> kClipStd = {0.26862954, 0.26130258, 0.27577711};

struct ImageTransformOptions {
  int64_t size = 224;                               // output side
  bool train = false;                               // RandomResizedCrop; otherwise resize + centre crop
  double scale_min = 0.9, scale_max = 1.0;          // crop area / image area (OpenCLIP's default)
  double ratio_min = 3.0 / 4, ratio_max = 4.0 / 3;  // crop width / height
};

// A pixel rectangle of an image.
struct CropBox {
  int64_t top = 0, left = 0, height = 0, width = 0;
};

// torchvision's RandomResizedCrop.get_params: up to 10 draws of an area
// fraction (uniform in [scale_min, scale_max]) and an aspect ratio
// (log-uniform in [ratio_min, ratio_max]) until the crop fits, else a centre
// crop clamped to the ratio range. A pure function of its arguments.
CropBox random_resized_crop_box(int64_t height, int64_t width, const ImageTransformOptions& options,
                                uint64_t seed);

// Eval geometry: the image is resized so its shorter side is `size`, then the
// centre size x size is kept. Returns the resized dims (torchvision's
// Resize(int) rounding) and the crop in resized coordinates.
struct EvalGeometry {
  int64_t resized_height = 0, resized_width = 0;
  CropBox crop;
};
EvalGeometry eval_geometry(int64_t height, int64_t width, int64_t size);

// Crops `box` out of uint8 [H, W, 3] and resizes it to [out_height, out_width, 3]
// uint8 with the antialiased bicubic filter of Pillow and torch (a = -0.5; the
// kernel widens by the downscaling factor), in float through both passes as
// torch's antialiased interpolate, rounding to the nearest integer at the end
// (Pillow rounds to uint8 between its passes: a few values differ by 1-4/255).
// Single-threaded plain C++: loader workers must not start torch thread pools.
torch::Tensor resized_crop(const torch::Tensor& hwc_u8, const CropBox& box, int64_t out_height,
                           int64_t out_width);

// uint8 [H, W, 3] RGB -> float32 [3, size, size], CLIP-normalised. `seed` is
// used only when options.train is set.
torch::Tensor transform_image(const torch::Tensor& hwc_u8, const ImageTransformOptions& options,
                              uint64_t seed);

}  // namespace flame::data
