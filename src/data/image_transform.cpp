#include "data/image_transform.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "util/error.h"
#include "util/rng.h"

namespace flame::data {

namespace {

// Python's round(): halves go to the even neighbour (nearbyint in the default
// rounding mode), so crop sizes match torchvision's.
int64_t round_half_even(double x) {
  return static_cast<int64_t>(std::nearbyint(x));
}

// Pillow's bicubic kernel (a = -0.5); torch's antialiased kernel uses the same.
double bicubic(double x) {
  constexpr double a = -0.5;
  x = std::fabs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
  if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
  return 0.0;
}

// For each output sample along one axis, the input samples it reads and their
// normalised weights (Pillow's precompute_coeffs). The input is the span
// [in_begin, in_begin + in_length) of the axis; taps never leave it, as
// torchvision crops before resizing. Output samples are out_begin ..
// out_begin + out_count - 1 of a resize to out_length.
struct Taps {
  std::vector<int64_t> first;  // first input index of each output sample
  std::vector<int64_t> count;
  std::vector<float> weights;  // out_count x width
  int64_t width = 0;
};

Taps make_taps(int64_t in_begin, int64_t in_length, int64_t out_length, int64_t out_begin,
               int64_t out_count) {
  const double scale = static_cast<double>(in_length) / static_cast<double>(out_length);
  const double filter_scale = std::max(scale, 1.0);  // widen the kernel when downscaling (antialias)
  const double support = 2.0 * filter_scale;
  Taps taps;
  taps.width = static_cast<int64_t>(std::ceil(support)) * 2 + 1;
  taps.first.resize(out_count);
  taps.count.resize(out_count);
  taps.weights.assign(static_cast<size_t>(out_count * taps.width), 0.0f);
  std::vector<double> w(taps.width);
  for (int64_t i = 0; i < out_count; ++i) {
    const double center = (static_cast<double>(out_begin + i) + 0.5) * scale;
    const int64_t lo = std::max<int64_t>(static_cast<int64_t>(center - support + 0.5), 0);
    const int64_t hi = std::min<int64_t>(static_cast<int64_t>(center + support + 0.5), in_length);
    const int64_t n = std::max<int64_t>(hi - lo, 0);
    double total = 0.0;
    for (int64_t x = 0; x < n; ++x) {
      w[x] = bicubic((static_cast<double>(x + lo) - center + 0.5) / filter_scale);
      total += w[x];
    }
    for (int64_t x = 0; x < n; ++x)
      taps.weights[i * taps.width + x] = static_cast<float>(total != 0.0 ? w[x] / total : 0.0);
    taps.first[i] = in_begin + lo;
    taps.count[i] = n;
  }
  return taps;
}

void check_image(const torch::Tensor& image) {
  if (image.scalar_type() != torch::kUInt8 || image.dim() != 3 || image.size(2) != 3) {
    fail("image transform: expected a uint8 [H, W, 3] image, got {} {}",
         std::string(c10::toString(image.scalar_type())), fmt::join(image.sizes(), "x"));
  }
  if (image.size(0) < 1 || image.size(1) < 1)
    fail("image transform: empty image {}x{}", image.size(0), image.size(1));
}

// The core of resized_crop, returning float samples rounded to [0, 255]:
// `rows`/`cols` map output rows/columns to input taps.
std::vector<float> resample(const torch::Tensor& image, const Taps& rows, const Taps& cols) {
  const torch::Tensor src_tensor = image.contiguous();
  const uint8_t* src = src_tensor.data_ptr<uint8_t>();
  const int64_t in_width = image.size(1);
  const int64_t out_h = static_cast<int64_t>(rows.first.size());
  const int64_t out_w = static_cast<int64_t>(cols.first.size());
  // Input rows any output row reads.
  int64_t row_lo = INT64_MAX, row_hi = 0;
  for (int64_t y = 0; y < out_h; ++y) {
    row_lo = std::min(row_lo, rows.first[y]);
    row_hi = std::max(row_hi, rows.first[y] + rows.count[y]);
  }
  // Horizontal pass over those rows, then the vertical pass (Pillow's order).
  const int64_t mid_h = std::max<int64_t>(row_hi - row_lo, 0);
  std::vector<float> mid(static_cast<size_t>(mid_h * out_w * 3));
  for (int64_t r = 0; r < mid_h; ++r) {
    const uint8_t* line = src + (row_lo + r) * in_width * 3;
    float* out = mid.data() + r * out_w * 3;
    for (int64_t x = 0; x < out_w; ++x) {
      const float* w = cols.weights.data() + x * cols.width;
      const uint8_t* px = line + cols.first[x] * 3;
      float s0 = 0, s1 = 0, s2 = 0;
      for (int64_t k = 0; k < cols.count[x]; ++k) {
        s0 += w[k] * px[k * 3];
        s1 += w[k] * px[k * 3 + 1];
        s2 += w[k] * px[k * 3 + 2];
      }
      out[x * 3] = s0;
      out[x * 3 + 1] = s1;
      out[x * 3 + 2] = s2;
    }
  }
  std::vector<float> result(static_cast<size_t>(out_h * out_w * 3), 0.0f);
  const int64_t stride = out_w * 3;
  for (int64_t y = 0; y < out_h; ++y) {
    const float* w = rows.weights.data() + y * rows.width;
    float* out = result.data() + y * stride;
    for (int64_t k = 0; k < rows.count[y]; ++k) {
      const float* line = mid.data() + (rows.first[y] + k - row_lo) * stride;
      for (int64_t x = 0; x < stride; ++x) out[x] += w[k] * line[x];
    }
    // Pillow produces 8-bit pixels; rounding here keeps ToTensor's values.
    for (int64_t x = 0; x < stride; ++x) out[x] = std::min(255.0f, std::max(0.0f, std::nearbyint(out[x])));
  }
  return result;
}

Taps crop_taps(int64_t begin, int64_t length, int64_t out_length) {
  return make_taps(begin, length, out_length, 0, out_length);
}

// float samples [h, w, 3] in 0..255 -> CLIP-normalised float32 [3, h, w].
torch::Tensor normalize(const std::vector<float>& hwc, int64_t height, int64_t width) {
  torch::Tensor out = torch::empty({3, height, width}, torch::kFloat32);
  float* dst = out.data_ptr<float>();
  const int64_t plane = height * width;
  for (int c = 0; c < 3; ++c) {
    const float scale = static_cast<float>(1.0 / (255.0 * kClipStd[c]));
    const float shift = static_cast<float>(kClipMean[c] / kClipStd[c]);
    for (int64_t i = 0; i < plane; ++i) dst[c * plane + i] = hwc[i * 3 + c] * scale - shift;
  }
  return out;
}

}  // namespace

CropBox random_resized_crop_box(int64_t height, int64_t width, const ImageTransformOptions& options,
                                uint64_t seed) {
  if (height < 1 || width < 1) fail("random resized crop of an empty image ({}x{})", height, width);
  if (!(options.scale_min > 0 && options.scale_min <= options.scale_max && options.scale_max <= 1)) {
    fail("random resized crop: invalid scale range [{}, {}]", options.scale_min, options.scale_max);
  }
  if (!(options.ratio_min > 0 && options.ratio_min <= options.ratio_max)) {
    fail("random resized crop: invalid ratio range [{}, {}]", options.ratio_min, options.ratio_max);
  }
  std::mt19937_64 rng(seed);
  const double area = static_cast<double>(height) * static_cast<double>(width);
  const double log_ratio_min = std::log(options.ratio_min), log_ratio_max = std::log(options.ratio_max);
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target_area =
        area * (options.scale_min + (options.scale_max - options.scale_min) * random_unit(rng));
    const double ratio = std::exp(log_ratio_min + (log_ratio_max - log_ratio_min) * random_unit(rng));
    const int64_t w = round_half_even(std::sqrt(target_area * ratio));
    const int64_t h = round_half_even(std::sqrt(target_area / ratio));
    if (0 < w && w <= width && 0 < h && h <= height) {
      CropBox box;
      box.height = h;
      box.width = w;
      box.top = static_cast<int64_t>(random_below(rng, static_cast<uint64_t>(height - h + 1)));
      box.left = static_cast<int64_t>(random_below(rng, static_cast<uint64_t>(width - w + 1)));
      return box;
    }
  }
  // Fallback: the whole image, cut down to the nearest allowed ratio.
  CropBox box;
  const double in_ratio = static_cast<double>(width) / static_cast<double>(height);
  box.width = width;
  box.height = height;
  if (in_ratio < options.ratio_min) {
    box.height = std::max<int64_t>(1, round_half_even(static_cast<double>(width) / options.ratio_min));
  } else if (in_ratio > options.ratio_max) {
    box.width = std::max<int64_t>(1, round_half_even(static_cast<double>(height) * options.ratio_max));
  }
  box.top = (height - box.height) / 2;
  box.left = (width - box.width) / 2;
  return box;
}

EvalGeometry eval_geometry(int64_t height, int64_t width, int64_t size) {
  if (size < 1) fail("image transform: invalid output size {}", size);
  EvalGeometry g;
  const int64_t short_side = std::min(height, width), long_side = std::max(height, width);
  // torchvision: new_long = int(size * long / short), truncated.
  const auto new_long = static_cast<int64_t>(static_cast<double>(size) * static_cast<double>(long_side) /
                                             static_cast<double>(short_side));
  g.resized_height = height <= width ? size : new_long;
  g.resized_width = height <= width ? new_long : size;
  g.crop.height = size;
  g.crop.width = size;
  g.crop.top = round_half_even(static_cast<double>(g.resized_height - size) / 2.0);
  g.crop.left = round_half_even(static_cast<double>(g.resized_width - size) / 2.0);
  return g;
}

torch::Tensor resized_crop(const torch::Tensor& hwc_u8, const CropBox& box, int64_t out_height,
                           int64_t out_width) {
  check_image(hwc_u8);
  if (box.top < 0 || box.left < 0 || box.height < 1 || box.width < 1 ||
      box.top + box.height > hwc_u8.size(0) || box.left + box.width > hwc_u8.size(1)) {
    fail("image transform: crop {}x{} at ({}, {}) is outside the {}x{} image", box.height, box.width, box.top,
         box.left, hwc_u8.size(0), hwc_u8.size(1));
  }
  if (out_height < 1 || out_width < 1)
    fail("image transform: invalid output size {}x{}", out_height, out_width);
  const std::vector<float> pixels =
      resample(hwc_u8, crop_taps(box.top, box.height, out_height), crop_taps(box.left, box.width, out_width));
  torch::Tensor out = torch::empty({out_height, out_width, 3}, torch::kUInt8);
  uint8_t* dst = out.data_ptr<uint8_t>();
  for (size_t i = 0; i < pixels.size(); ++i) dst[i] = static_cast<uint8_t>(pixels[i]);
  return out;
}

torch::Tensor transform_image(const torch::Tensor& hwc_u8, const ImageTransformOptions& options,
                              uint64_t seed) {
  check_image(hwc_u8);
  const int64_t height = hwc_u8.size(0), width = hwc_u8.size(1), size = options.size;
  if (size < 1) fail("image transform: invalid output size {}", size);
  if (options.train) {
    const CropBox box = random_resized_crop_box(height, width, options, seed);
    return normalize(
        resample(hwc_u8, crop_taps(box.top, box.height, size), crop_taps(box.left, box.width, size)), size,
        size);
  }
  // Only the output samples inside the centre crop are computed.
  const EvalGeometry g = eval_geometry(height, width, size);
  const Taps rows = make_taps(0, height, g.resized_height, g.crop.top, size);
  const Taps cols = make_taps(0, width, g.resized_width, g.crop.left, size);
  return normalize(resample(hwc_u8, rows, cols), size, size);
}

}  // namespace flame::data
