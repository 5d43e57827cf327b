#include "data/image_pixels.h"

#include <png.h>
#include <webp/decode.h>
#include <turbojpeg.h>

#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "util/error.h"

namespace flame::data {

namespace {

bool has_prefix(std::string_view bytes, std::string_view magic) {
  return bytes.size() >= magic.size() && bytes.substr(0, magic.size()) == magic;
}

void check_dimensions(int64_t width, int64_t height, const std::string& name) {
  if (width <= 0 || height <= 0) fail("cannot decode image '{}': invalid size {}x{}", name, width, height);
  if (width * height > kMaxImagePixels) {
    fail("cannot decode image '{}': {}x{} pixels is more than the limit of {}", name, width, height,
         kMaxImagePixels);
  }
}

// ---- JPEG ----

// One TurboJPEG decompressor per thread: creating one per image costs more
// than decoding a small image, and a handle must not be shared between threads.
// After a failed decode the handle is replaced: TurboJPEG 2.1 can leave it in a
// state where the next, valid image fails too ("Bogus Huffman table definition").
class JpegDecompressor {
 public:
  ~JpegDecompressor() { reset(); }
  tjhandle get() {
    if (handle_ == nullptr) handle_ = tjInitDecompress();
    if (handle_ == nullptr) fail("cannot create a TurboJPEG decompressor: {}", tjGetErrorStr2(nullptr));
    return handle_;
  }
  void reset() {
    if (handle_ != nullptr) tjDestroy(handle_);
    handle_ = nullptr;
  }

 private:
  tjhandle handle_ = nullptr;
};

thread_local JpegDecompressor jpeg_decompressor;

// Formats the error and drops the handle; the message is read before that.
[[noreturn]] void fail_jpeg(tjhandle handle, const std::string& name) {
  const std::string why = tjGetErrorStr2(handle);
  jpeg_decompressor.reset();
  fail("cannot decode JPEG image '{}': {}", name, why);
}

// The largest TurboJPEG scale (M/8, M = 16..1) at which the image has at most
// kMaxDecodedPixels pixels; 1/1 for every image below that.
tjscalingfactor jpeg_scale(int width, int height) {
  int count = 0;
  const tjscalingfactor* factors = tjGetScalingFactors(&count);
  tjscalingfactor best{1, 8};
  for (int i = 0; factors != nullptr && i < count; ++i) {
    const tjscalingfactor f = factors[i];
    if (f.num > f.denom) continue;  // never upscale
    const int64_t pixels = static_cast<int64_t>(TJSCALED(width, f)) * TJSCALED(height, f);
    if (pixels <= kMaxDecodedPixels && f.num * best.denom > best.num * f.denom) best = f;
  }
  return best;
}

DecodedSize decode_jpeg(std::string_view bytes, const std::string& name, const PixelAllocator& allocate) {
  tjhandle handle = jpeg_decompressor.get();
  const auto* data = reinterpret_cast<const unsigned char*>(bytes.data());
  const auto size = static_cast<unsigned long>(bytes.size());
  int width = 0, height = 0, subsampling = 0, colorspace = 0;
  if (tjDecompressHeader3(handle, data, size, &width, &height, &subsampling, &colorspace) != 0) {
    fail_jpeg(handle, name);
  }
  // libjpeg ends a cut-off file with a made-up end marker, so a file cut
  // before its frame header "succeeds" with a 0x0 size.
  if (width <= 0 || height <= 0) {
    fail("cannot decode JPEG image '{}': no frame header in its {} bytes (the file is truncated or corrupt)",
         name, bytes.size());
  }
  check_dimensions(width, height, name);
  const tjscalingfactor scale = jpeg_scale(width, height);
  width = TJSCALED(width, scale);
  height = TJSCALED(height, scale);
  // A truncated file only raises a libjpeg warning ("premature end of data")
  // and yields a grey lower part; stop on warnings so it is reported instead.
  const int flags = TJFLAG_STOPONWARNING;
  const auto decode = [&](unsigned char* out, int pixel_format) {
    const int status = tjDecompress2(handle, data, size, out, width, 0, height, pixel_format, flags);
    if (status != 0) fail_jpeg(handle, name);
  };
  uint8_t* rgb = allocate(height, width);
  if (colorspace == TJCS_CMYK || colorspace == TJCS_YCCK) {
    // libjpeg cannot convert CMYK to RGB. Photoshop (the usual source of CMYK
    // JPEGs) stores inverted CMYK, so the stored values are 255-C etc., and
    // R = (255-C)(255-K)/255 becomes c*k/255, as Pillow computes it.
    std::vector<uint8_t> cmyk(static_cast<size_t>(width) * height * 4);
    decode(cmyk.data(), TJPF_CMYK);
    const size_t pixels = static_cast<size_t>(width) * height;
    for (size_t i = 0; i < pixels; ++i) {
      const unsigned k = cmyk[i * 4 + 3];
      for (int c = 0; c < 3; ++c) rgb[i * 3 + c] = static_cast<uint8_t>((cmyk[i * 4 + c] * k + 127) / 255);
    }
  } else {
    decode(rgb, TJPF_RGB);  // grayscale is expanded to RGB by libjpeg
  }
  return {height, width};
}

// ---- PNG ----

// libpng reports errors by longjmp. The functions that can jump (the two
// below) keep no C++ objects with destructors in their frames, so jumping out
// of libpng skips no destructor; the caller turns `false` into an exception.
struct PngReader {
  std::string_view bytes;
  size_t position = 0;
  char message[256] = {0};
};

void png_on_error(png_structp png, png_const_charp message) {
  auto* reader = static_cast<PngReader*>(png_get_error_ptr(png));
  std::snprintf(reader->message, sizeof(reader->message), "%s", message != nullptr ? message : "error");
  png_longjmp(png, 1);
}

void png_on_warning(png_structp, png_const_charp) {}  // e.g. bad ancillary chunks: the pixels are fine

void png_read_bytes(png_structp png, png_bytep out, png_size_t count) {
  auto* reader = static_cast<PngReader*>(png_get_io_ptr(png));
  if (count > reader->bytes.size() - reader->position) png_error(png, "file is truncated");
  std::memcpy(out, reader->bytes.data() + reader->position, count);
  reader->position += count;
}

// Reads the header and sets up the conversions to 8-bit RGB.
bool png_read_header(png_structp png, png_infop info, png_uint_32* width, png_uint_32* height) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_read_info(png, info);
  *width = png_get_image_width(png, info);
  *height = png_get_image_height(png, info);
  const int color_type = png_get_color_type(png, info);
  png_set_expand(png);    // palette -> RGB, gray < 8 bits -> 8 bits, tRNS -> alpha
  png_set_scale_16(png);  // 16 -> 8 bits, rounded
  png_set_strip_alpha(png);
  if (color_type == PNG_COLOR_TYPE_GRAY || color_type == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  if (png_get_rowbytes(png, info) != static_cast<size_t>(*width) * 3) png_error(png, "unexpected row layout");
  return true;
}

bool png_read_pixels(png_structp png, png_bytepp rows) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_read_image(png, rows);
  return true;
}

DecodedSize decode_png(std::string_view bytes, const std::string& name, const PixelAllocator& allocate) {
  PngReader reader{bytes};
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &reader, png_on_error, png_on_warning);
  if (png == nullptr) fail("cannot decode PNG image '{}': out of memory", name);
  png_infop info = png_create_info_struct(png);
  struct Cleanup {
    png_structp* png;
    png_infop* info;
    ~Cleanup() { png_destroy_read_struct(png, info, nullptr); }
  } cleanup{&png, &info};
  if (info == nullptr) fail("cannot decode PNG image '{}': out of memory", name);
  png_set_read_fn(png, &reader, png_read_bytes);
  // Our own size limit applies; libpng's default allows 1M x 1M.
  png_set_user_limits(png, 1u << 20, 1u << 20);

  png_uint_32 width = 0, height = 0;
  if (!png_read_header(png, info, &width, &height))
    fail("cannot decode PNG image '{}': {}", name, reader.message);
  check_dimensions(width, height, name);
  uint8_t* rgb = allocate(height, width);
  std::vector<png_bytep> rows(height);
  for (png_uint_32 y = 0; y < height; ++y) rows[y] = rgb + static_cast<size_t>(y) * width * 3;
  if (!png_read_pixels(png, rows.data())) fail("cannot decode PNG image '{}': {}", name, reader.message);
  return {static_cast<int64_t>(height), static_cast<int64_t>(width)};
}

// ---- WebP ----

const char* webp_status(VP8StatusCode status) {
  switch (status) {
    case VP8_STATUS_OUT_OF_MEMORY: return "out of memory";
    case VP8_STATUS_INVALID_PARAM: return "invalid parameter";
    case VP8_STATUS_BITSTREAM_ERROR: return "corrupt bitstream";
    case VP8_STATUS_UNSUPPORTED_FEATURE: return "unsupported feature";
    case VP8_STATUS_SUSPENDED: return "suspended";
    case VP8_STATUS_USER_ABORT: return "aborted";
    case VP8_STATUS_NOT_ENOUGH_DATA: return "file is truncated";
    default: return "error";
  }
}

// Still images, lossy or lossless; alpha is dropped (WebPDecodeRGBInto writes
// no alpha channel), as for PNG. The header is read first so the pixel limit
// applies before any pixel buffer is allocated. Animated WebP (a sequence of
// frames, no single image) is refused.
DecodedSize decode_webp(std::string_view bytes, const std::string& name, const PixelAllocator& allocate) {
  const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
  WebPBitstreamFeatures features;
  const VP8StatusCode status = WebPGetFeatures(data, bytes.size(), &features);
  if (status != VP8_STATUS_OK) fail("cannot decode WebP image '{}': {}", name, webp_status(status));
  if (features.has_animation) fail("cannot decode WebP image '{}': animated WebP is not supported", name);
  check_dimensions(features.width, features.height, name);
  uint8_t* rgb = allocate(features.height, features.width);
  const size_t stride = static_cast<size_t>(features.width) * 3;
  if (WebPDecodeRGBInto(data, bytes.size(), rgb, stride * features.height, static_cast<int>(stride)) == nullptr)
    fail("cannot decode WebP image '{}': corrupt or truncated data", name);
  return {features.height, features.width};
}

}  // namespace

DecodedSize decode_image_pixels(std::string_view bytes, const std::string& name,
                                const PixelAllocator& allocate) {
  if (has_prefix(bytes, "\xFF\xD8\xFF")) return decode_jpeg(bytes, name, allocate);
  if (has_prefix(bytes, "\x89PNG\r\n\x1A\n")) return decode_png(bytes, name, allocate);
  if (bytes.empty()) fail("cannot decode image '{}': the file is empty", name);
  if (has_prefix(bytes, "RIFF") && bytes.size() >= 12 && bytes.substr(8, 4) == "WEBP")
    return decode_webp(bytes, name, allocate);
  if (has_prefix(bytes, "GIF8"))
    fail("cannot decode image '{}': GIF is not supported (only JPEG, PNG and WebP)", name);
  fail("cannot decode image '{}': not a JPEG, PNG or WebP file (unknown leading bytes)", name);
}

}  // namespace flame::data
