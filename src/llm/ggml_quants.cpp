#include "llm/ggml_quants.h"

#include <fmt/format.h>
#include <cstring>

#include "util/error.h"

namespace flame::llm {

namespace {

constexpr int64_t kQK = 32;    // values per block of Q4_0 .. Q8_0
constexpr int64_t kQKK = 256;  // values per super-block of the K-quants

float f32_from_bits(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// IEEE half -> float, exactly (every half is a float).
float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
  if (exponent == 0x1f) return f32_from_bits(sign | 0x7f800000 | (mantissa << 13));  // inf, NaN
  if (exponent != 0) return f32_from_bits(sign | ((exponent + 112) << 23) | (mantissa << 13));
  // Subnormal (or zero): mantissa x 2^-24, exact in float.
  const float magnitude = static_cast<float>(mantissa) * 5.9604644775390625e-08f;
  return sign != 0 ? -magnitude : magnitude;
}

uint16_t u16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] | (p[1] << 8));
}
float half_at(const uint8_t* p) {
  return f16_to_f32(u16(p));
}

// Q4_0: f16 d, 16 bytes of nibbles (low nibbles = values 0..15, high = 16..31).
void q4_0(const uint8_t* b, float* y) {
  const float d = half_at(b);
  for (int j = 0; j < kQK / 2; ++j) {
    y[j] = d * static_cast<float>((b[2 + j] & 0x0f) - 8);
    y[j + kQK / 2] = d * static_cast<float>((b[2 + j] >> 4) - 8);
  }
}

// Q4_1: f16 d, f16 m, nibbles as Q4_0; y = d q + m (rounded twice, as gguf).
void q4_1(const uint8_t* b, float* y) {
  const float d = half_at(b), m = half_at(b + 2);
  for (int j = 0; j < kQK / 2; ++j) {
    const float lo = d * static_cast<float>(b[4 + j] & 0x0f), hi = d * static_cast<float>(b[4 + j] >> 4);
    y[j] = lo + m;
    y[j + kQK / 2] = hi + m;
  }
}

// Q5_0 / Q5_1: f16 d (, f16 m), u32 of fifth bits, nibbles as Q4_0.
uint32_t fifth_bits(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}

void q5_0(const uint8_t* b, float* y) {
  const float d = half_at(b);
  const uint32_t qh = fifth_bits(b + 2);
  for (int j = 0; j < kQK / 2; ++j) {
    const int lo = (b[6 + j] & 0x0f) | static_cast<int>(((qh >> j) & 1) << 4);
    const int hi = (b[6 + j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1) << 4);
    y[j] = d * static_cast<float>(lo - 16);
    y[j + kQK / 2] = d * static_cast<float>(hi - 16);
  }
}

void q5_1(const uint8_t* b, float* y) {
  const float d = half_at(b), m = half_at(b + 2);
  const uint32_t qh = fifth_bits(b + 4);
  for (int j = 0; j < kQK / 2; ++j) {
    const int lo = (b[8 + j] & 0x0f) | static_cast<int>(((qh >> j) & 1) << 4);
    const int hi = (b[8 + j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1) << 4);
    const float a = d * static_cast<float>(lo), c = d * static_cast<float>(hi);
    y[j] = a + m;
    y[j + kQK / 2] = c + m;
  }
}

// Q8_0: f16 d, 32 int8.
void q8_0(const uint8_t* b, float* y) {
  const float d = half_at(b);
  for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>(static_cast<int8_t>(b[2 + j])) * d;
}

// Q4_K: f16 d, f16 dmin, 12 bytes of 6-bit scales and mins for 8 sub-blocks of
// 32, then 128 bytes of nibbles (each 32 bytes: low nibbles one sub-block,
// high nibbles the next). y = (d sc) q - (dmin m).
void q4_k(const uint8_t* b, float* y) {
  const float d = half_at(b), dmin = half_at(b + 2);
  const uint8_t* s = b + 4;
  const uint8_t* qs = b + 16;
  for (int k = 0; k < 8; ++k) {
    const int j = k % 4;
    const int sc = k < 4 ? (s[j] & 0x3f) : ((s[8 + j] & 0x0f) | ((s[j] >> 2) & 0x30));
    const int mn = k < 4 ? (s[4 + j] & 0x3f) : ((s[8 + j] >> 4) | ((s[4 + j] >> 2) & 0x30));
    const float scale = d * static_cast<float>(sc), offset = dmin * static_cast<float>(mn);
    const uint8_t* q = qs + (k / 2) * 32;
    const int shift = (k % 2) * 4;
    for (int i = 0; i < 32; ++i) {
      const float scaled = scale * static_cast<float>((q[i] >> shift) & 0x0f);
      y[k * 32 + i] = scaled - offset;
    }
  }
}

// Q6_K: 128 bytes of low nibbles, 64 of high 2-bit pairs, 16 int8 scales, f16
// d. Value i (0..255) of half h = i / 128: low bits from ql[h 64 + r % 64]
// (nibble r / 64), high bits from qh[h 32 + r % 32] (pair r / 32), r = i % 128.
void q6_k(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const auto* scales = reinterpret_cast<const int8_t*>(b + 192);
  const float d = half_at(b + 208);
  for (int i = 0; i < kQKK; ++i) {
    const int h = i / 128, r = i % 128;
    const int low = (ql[h * 64 + r % 64] >> (4 * (r / 64))) & 0x0f;
    const int high = (qh[h * 32 + r % 32] >> (2 * (r / 32))) & 0x03;
    const float scale = d * static_cast<float>(scales[i / 16]);
    y[i] = scale * static_cast<float>((low | (high << 4)) - 32);
  }
}

}  // namespace

std::optional<GgmlBlock> ggml_block(uint32_t type) {
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::F32: return GgmlBlock{1, 4};
    case GgmlType::F16: return GgmlBlock{1, 2};
    case GgmlType::BF16: return GgmlBlock{1, 2};
    case GgmlType::Q4_0: return GgmlBlock{kQK, 2 + kQK / 2};
    case GgmlType::Q4_1: return GgmlBlock{kQK, 4 + kQK / 2};
    case GgmlType::Q5_0: return GgmlBlock{kQK, 6 + kQK / 2};
    case GgmlType::Q5_1: return GgmlBlock{kQK, 8 + kQK / 2};
    case GgmlType::Q8_0: return GgmlBlock{kQK, 2 + kQK};
    case GgmlType::Q4_K: return GgmlBlock{kQKK, 4 + 12 + kQKK / 2};
    case GgmlType::Q6_K: return GgmlBlock{kQKK, kQKK / 2 + kQKK / 4 + kQKK / 16 + 2};
  }
  return std::nullopt;
}

std::string ggml_type_name(uint32_t type) {
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::F32: return "F32";
    case GgmlType::F16: return "F16";
    case GgmlType::BF16: return "BF16";
    case GgmlType::Q4_0: return "Q4_0";
    case GgmlType::Q4_1: return "Q4_1";
    case GgmlType::Q5_0: return "Q5_0";
    case GgmlType::Q5_1: return "Q5_1";
    case GgmlType::Q8_0: return "Q8_0";
    case GgmlType::Q4_K: return "Q4_K";
    case GgmlType::Q6_K: return "Q6_K";
  }
  return fmt::format("type {}", type);
}

std::string ggml_supported_types() {
  return "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q6_K";
}

void dequantize_ggml(uint32_t type, const uint8_t* src, float* dst, int64_t count) {
  const auto block = ggml_block(type);
  if (!block || count % block->values != 0) {
    fail("cannot dequantise {} values of GGML {}", count, ggml_type_name(type));
  }
  const int64_t blocks = count / block->values;
  void (*one)(const uint8_t*, float*) = nullptr;
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::F32: std::memcpy(dst, src, static_cast<size_t>(count) * 4); return;
    case GgmlType::F16:
      for (int64_t i = 0; i < count; ++i) dst[i] = half_at(src + 2 * i);
      return;
    case GgmlType::BF16:
      for (int64_t i = 0; i < count; ++i)
        dst[i] = f32_from_bits(static_cast<uint32_t>(u16(src + 2 * i)) << 16);
      return;
    case GgmlType::Q4_0: one = q4_0; break;
    case GgmlType::Q4_1: one = q4_1; break;
    case GgmlType::Q5_0: one = q5_0; break;
    case GgmlType::Q5_1: one = q5_1; break;
    case GgmlType::Q8_0: one = q8_0; break;
    case GgmlType::Q4_K: one = q4_k; break;
    case GgmlType::Q6_K: one = q6_k; break;
  }
  for (int64_t i = 0; i < blocks; ++i) one(src + i * block->bytes, dst + i * block->values);
}

}  // namespace flame::llm
