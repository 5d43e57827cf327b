#include "data/image_encode.h"

#include <png.h>

#include <cstdio>
#include <vector>

#include "util/error.h"
#include "util/file.h"

namespace flame::data {

namespace {

// libpng reports errors by longjmp (see image_decode.cpp): the function that
// can jump keeps no C++ objects with destructors in its frame.
struct PngWriter {
  std::string bytes;
  char message[256] = {0};
};

void png_on_error(png_structp png, png_const_charp message) {
  auto* writer = static_cast<PngWriter*>(png_get_error_ptr(png));
  std::snprintf(writer->message, sizeof(writer->message), "%s", message != nullptr ? message : "error");
  png_longjmp(png, 1);
}

void png_on_warning(png_structp, png_const_charp) {}

void png_write_bytes(png_structp png, png_bytep data, png_size_t count) {
  auto* writer = static_cast<PngWriter*>(png_get_io_ptr(png));
  writer->bytes.append(reinterpret_cast<const char*>(data), count);
}

void png_flush_nothing(png_structp) {}

bool png_write_all(png_structp png, png_infop info, png_uint_32 width, png_uint_32 height, png_bytepp rows) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_IHDR(png, info, width, height, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  png_write_image(png, rows);
  png_write_end(png, info);
  return true;
}

}  // namespace

std::string encode_png(const torch::Tensor& rgb_u8_hwc) {
  const torch::Tensor& t = rgb_u8_hwc;
  if (!t.defined() || t.dim() != 3 || t.size(2) != 3 || t.scalar_type() != torch::kUInt8) {
    fail("encode_png: expected a uint8 [height, width, 3] RGB image, got {} [{}]",
         t.defined() ? std::string(c10::toString(t.scalar_type())) : "undefined",
         t.defined() ? fmt::format("{}", fmt::join(t.sizes(), ", ")) : "");
  }
  const int64_t height = t.size(0), width = t.size(1);
  if (height < 1 || width < 1 || height > (1 << 20) || width > (1 << 20)) {
    fail("encode_png: cannot write a {} x {} image", width, height);
  }
  const torch::Tensor image = t.to(torch::kCPU).contiguous();
  std::vector<png_bytep> rows(static_cast<size_t>(height));
  for (int64_t y = 0; y < height; ++y)
    rows[static_cast<size_t>(y)] = image.data_ptr<uint8_t>() + y * width * 3;

  PngWriter writer;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &writer, png_on_error, png_on_warning);
  if (png == nullptr) fail("encode_png: out of memory");
  png_infop info = png_create_info_struct(png);
  struct Cleanup {
    png_structp* png;
    png_infop* info;
    ~Cleanup() { png_destroy_write_struct(png, info); }
  } cleanup{&png, &info};
  if (info == nullptr) fail("encode_png: out of memory");
  png_set_write_fn(png, &writer, png_write_bytes, png_flush_nothing);
  if (!png_write_all(png, info, static_cast<png_uint_32>(width), static_cast<png_uint_32>(height),
                     rows.data())) {
    fail("encode_png: {}", writer.message);
  }
  return std::move(writer.bytes);
}

void write_png(const std::filesystem::path& path, const torch::Tensor& rgb_u8_hwc) {
  write_file_atomic(path, encode_png(rgb_u8_hwc));
}

}  // namespace flame::data
