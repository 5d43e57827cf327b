// The training image pipeline: decoding real Flickr8k JPEGs and PNGs written
// here, corrupt data failing cleanly, the CLIP transforms (shape, values,
// seeded randomness, crop ranges, resampling against torch's antialiased
// bicubic), image sources from tar shards and folder + TSV, and the loader
// (full batches, epochs and ranks covered, worker-count independence, exact
// resume, skipping bad images, missing embeddings).
#include <gtest/gtest.h>

#include <archive.h>
#include <archive_entry.h>
#include <png.h>
#include <turbojpeg.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "data/image_decode.h"
#include "data/image_source.h"
#include "data/image_transform.h"
#include "data/train_loader.h"
#include "tar_writer.h"
#include "test_helpers.h"
#include "text/embedding_store.h"
#include "text/joined_stores.h"
#include "util/error.h"
#include "util/file.h"
#include "webp_writer.h"

namespace flame::data {
namespace {

using test::contains;
using test::error_of;
using test::fresh_temp_dir;
using test::TarFormat;
using test::write_tar;
using Strings = std::vector<std::string>;
using Members = std::vector<std::pair<std::string, std::string>>;

fs::path flickr_dir() {
  return test::shared_dir() / "data" / "flickr8k";
}

// The first n Flickr8k image names, sorted.
Strings flickr_names(size_t n) {
  Strings names;
  for (const auto& entry : fs::directory_iterator(flickr_dir() / "images"))
    names.push_back(entry.path().filename());
  std::sort(names.begin(), names.end());
  names.resize(std::min(n, names.size()));
  return names;
}

std::string flickr_bytes(const std::string& name) {
  return read_file(flickr_dir() / "images" / name);
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

// ---- encoders for test images ----

void png_write_to_string(png_structp png, png_bytep data, png_size_t size) {
  static_cast<std::string*>(png_get_io_ptr(png))->append(reinterpret_cast<const char*>(data), size);
}

// `pixels` holds rows of `channels` samples of `bit_depth` bits (16-bit samples big-endian,
// as PNG stores them); a palette image passes its palette.
std::string encode_png(const std::vector<uint8_t>& pixels, int width, int height, int color_type,
                       int bit_depth, const std::vector<png_color>& palette = {},
                       const std::vector<uint8_t>& alpha = {}) {
  std::string out;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  if (setjmp(png_jmpbuf(png))) {
    ADD_FAILURE() << "libpng write error";
    png_destroy_write_struct(&png, &info);
    return "";
  }
  png_set_write_fn(png, &out, png_write_to_string, nullptr);
  png_set_IHDR(png, info, width, height, bit_depth, color_type, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (!palette.empty()) png_set_PLTE(png, info, palette.data(), static_cast<int>(palette.size()));
  if (!alpha.empty()) png_set_tRNS(png, info, alpha.data(), static_cast<int>(alpha.size()), nullptr);
  png_write_info(png, info);
  const size_t row_bytes = png_get_rowbytes(png, info);
  for (int y = 0; y < height; ++y) png_write_row(png, const_cast<png_bytep>(pixels.data() + y * row_bytes));
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return out;
}

std::string encode_png_rgb(const torch::Tensor& hwc) {
  const torch::Tensor c = hwc.contiguous();
  return encode_png(std::vector<uint8_t>(c.data_ptr<uint8_t>(), c.data_ptr<uint8_t>() + c.numel()),
                    static_cast<int>(c.size(1)), static_cast<int>(c.size(0)), PNG_COLOR_TYPE_RGB, 8);
}

// pixel_format: TJPF_RGB ([H, W, 3]), TJPF_GRAY ([H, W, 1]) or TJPF_CMYK ([H, W, 4]).
std::string encode_jpeg(const torch::Tensor& hwc, int pixel_format, int quality = 95) {
  const torch::Tensor c = hwc.contiguous();
  tjhandle handle = tjInitCompress();
  unsigned char* out = nullptr;
  unsigned long size = 0;
  const int subsampling = pixel_format == TJPF_GRAY ? TJSAMP_GRAY : TJSAMP_444;
  const int status =
      tjCompress2(handle, c.data_ptr<uint8_t>(), static_cast<int>(c.size(1)), 0, static_cast<int>(c.size(0)),
                  pixel_format, &out, &size, subsampling, quality, 0);
  EXPECT_EQ(status, 0) << tjGetErrorStr2(handle);
  std::string bytes(reinterpret_cast<const char*>(out), size);
  tjFree(out);
  tjDestroy(handle);
  return bytes;
}

torch::Tensor random_image(int64_t height, int64_t width, int64_t channels, uint64_t seed) {
  auto generator = at::detail::createCPUGenerator(seed);
  return torch::randint(0, 256, {height, width, channels}, generator, torch::kUInt8);
}

// ---- decoding ----

TEST(ImageDecode, RealFlickrJpegs) {
  for (const auto& name : flickr_names(3)) {
    const torch::Tensor image = decode_image(flickr_bytes(name), name);
    EXPECT_EQ(image.scalar_type(), torch::kUInt8);
    EXPECT_EQ(image.sizes(), torch::IntArrayRef({128, 128, 3})) << name;
    EXPECT_GT(image.to(torch::kFloat32).std().item<double>(), 10.0) << name;  // a photo, not a blank
  }
}

// A header claiming 20000 x 20000 pixels (a decompression bomb, or a corrupt
// size) is refused before any pixel buffer is allocated.
TEST(ImageDecode, ImagesAboveThePixelLimitAreRefused) {
  std::string png = encode_png_rgb(torch::zeros({1, 1, 3}, torch::kUInt8));
  // IHDR data starts at byte 16: width, height (big-endian); its CRC follows the 13 data bytes.
  for (int offset : {16, 20}) {
    png[offset] = 0, png[offset + 1] = 0, png[offset + 2] = static_cast<char>(0x4e), png[offset + 3] = 0x20;
  }
  const uint32_t crc = crc32(0, reinterpret_cast<const Bytef*>(png.data() + 12), 17);
  for (int i = 0; i < 4; ++i) png[29 + i] = static_cast<char>((crc >> (24 - 8 * i)) & 0xff);
  const std::string message = error_of([&] { decode_image(png, "bomb.png"); });
  EXPECT_TRUE(contains(message, "'bomb.png': 20000x20000 pixels is more than the limit of 178956970"))
      << message;
}

TEST(ImageDecode, ATruncatedJpegHeaderSaysTruncated) {
  // Cut inside its tables, libjpeg "succeeded" with size 0x0, and the message
  // blamed the size.
  const std::string jpeg = encode_jpeg(random_image(64, 64, 3, 4), TJPF_RGB).substr(0, 100);
  const std::string message = error_of([&] { decode_image(jpeg, "cut.jpg"); });
  EXPECT_TRUE(
      contains(message, "'cut.jpg': no frame header in its 100 bytes (the file is truncated or corrupt)"))
      << message;
  EXPECT_FALSE(contains(message, "0x0")) << message;
}

TEST(ImageDecode, AHugeJpegIsDecodedAtReducedScale) {
  // 6000x6000 (36 Mpx, under the pixel limit) took 108 MB per decoder at full
  // size; TurboJPEG's 5/8 scale gives 3750x3750, the largest within
  // kMaxDecodedPixels. Smaller images keep their size (RealFlickrJpegs).
  const std::string jpeg = encode_jpeg(torch::full({6000, 6000, 1}, 77, torch::kUInt8), TJPF_GRAY, 50);
  const torch::Tensor image = decode_image(jpeg, "huge.jpg");
  EXPECT_EQ(image.sizes(), torch::IntArrayRef({3750, 3750, 3}));
  EXPECT_LE(image.size(0) * image.size(1), kMaxDecodedPixels);
  EXPECT_NEAR(image.to(torch::kFloat32).mean().item<double>(), 77.0, 1.0);
}

TEST(ImageDecode, PngRoundTripsExactPixels) {
  const int w = 7, h = 5;  // odd sizes: rows are not padded
  const torch::Tensor rgb = random_image(h, w, 3, 1);
  EXPECT_TRUE(torch::equal(decode_image(encode_png_rgb(rgb), "rgb.png"), rgb));

  // Gray: replicated to all three channels.
  const torch::Tensor gray = random_image(h, w, 1, 2);
  const std::vector<uint8_t> gray_pixels(gray.data_ptr<uint8_t>(), gray.data_ptr<uint8_t>() + gray.numel());
  EXPECT_TRUE(torch::equal(decode_image(encode_png(gray_pixels, w, h, PNG_COLOR_TYPE_GRAY, 8), "gray.png"),
                           gray.expand({h, w, 3})));

  // RGBA: alpha dropped, colours kept (not composited).
  const torch::Tensor rgba = random_image(h, w, 4, 3);
  const std::vector<uint8_t> rgba_pixels(rgba.data_ptr<uint8_t>(), rgba.data_ptr<uint8_t>() + rgba.numel());
  EXPECT_TRUE(torch::equal(decode_image(encode_png(rgba_pixels, w, h, PNG_COLOR_TYPE_RGBA, 8), "rgba.png"),
                           rgba.slice(2, 0, 3)));

  // Palette (with transparency, which is dropped too).
  const std::vector<png_color> palette = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {10, 20, 30}};
  std::vector<uint8_t> indices(w * h);
  torch::Tensor expected = torch::empty({h, w, 3}, torch::kUInt8);
  for (int i = 0; i < w * h; ++i) {
    indices[i] = static_cast<uint8_t>((i * 7) % 4);
    const png_color& c = palette[indices[i]];
    expected.view({-1, 3})[i] = torch::tensor({c.red, c.green, c.blue}, torch::kUInt8);
  }
  EXPECT_TRUE(torch::equal(
      decode_image(encode_png(indices, w, h, PNG_COLOR_TYPE_PALETTE, 8, palette, {255, 128}), "palette.png"),
      expected));

  // 16-bit RGB: scaled to 8 bits (a sample of 257 * v is v exactly).
  std::vector<uint8_t> deep(static_cast<size_t>(w * h * 3 * 2));
  const uint8_t* src = rgb.data_ptr<uint8_t>();
  for (int i = 0; i < w * h * 3; ++i) deep[i * 2] = deep[i * 2 + 1] = src[i];
  EXPECT_TRUE(torch::equal(decode_image(encode_png(deep, w, h, PNG_COLOR_TYPE_RGB, 16), "deep.png"), rgb));
}

// WebP (CLIP_benchmark's exports): lossless decodes to the exact pixels, lossy
// close to them; a truncated or corrupt file is an error naming it.
TEST(ImageDecode, WebpLosslessAndLossy) {
  const std::string name = flickr_names(1)[0];
  const torch::Tensor photo = decode_image(flickr_bytes(name), name).slice(0, 0, 61).slice(1, 0, 83);
  const std::string lossless = test::encode_webp(photo);
  EXPECT_TRUE(torch::equal(decode_image(lossless, "a.webp"), photo));
  const torch::Tensor lossy = decode_image(test::encode_webp(photo, 90), "b.webp");
  ASSERT_EQ(lossy.sizes(), photo.sizes());
  EXPECT_LT((lossy.to(torch::kFloat32) - photo.to(torch::kFloat32)).abs().mean().item<double>(), 6.0);
  EXPECT_TRUE(contains(error_of([&] { decode_image(lossless.substr(0, lossless.size() / 2), "cut.webp"); }),
                       "cannot decode WebP image 'cut.webp'"));
  std::string corrupt = lossless;
  for (size_t i = 20; i < corrupt.size(); ++i) corrupt[i] = static_cast<char>(corrupt[i] ^ 0x5A);
  EXPECT_TRUE(contains(error_of([&] { decode_image(corrupt, "bad.webp"); }), "bad.webp"));
}

TEST(ImageDecode, JpegCloseToPngOfSamePixels) {
  const std::string name = flickr_names(1)[0];
  const torch::Tensor photo = decode_image(flickr_bytes(name), name);
  const torch::Tensor from_png = decode_image(encode_png_rgb(photo), "photo.png");
  EXPECT_TRUE(torch::equal(from_png, photo));
  const torch::Tensor from_jpeg = decode_image(encode_jpeg(photo, TJPF_RGB, 95), "photo.jpg");
  const double mean_error =
      (from_jpeg.to(torch::kFloat32) - photo.to(torch::kFloat32)).abs().mean().item<double>();
  EXPECT_LT(mean_error, 3.0);
}

TEST(ImageDecode, GrayscaleAndCmykJpegsBecomeRgb) {
  const torch::Tensor smooth =
      (torch::arange(0, 64, torch::kInt32).view({1, 64, 1}) * 4 + torch::zeros({48, 64, 1}, torch::kInt32))
          .to(torch::kUInt8);
  const torch::Tensor gray = decode_image(encode_jpeg(smooth, TJPF_GRAY), "gray.jpg");
  ASSERT_EQ(gray.sizes(), torch::IntArrayRef({48, 64, 3}));
  EXPECT_TRUE(torch::equal(gray.select(2, 0), gray.select(2, 1)));
  EXPECT_TRUE(torch::equal(gray.select(2, 0), gray.select(2, 2)));
  EXPECT_LT((gray.select(2, 0).to(torch::kFloat32) - smooth.squeeze(2).to(torch::kFloat32))
                .abs()
                .max()
                .item<double>(),
            4.0);

  // Adobe-style inverted CMYK with no black: the stored C, M, Y are R, G, B.
  const torch::Tensor rgb =
      torch::cat({smooth, smooth.flip(1), torch::full({48, 64, 1}, 90, torch::kUInt8)}, 2);
  const torch::Tensor cmyk = torch::cat({rgb, torch::full({48, 64, 1}, 255, torch::kUInt8)}, 2);
  const torch::Tensor decoded = decode_image(encode_jpeg(cmyk, TJPF_CMYK), "cmyk.jpg");
  ASSERT_EQ(decoded.sizes(), torch::IntArrayRef({48, 64, 3}));
  EXPECT_LT((decoded.to(torch::kFloat32) - rgb.to(torch::kFloat32)).abs().mean().item<double>(), 3.0);
}

TEST(ImageDecode, CorruptDataFailsNamingTheImage) {
  const std::string name = flickr_names(1)[0];
  const std::string jpeg = flickr_bytes(name);
  const std::string png = encode_png_rgb(random_image(16, 16, 3, 4));
  const auto expect_error = [](const std::string& bytes, const std::string& what, const std::string& id) {
    const std::string message = error_of([&] { decode_image(bytes, id); });
    EXPECT_TRUE(contains(message, id)) << what << ": '" << message << "'";
  };
  for (const size_t cut : {size_t{3}, size_t{20}, size_t{200}, jpeg.size() / 2, jpeg.size() - 10}) {
    expect_error(jpeg.substr(0, cut), fmt::format("JPEG cut at {}", cut), "shard-7.tar:cut.jpg");
  }
  for (const size_t cut : {size_t{8}, size_t{30}, size_t{60}, png.size() / 2, png.size() - 13}) {
    expect_error(png.substr(0, cut), fmt::format("PNG cut at {}", cut), "cut.png");
  }
  expect_error("", "empty", "empty.jpg");
  expect_error("GIF89a........", "gif", "anim.gif");
  expect_error("RIFF\x10\0\0\0WEBPVP8 ", "webp", "photo.webp");
  expect_error("hello, not an image", "text", "notes.txt");
  std::string bad_crc = png;
  bad_crc[30] ^= 0x55;  // inside IHDR: its CRC no longer matches
  expect_error(bad_crc, "PNG header CRC", "crc.png");

  // A failed decode leaves nothing behind: the next valid image in this thread decodes.
  EXPECT_TRUE(
      torch::equal(decode_image(jpeg, name), decode_image(encode_png_rgb(decode_image(jpeg, name)), "x")));

  // Random damage anywhere: decoded or refused, never a crash.
  std::mt19937_64 rng(5);
  for (int trial = 0; trial < 40; ++trial) {
    for (const std::string* original : {&jpeg, &png}) {
      std::string damaged = *original;
      for (int k = 0; k < 8; ++k) damaged[rng() % damaged.size()] = static_cast<char>(rng());
      try {
        const torch::Tensor image = decode_image(damaged, "damaged");
        EXPECT_EQ(image.size(2), 3);
      } catch (const Error& e) {
        EXPECT_TRUE(contains(e.what(), "damaged")) << e.what();
      }
    }
  }
}

// ---- transforms ----

TEST(ImageTransform, ShapeAndDtype) {
  const torch::Tensor image = random_image(100, 150, 3, 6);
  for (const bool train : {false, true}) {
    ImageTransformOptions options;
    options.size = 64;
    options.train = train;
    const torch::Tensor out = transform_image(image, options, 3);
    EXPECT_EQ(out.scalar_type(), torch::kFloat32);
    EXPECT_EQ(out.sizes(), torch::IntArrayRef({3, 64, 64}));
    EXPECT_TRUE(torch::isfinite(out).all().item<bool>());
  }
  ImageTransformOptions options;
  EXPECT_THROW(transform_image(torch::zeros({4, 4, 3}, torch::kFloat32), options, 0), Error);
  EXPECT_THROW(transform_image(torch::zeros({4, 4}, torch::kUInt8), options, 0), Error);
}

TEST(ImageTransform, ConstantImageGivesNormalisedConstant) {
  const std::array<int, 3> value = {200, 100, 37};
  torch::Tensor image = torch::empty({90, 120, 3}, torch::kUInt8);
  for (int c = 0; c < 3; ++c) image.select(2, c).fill_(value[c]);
  for (const bool train : {false, true}) {
    ImageTransformOptions options;
    options.size = 32;
    options.train = train;
    const torch::Tensor out = transform_image(image, options, 11);
    for (int c = 0; c < 3; ++c) {
      const double expected = (value[c] / 255.0 - kClipMean[c]) / kClipStd[c];
      EXPECT_NEAR(out[c].min().item<double>(), expected, 1e-5) << c;
      EXPECT_NEAR(out[c].max().item<double>(), expected, 1e-5) << c;
    }
  }
}

TEST(ImageTransform, TrainAugmentationIsAFunctionOfTheSeed) {
  const std::string name = flickr_names(1)[0];
  const torch::Tensor photo = decode_image(flickr_bytes(name), name);
  ImageTransformOptions options;
  options.size = 48;
  options.train = true;
  options.scale_min = 0.3;  // wider than the default so different seeds surely differ
  const torch::Tensor a = transform_image(photo, options, 42);
  EXPECT_TRUE(torch::equal(a, transform_image(photo, options, 42)));
  EXPECT_FALSE(torch::equal(a, transform_image(photo, options, 43)));
  // Eval ignores the seed.
  options.train = false;
  EXPECT_TRUE(torch::equal(transform_image(photo, options, 1), transform_image(photo, options, 2)));
}

TEST(ImageTransform, RandomCropStaysInScaleAndRatioRange) {
  ImageTransformOptions options;  // scale [0.9, 1], ratio [3/4, 4/3]
  std::set<std::pair<int64_t, int64_t>> sizes;
  for (const auto& [h, w] : std::vector<std::pair<int64_t, int64_t>>{{128, 128}, {375, 500}, {100, 300}}) {
    for (uint64_t seed = 0; seed < 300; ++seed) {
      const CropBox box = random_resized_crop_box(h, w, options, seed);
      ASSERT_GE(box.top, 0);
      ASSERT_GE(box.left, 0);
      ASSERT_LE(box.top + box.height, h);
      ASSERT_LE(box.left + box.width, w);
      const double ratio = static_cast<double>(box.width) / box.height;
      if (h * 3 == w) {  // 3:1 never fits: the fallback centre crop at the widest ratio
        EXPECT_EQ(box.height, h);
        EXPECT_EQ(box.width, 133);
        EXPECT_EQ(box.left, (w - 133) / 2);
        continue;
      }
      const double scale = static_cast<double>(box.height * box.width) / static_cast<double>(h * w);
      const double rounding =
          0.5 * (box.height + box.width + 1) / static_cast<double>(h * w);  // w, h rounded
      EXPECT_GE(scale, 0.9 - rounding) << h << "x" << w << " seed " << seed;
      EXPECT_LE(scale, 1.0);
      EXPECT_GE(ratio, 0.75 * (1 - 1.0 / box.height) - 1e-9);
      EXPECT_LE(ratio, 4.0 / 3 * (1 + 1.0 / box.height) + 1e-9);
      sizes.emplace(box.height, box.width);
    }
  }
  EXPECT_GT(sizes.size(), 30u);  // the draws vary
}

TEST(ImageTransform, ResizeMatchesTorchAntialiasedBicubic) {
  const std::string name = flickr_names(1)[0];
  const torch::Tensor photo = decode_image(flickr_bytes(name), name);
  const std::vector<std::pair<CropBox, std::pair<int64_t, int64_t>>> cases = {
      {{0, 0, 128, 128}, {40, 40}},     // downscale (antialiased)
      {{10, 5, 100, 117}, {64, 50}},    // crop, then anisotropic downscale
      {{30, 40, 20, 25}, {64, 70}},     // upscale
      {{0, 0, 128, 128}, {128, 128}}};  // identity
  for (const auto& [box, out] : cases) {
    const torch::Tensor mine = resized_crop(photo, box, out.first, out.second).to(torch::kFloat32);
    const torch::Tensor crop =
        photo.slice(0, box.top, box.top + box.height).slice(1, box.left, box.left + box.width);
    const torch::Tensor input = crop.permute({2, 0, 1}).unsqueeze(0).to(torch::kFloat32).contiguous();
    const torch::Tensor reference = torch::_upsample_bicubic2d_aa(input, {out.first, out.second}, false)
                                        .squeeze(0)
                                        .permute({1, 2, 0})
                                        .round()
                                        .clamp(0, 255);
    const double max_error = (mine - reference).abs().max().item<double>();
    EXPECT_LE(max_error, 1.0) << out.first << "x" << out.second;
  }
  EXPECT_TRUE(torch::equal(resized_crop(photo, {0, 0, 128, 128}, 128, 128), photo));
}

TEST(ImageTransform, EvalGeometryFollowsTorchvision) {
  EvalGeometry g = eval_geometry(333, 500, 224);  // int(224 * 500 / 333) = 336; round(112 / 2) = 56
  EXPECT_EQ(g.resized_height, 224);
  EXPECT_EQ(g.resized_width, 336);
  EXPECT_EQ(g.crop.top, 0);
  EXPECT_EQ(g.crop.left, 56);
  g = eval_geometry(501, 375, 224);  // int(224 * 501 / 375) = 299; round(75 / 2) = 38 (half to even)
  EXPECT_EQ(g.resized_height, 299);
  EXPECT_EQ(g.resized_width, 224);
  EXPECT_EQ(g.crop.top, 38);
  EXPECT_EQ(g.crop.left, 0);
  // The eval transform equals resizing the whole image and cropping its centre.
  const torch::Tensor image = random_image(60, 90, 3, 8);
  ImageTransformOptions options;
  options.size = 32;
  g = eval_geometry(60, 90, 32);
  const torch::Tensor full = resized_crop(image, {0, 0, 60, 90}, g.resized_height, g.resized_width);
  const torch::Tensor centre =
      full.slice(0, g.crop.top, g.crop.top + 32).slice(1, g.crop.left, g.crop.left + 32).to(torch::kFloat32) /
      255.0;
  const torch::Tensor mean = torch::tensor({kClipMean[0], kClipMean[1], kClipMean[2]}, torch::kFloat32);
  const torch::Tensor std = torch::tensor({kClipStd[0], kClipStd[1], kClipStd[2]}, torch::kFloat32);
  const torch::Tensor expected = ((centre - mean) / std).permute({2, 0, 1});
  EXPECT_TRUE(torch::allclose(transform_image(image, options, 0), expected, 1e-5, 1e-5));
}

// ---- image sources ----

TEST(ImageSource, TarShardsWithBracePattern) {
  const auto dir = fresh_temp_dir();
  const Strings names = flickr_names(4);
  const std::string png = encode_png_rgb(random_image(8, 8, 3, 9));
  const std::vector<TarFormat> formats = {TarFormat::kUstar, TarFormat::kPax, TarFormat::kGnu};
  // Longer than a ustar name field: ustar splits it into prefix + name, pax and
  // GNU (300 characters) write an extended header or a long-name entry.
  const auto long_dir = [&](size_t s) { return std::string(s == 0 ? 120 : 300, 'd'); };
  for (size_t s = 0; s < formats.size(); ++s) {
    const std::string tag = std::to_string(s);
    write_tar(dir / fmt::format("data-{:04}.tar", s),
              {{"shard" + tag + "/", ""},
               {"shard" + tag + "/a.jpg", flickr_bytes(names[s])},
               {"shard" + tag + "/a.txt", "a caption"},
               {"shard" + tag + "/b.seg.png", png},  // key "b", extension "seg.png": not an image member
               {"shard" + tag + "/c.PNG", png},
               {long_dir(s) + "/" + tag + ".jpeg", flickr_bytes(names[3])},
               {"shard" + tag + "/d.gif", "GIF89a"}},
              formats[s]);
  }
  const ImageSource source = ImageSource::open((dir / "data-{0000..0002}.tar").string());
  EXPECT_TRUE(source.is_tar());
  ASSERT_EQ(source.size(), 9);
  for (size_t s = 0; s < formats.size(); ++s) {
    const std::string tag = std::to_string(s);
    EXPECT_EQ(source.record(s * 3).key, "shard" + tag + "/a");
    EXPECT_EQ(source.record(s * 3 + 1).key, "shard" + tag + "/c");
    EXPECT_EQ(source.record(s * 3 + 2).key, long_dir(s) + "/" + tag);
    EXPECT_EQ(source.read_bytes(s * 3), flickr_bytes(names[s]));
    EXPECT_EQ(source.read_bytes(s * 3 + 1), png);
    EXPECT_EQ(source.read_bytes(s * 3 + 2), flickr_bytes(names[3]));
    EXPECT_EQ(source.location(s * 3),
              (dir / fmt::format("data-{:04}.tar", s)).string() + ":shard" + tag + "/a.jpg");
  }
  // Concurrent reads of one shard.
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        const int64_t index = (i + t) % source.size();
        if (source.read_bytes(index) != source.read_bytes(index)) ++mismatches;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(mismatches.load(), 0);
}

TEST(ImageSource, TarErrors) {
  const auto dir = fresh_temp_dir();
  const std::string jpeg = flickr_bytes(flickr_names(1)[0]);
  write_tar(dir / "one.tar", {{"x/k1.jpg", jpeg}, {"x/k2.jpg", jpeg}});
  write_tar(dir / "two.tar", {{"x/k3.jpg", jpeg}, {"x/k1.png", jpeg}});
  std::string message = error_of([&] { ImageSource::open((dir / "{one,two}.tar").string()); });
  EXPECT_TRUE(contains(message, "duplicate image key 'x/k1'") && contains(message, "one.tar:x/k1.jpg") &&
              contains(message, "two.tar:x/k1.png"))
      << message;

  write_tar(dir / "zipped.tar", {{"k.jpg", jpeg}}, TarFormat::kPax, true);
  message = error_of([&] { ImageSource::open((dir / "zipped.tar").string()); });
  EXPECT_TRUE(contains(message, "zipped.tar") && contains(message, "compressed")) << message;
  EXPECT_TRUE(contains(error_of([&] { ImageSource::open((dir / "x.tar.gz").string()); }), "x.tar.gz"));
  EXPECT_TRUE(
      contains(error_of([&] { ImageSource::open((dir / "absent-{1..2}.tar").string()); }), "absent-1.tar"));

  // Cut inside the second member's data.
  const std::string whole = read_file(dir / "one.tar");
  const size_t padded = (jpeg.size() + 511) / 512 * 512;
  write_text(dir / "cut.tar", whole.substr(0, 512 + padded + 512 + 100));
  message = error_of([&] { ImageSource::open((dir / "cut.tar").string()); });
  EXPECT_TRUE(contains(message, "cut.tar") && contains(message, "truncated")) << message;
  write_text(dir / "junk.tar", std::string(2048, 'j'));
  message = error_of([&] { ImageSource::open((dir / "junk.tar").string()); });
  EXPECT_TRUE(contains(message, "junk.tar") && contains(message, "not a tar file")) << message;
}

TEST(ImageSource, FolderAndTsvWithSplit) {
  const auto dir = fresh_temp_dir();
  const Strings names = flickr_names(5);
  std::string tsv = "image\tcaption_index\tcaption\n";
  for (const auto& name : names)
    for (int i = 0; i < 3; ++i) tsv += fmt::format("{}\t{}\tcaption {} of {}\n", name, i, i, name);
  write_text(dir / "captions.tsv", tsv);
  ImageSourceOptions options;
  options.image_dir = (flickr_dir() / "images").string();
  const ImageSource source = ImageSource::open((dir / "captions.tsv").string(), options);
  EXPECT_FALSE(source.is_tar());
  ASSERT_EQ(source.size(), 5);
  for (int64_t i = 0; i < 5; ++i) {
    EXPECT_EQ(source.record(i).key, names[i]);  // the image name, as `flame embed --tsv-join` keys it
    EXPECT_EQ(source.read_bytes(i), flickr_bytes(names[i]));
    EXPECT_EQ(source.record(i).size, flickr_bytes(names[i]).size());
  }

  write_text(dir / "split.txt", names[3] + "\n" + names[1] + "\r\n\nnot-in-table.jpg\n");
  options.split_file = (dir / "split.txt").string();
  const ImageSource split = ImageSource::open((dir / "captions.tsv").string(), options);
  ASSERT_EQ(split.size(), 2);
  EXPECT_EQ(split.record(0).key, names[1]);  // table order
  EXPECT_EQ(split.record(1).key, names[3]);
  EXPECT_EQ(split.read_bytes(1), flickr_bytes(names[3]));

  // Some images missing: listed, and reading one names it (the loader skips
  // and counts it). All missing (a wrong folder) and missing columns are
  // errors naming them.
  write_text(dir / "missing.tsv", "image\tcaption\nnope.jpg\tx\n" + names[0] + "\ty\n");
  options.split_file.clear();
  const ImageSource holes = ImageSource::open((dir / "missing.tsv").string(), options);
  ASSERT_EQ(holes.size(), 2);
  EXPECT_TRUE(contains(error_of([&] { holes.read_bytes(0); }), "nope.jpg"));
  EXPECT_EQ(holes.read_bytes(1), flickr_bytes(names[0]));
  write_text(dir / "all-missing.tsv", "image\tcaption\nnope.jpg\tx\nnada.jpg\ty\n");
  const std::string none = error_of([&] { ImageSource::open((dir / "all-missing.tsv").string(), options); });
  EXPECT_TRUE(contains(none, "none of the 2 images") && contains(none, "nope.jpg")) << none;
  options.image_column = "filename";
  EXPECT_TRUE(contains(error_of([&] { ImageSource::open((dir / "captions.tsv").string(), options); }),
                       "no column 'filename'"));
}

TEST(ImageSource, RealFlickrTableAndSplit) {
  ImageSourceOptions options;  // images/ beside the table
  options.split_file = (flickr_dir() / "splits" / "val.txt").string();
  const ImageSource source = ImageSource::open((flickr_dir() / "captions.tsv").string(), options);
  std::set<std::string> wanted;
  std::ifstream in(options.split_file);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) wanted.insert(line);
  EXPECT_EQ(source.size(), static_cast<int64_t>(wanted.size()));
  for (int64_t i = 0; i < source.size(); ++i) EXPECT_EQ(wanted.count(source.record(i).key), 1u);
  const torch::Tensor image = decode_image(source.read_bytes(0), source.location(0));
  EXPECT_EQ(image.size(2), 3);
}

// ---- the loader ----

text::StoreIdentity identity(int64_t k, int64_t d) {
  text::StoreIdentity id;
  id.llm = {{"name", "tiny-llama"},
            {"architecture", "llama"},
            {"config_sha256", "c0ffee"},
            {"weights_checksum", "w1"}};
  id.prompt_set_name = "short";
  id.prompt_set_sha256 = "sha-short";
  for (int64_t i = 0; i < k; ++i) id.facets.push_back(fmt::format("short{}", i));
  id.layer = 20;
  id.dtype = "f16";
  id.num_facets = k;
  id.dim = d;
  id.normalized = false;
  return id;
}

// A tar of `n` Flickr JPEGs keyed "img00".."img{n-1}" (`corrupt` ones cut
// short) and a store holding embeddings for `embedded` of the keys.
struct LoaderData {
  std::shared_ptr<const ImageSource> images;
  std::shared_ptr<const text::JoinedStores> texts;
  Strings keys;
};

LoaderData make_loader_data(int n, const std::set<int>& corrupt = {}, const std::set<int>& no_embedding = {},
                            int64_t facets = 2) {
  const auto dir = fresh_temp_dir("-data");
  const Strings names = flickr_names(n);
  Members members;
  LoaderData data;
  Strings embedded;
  for (int i = 0; i < n; ++i) {
    const std::string key = fmt::format("img{:02}", i);
    std::string bytes = flickr_bytes(names[i]);
    if (corrupt.count(i)) bytes.resize(bytes.size() / 2);
    members.emplace_back(key + ".jpg", bytes);
    members.emplace_back(key + ".txt", "caption");
    data.keys.push_back(key);
    if (!no_embedding.count(i)) embedded.push_back(key);
  }
  write_tar(dir / "images.tar", members);
  data.images = std::make_shared<const ImageSource>(ImageSource::open((dir / "images.tar").string()));
  {
    text::EmbeddingStoreWriter writer(dir / "store", identity(facets, 8));
    std::reverse(embedded.begin(), embedded.end());  // store order need not match image order
    auto generator = at::detail::createCPUGenerator(3);
    writer.write_shard(0, embedded,
                       torch::randn({static_cast<int64_t>(embedded.size()), facets, 8}, generator));
    writer.finalize();
  }
  data.texts = std::make_shared<const text::JoinedStores>(text::JoinedStores::open({dir / "store"}));
  return data;
}

LoaderOptions small_options(int64_t batch_size, int workers = 2) {
  LoaderOptions options;
  options.batch_size = batch_size;
  options.num_workers = workers;
  options.seed = 17;
  options.transform.size = 16;
  options.transform.train = true;
  return options;
}

std::vector<Batch> take(TrainLoader& loader, int count) {
  std::vector<Batch> batches;
  for (int i = 0; i < count; ++i) batches.push_back(loader.next());
  return batches;
}

Strings keys_of(const std::vector<Batch>& batches) {
  Strings keys;
  for (const auto& b : batches) keys.insert(keys.end(), b.keys.begin(), b.keys.end());
  return keys;
}

void expect_same_batches(const std::vector<Batch>& a, const std::vector<Batch>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].keys, b[i].keys) << "batch " << i;
    EXPECT_EQ(a[i].epoch, b[i].epoch) << "batch " << i;
    EXPECT_TRUE(torch::equal(a[i].images, b[i].images)) << "batch " << i;
    EXPECT_TRUE(torch::equal(a[i].texts, b[i].texts)) << "batch " << i;
  }
}

TEST(TrainLoader, FullBatchesCoverEveryEpoch) {
  const LoaderData data = make_loader_data(20);
  TrainLoader loader(data.images, data.texts, small_options(6));  // 20 items: 3 steps, batches cross epochs
  EXPECT_EQ(loader.steps_per_epoch(), 3);
  EXPECT_EQ(loader.stream_length(), 20);
  const std::vector<Batch> batches = take(loader, 10);  // 60 items: 3 epochs
  for (const auto& b : batches) {
    ASSERT_EQ(b.keys.size(), 6u);
    EXPECT_EQ(b.images.sizes(), torch::IntArrayRef({6, 3, 16, 16}));
    EXPECT_EQ(b.images.scalar_type(), torch::kFloat32);
    ASSERT_EQ(b.texts.sizes(), torch::IntArrayRef({6, 2, 8}));
    EXPECT_EQ(b.texts.scalar_type(), torch::kFloat32);
    for (size_t j = 0; j < b.keys.size(); ++j)
      EXPECT_TRUE(torch::equal(b.texts[j], data.texts->get(b.keys[j])));
    EXPECT_GE(b.wait_seconds, 0.0);
  }
  EXPECT_EQ(batches[3].epoch, 0);  // items 18..23: starts in epoch 0
  EXPECT_EQ(batches[4].epoch, 1);
  const Strings keys = keys_of(batches);
  std::vector<Strings> epochs;
  for (int e = 0; e < 3; ++e) {
    Strings epoch(keys.begin() + e * 20, keys.begin() + (e + 1) * 20);
    Strings sorted = epoch;
    std::sort(sorted.begin(), sorted.end());
    EXPECT_EQ(sorted, data.keys) << "epoch " << e;  // each item exactly once
    epochs.push_back(epoch);
  }
  EXPECT_NE(epochs[0], epochs[1]);  // reshuffled
  EXPECT_EQ(loader.state().epoch, 3);
  EXPECT_EQ(loader.state().position, 0);
  // The same item is augmented differently in another epoch.
  const auto image_of = [&](const std::string& key, int epoch) {
    for (int i = 0; i < 60; ++i)
      if (keys[i] == key && i / 20 == epoch) return batches[i / 6].images[i % 6];
    return torch::Tensor();
  };
  EXPECT_FALSE(torch::equal(image_of("img05", 0), image_of("img05", 1)));
}

TEST(TrainLoader, RanksAreDisjointAndCoverTheEpoch) {
  const LoaderData data = make_loader_data(21);  // 21 over 2 ranks: 10 each, one item left out per epoch
  Strings all;
  for (int rank = 0; rank < 2; ++rank) {
    LoaderOptions options = small_options(5);
    options.rank = rank;
    options.world_size = 2;
    TrainLoader loader(data.images, data.texts, options);
    EXPECT_EQ(loader.stream_length(), 10);
    EXPECT_EQ(loader.steps_per_epoch(), 2);
    const Strings keys = keys_of(take(loader, 2));
    EXPECT_EQ(loader.state().epoch, 1);
    all.insert(all.end(), keys.begin(), keys.end());
  }
  std::set<std::string> unique(all.begin(), all.end());
  EXPECT_EQ(all.size(), 20u);
  EXPECT_EQ(unique.size(), 20u);  // disjoint
}

TEST(TrainLoader, SameBatchesForAnyNumberOfWorkers) {
  const LoaderData data = make_loader_data(20);
  std::vector<std::vector<Batch>> runs;
  for (const int workers : {0, 1, 3}) {
    LoaderOptions options = small_options(7, workers);
    options.prefetch_batches = workers == 3 ? 1 : 2;
    TrainLoader loader(data.images, data.texts, options);
    runs.push_back(take(loader, 5));
  }
  expect_same_batches(runs[0], runs[1]);
  expect_same_batches(runs[0], runs[2]);
}

TEST(TrainLoader, ResumeFromStateGivesIdenticalBatches) {
  const LoaderData data = make_loader_data(20, {4});
  LoaderOptions options = small_options(6, 2);
  options.max_skip_fraction = 0.2;
  TrainLoader first(data.images, data.texts, options);
  take(first, 4);  // stops inside epoch 1
  const LoaderState saved = first.state();
  EXPECT_EQ(saved.epoch, 1);
  const std::vector<Batch> expected = take(first, 5);

  const nlohmann::json json = saved;
  EXPECT_EQ(json, nlohmann::json({{"epoch", saved.epoch},
                                  {"position", saved.position},
                                  {"skipped_images", saved.skipped_images}}));
  LoaderOptions other = options;
  other.num_workers = 3;  // resuming with another worker count changes nothing
  TrainLoader resumed(data.images, data.texts, other, json.get<LoaderState>());
  expect_same_batches(take(resumed, 5), expected);
  EXPECT_EQ(resumed.state().epoch, first.state().epoch);
  EXPECT_EQ(resumed.state().position, first.state().position);
  EXPECT_EQ(resumed.state().skipped_images, first.state().skipped_images);

  EXPECT_TRUE(contains(error_of([&] { nlohmann::json({{"epoch", 1}}).get<LoaderState>(); }), "position"));
  LoaderState beyond{0, 21, 0};
  EXPECT_TRUE(
      contains(error_of([&] { TrainLoader(data.images, data.texts, options, beyond); }), "position 21"));
}

// Which of `key`'s stored positives each row of `texts` [P, D] is.
std::vector<int64_t> positives_of(const text::JoinedStores& store, const std::string& key,
                                  const torch::Tensor& texts) {
  const torch::Tensor all = store.get(key);  // [K, D]
  std::vector<int64_t> found;
  for (int64_t p = 0; p < texts.size(0); ++p) {
    int64_t index = -1;
    for (int64_t k = 0; k < all.size(0); ++k)
      if (torch::equal(all[k], texts[p])) index = k;
    found.push_back(index);
  }
  return found;
}

TEST(TrainLoader, PositivesPerStepAreASeededSubsetThatResumes) {
  const LoaderData data = make_loader_data(20, {}, {}, 11);
  LoaderOptions options = small_options(5);
  options.positives_per_item = 6;
  TrainLoader loader(data.images, data.texts, options);
  const std::vector<Batch> batches = take(loader, 8);              // two epochs
  std::map<std::string, std::vector<std::vector<int64_t>>> draws;  // key -> its draw in each epoch
  for (const Batch& b : batches) {
    ASSERT_EQ(b.texts.sizes(), torch::IntArrayRef({5, 6, 8}));
    for (size_t j = 0; j < b.keys.size(); ++j) {
      const std::vector<int64_t> drawn = positives_of(*data.texts, b.keys[j], b.texts[j]);
      const std::set<int64_t> distinct(drawn.begin(), drawn.end());
      EXPECT_EQ(distinct.size(), 6u) << b.keys[j];  // six different positives of this image
      EXPECT_EQ(distinct.count(-1), 0u) << b.keys[j];
      draws[b.keys[j]].push_back(drawn);
    }
  }
  int redrawn = 0;
  std::set<std::vector<int64_t>> first_epoch;
  for (const auto& [key, per_epoch] : draws) {
    ASSERT_EQ(per_epoch.size(), 2u) << key;
    redrawn += per_epoch[0] != per_epoch[1];
    first_epoch.insert(per_epoch[0]);
  }
  EXPECT_GE(redrawn, 18);              // drawn anew each epoch (11*10*9*8*7*6 orders: a repeat is rare)
  EXPECT_GE(first_epoch.size(), 18u);  // and differently per image

  // The seed fixes the draws; a resumed loader draws the same.
  TrainLoader again(data.images, data.texts, options);
  expect_same_batches(take(again, 8), batches);
  LoaderOptions reseeded = options;
  reseeded.seed = 18;
  TrainLoader other(data.images, data.texts, reseeded);
  EXPECT_FALSE(torch::equal(other.next().texts, batches[0].texts));
  TrainLoader first(data.images, data.texts, options);
  take(first, 3);
  TrainLoader resumed(data.images, data.texts, options, first.state());
  expect_same_batches(take(resumed, 5), std::vector<Batch>(batches.begin() + 3, batches.end()));

  // All K (11) or more: every positive, in stored order.
  options.positives_per_item = 11;
  TrainLoader all(data.images, data.texts, options);
  const Batch b = all.next();
  for (size_t j = 0; j < b.keys.size(); ++j)
    EXPECT_TRUE(torch::equal(b.texts[j], data.texts->get(b.keys[j])));
}

TEST(TrainLoader, CorruptImageIsSkippedAndCounted) {
  const LoaderData data = make_loader_data(20, {7});
  LoaderOptions options = small_options(5);
  options.max_skip_fraction = 0.1;
  TrainLoader loader(data.images, data.texts, options);
  const std::vector<Batch> batches = take(loader, 8);  // 40 good items: 2 epochs of 19, plus 2
  for (const auto& b : batches) ASSERT_EQ(b.keys.size(), 5u);
  const Strings keys = keys_of(batches);
  EXPECT_EQ(std::count(keys.begin(), keys.end(), "img07"), 0);
  EXPECT_EQ(std::set<std::string>(keys.begin(), keys.begin() + 19).size(), 19u);
  EXPECT_EQ(std::set<std::string>(keys.begin() + 19, keys.begin() + 38).size(), 19u);
  // Skipped once per epoch passed: twice, or three times when img07 came early in epoch 2.
  EXPECT_GE(loader.state().skipped_images, 2);
  EXPECT_LE(loader.state().skipped_images, 3);
  EXPECT_EQ(loader.state().epoch, 2);
  EXPECT_EQ(loader.skips().bad_images, loader.state().skipped_images);
  ASSERT_FALSE(loader.skips().bad_image_examples.empty());
  EXPECT_TRUE(contains(loader.skips().bad_image_examples[0], "img07"))
      << loader.skips().bad_image_examples[0];
}

TEST(TrainLoader, SkipLimitThrowsNamingTheKey) {
  const LoaderData data = make_loader_data(20, {2, 9, 15});
  LoaderOptions options = small_options(4);
  options.max_skip_fraction = 0.05;  // one bad image per 20 items seen
  TrainLoader loader(data.images, data.texts, options);
  std::string message;
  for (int i = 0; i < 10 && message.empty(); ++i) message = error_of([&] { loader.next(); });
  EXPECT_TRUE(contains(message, "too many unreadable images") && contains(message, "img")) << message;
  EXPECT_EQ(loader.state().skipped_images, 2);
}

TEST(TrainLoader, KeysWithoutEmbeddingsAreReported) {
  const LoaderData data = make_loader_data(20, {}, {3, 11, 12});
  TrainLoader loader(data.images, data.texts, small_options(4));
  EXPECT_EQ(loader.skips().usable, 17);
  EXPECT_EQ(loader.skips().without_embedding, 3);
  EXPECT_EQ(loader.skips().without_embedding_examples, Strings({"img03", "img11", "img12"}));
  EXPECT_EQ(loader.stream_length(), 17);
  const Strings keys = keys_of(take(loader, 4));
  for (const auto& absent : {"img03", "img11", "img12"})
    EXPECT_EQ(std::count(keys.begin(), keys.end(), absent), 0);

  // Images keyed by file name against a store keyed "imgNN": nothing joins.
  const auto dir = fresh_temp_dir("-tsv");
  const Strings names = flickr_names(4);
  write_text(dir / "table.tsv",
             "image\n" + names[0] + "\n" + names[1] + "\n" + names[2] + "\n" + names[3] + "\n");
  ImageSourceOptions tsv_options;
  tsv_options.image_dir = (flickr_dir() / "images").string();
  const auto by_name =
      std::make_shared<const ImageSource>(ImageSource::open((dir / "table.tsv").string(), tsv_options));
  EXPECT_TRUE(contains(error_of([&] { TrainLoader(by_name, data.texts, small_options(2)); }),
                       "none of the 4 images has a text embedding or caption"));
  EXPECT_TRUE(contains(error_of([&] { TrainLoader(data.images, data.texts, small_options(18)); }),
                       "fewer than the batch size 18"));
}

TEST(TrainLoader, DestroyedMidEpochWithoutHanging) {
  const LoaderData data = make_loader_data(20);
  for (int round = 0; round < 5; ++round) {
    LoaderOptions options = small_options(3, 3);
    options.prefetch_batches = 3;
    TrainLoader loader(data.images, data.texts, options);
    if (round > 0) take(loader, round);  // round 0: destroyed before any batch was asked for
  }
}

}  // namespace
}  // namespace flame::data
