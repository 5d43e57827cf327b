// GGML tensor types as GGUF files store them, and their dequantisation to
// float32: llama.cpp's block formats (32 values a block for Q4_0..Q8_0, 256
// for the K-quants), computed in the same float32 order as the `gguf` Python
// package (llama.cpp's reader), so results are bit-identical to it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace flame::llm {

// The ggml_type numbers of ggml.h (those flame reads, and a name for others).
enum class GgmlType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q4_K = 12,
  Q6_K = 14,
  BF16 = 30,
};

struct GgmlBlock {
  int64_t values = 1;  // values per block
  int64_t bytes = 4;   // bytes per block
};

// The block layout of a type flame can dequantise; nullopt for any other.
std::optional<GgmlBlock> ggml_block(uint32_t type);
// "Q4_1", "F16", ...; "type 23" for numbers flame does not name.
std::string ggml_type_name(uint32_t type);
// The types flame reads, for messages: "F32, F16, BF16, Q4_0, ...".
std::string ggml_supported_types();

// Dequantises `count` values (a multiple of the type's block size) from `src`
// into `dst`. The type must be one ggml_block() knows.
void dequantize_ggml(uint32_t type, const uint8_t* src, float* dst, int64_t count);

}  // namespace flame::llm
