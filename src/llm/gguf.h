// GGUF (v2/v3) header reader: typed metadata key-values and tensor infos,
// without torch. Every length and count is checked against the bytes left, so
// a truncated or corrupt file gives a flame::Error naming the file and the key
// at fault, never a crash or a huge allocation.
//
// Layout (little-endian): "GGUF", u32 version, u64 tensor count, u64 kv count,
// kv pairs {string key, u32 type, value}, tensor infos {string name, u32 n_dims,
// u64 dims[n_dims], u32 ggml type, u64 offset}, padding to general.alignment,
// then the tensor data. A string is a u64 length and that many bytes; an array
// is a u32 element type, a u64 count and the elements.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace flame::llm {

enum class GgufType : uint32_t {
  Uint8 = 0,
  Int8 = 1,
  Uint16 = 2,
  Int16 = 3,
  Uint32 = 4,
  Int32 = 5,
  Float32 = 6,
  Bool = 7,
  String = 8,
  Array = 9,
  Uint64 = 10,
  Int64 = 11,
  Float64 = 12,
};

std::string_view gguf_type_name(GgufType type);

struct GgufValue {
  GgufType type = GgufType::Uint8;
  // Scalars: integers and bools in `integer` (a Uint64 above INT64_MAX wraps),
  // floats in `real`, strings in `string`.
  int64_t integer = 0;
  double real = 0;
  std::string string;
  // Arrays: element type, then the elements in the member matching it.
  GgufType element_type = GgufType::Uint8;
  std::vector<int64_t> integers;  // integer and bool elements
  std::vector<double> reals;
  std::vector<std::string> strings;
  std::vector<GgufValue> arrays;  // nested arrays

  bool is_integer() const;  // any integer type (not bool)
  bool is_array() const { return type == GgufType::Array; }
  size_t array_size() const;
};

struct GgufTensorInfo {
  std::string name;
  std::vector<uint64_t> shape;
  uint32_t ggml_type = 0;
  uint64_t offset = 0;  // relative to data_offset

  int64_t numel() const;
  std::vector<int64_t> sizes() const;  // PyTorch's order: the reverse of `shape` (ne0, the row, last)
};

struct GgufFile {
  std::string source;  // the path, for messages
  uint32_t version = 0;
  std::vector<std::string> keys;  // in file order
  std::map<std::string, GgufValue, std::less<>> metadata;
  std::vector<GgufTensorInfo> tensors;
  uint64_t alignment = 32;
  uint64_t data_offset = 0;  // where the tensor data starts

  const GgufValue* find(std::string_view key) const;
  // Typed getters: nullopt if the key is absent; flame::Error naming the file
  // and key if it holds another type (integers of any width convert when the
  // value fits).
  std::optional<std::string> get_string(std::string_view key) const;
  std::optional<int64_t> get_integer(std::string_view key) const;
  std::optional<bool> get_bool(std::string_view key) const;
  std::optional<double> get_real(std::string_view key) const;
  // Array getters: nullptr if absent, error if not an array of that kind.
  const std::vector<std::string>* get_strings(std::string_view key) const;
  const std::vector<int64_t>* get_integers(std::string_view key) const;
  const std::vector<double>* get_reals(std::string_view key) const;  // float arrays
};

// Parses the header of the GGUF bytes [data, data + size). `source` names them in errors.
GgufFile parse_gguf(const uint8_t* data, size_t size, const std::string& source);
// Reads (memory-maps) and parses a file.
GgufFile read_gguf(const std::filesystem::path& path);

}  // namespace flame::llm
