// The safetensors format, without torch: header parsing with full validation
// (kept torch-free so it can be fuzzed), read-only memory-mapped files, and a
// writer that produces files any reader of the format accepts.
//
// Layout: 8-byte little-endian header size N, N bytes of JSON header
// {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, ...,
//  "__metadata__": {"key": "value"}}, then the data buffer. Offsets are relative
// to the buffer, which is fully covered by the tensors without holes or overlap.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "util/file.h"

namespace flame {

enum class DType { Bool, U8, I8, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64, F8_E4M3, F8_E5M2 };

size_t dtype_size(DType dtype);
std::string_view dtype_name(DType dtype);  // "BF16", as in the format
// Parses a format dtype name; returns false for unknown names.
bool parse_dtype(std::string_view name, DType* out);

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets into the data buffer
  uint64_t end = 0;

  int64_t numel() const;
  uint64_t byte_size() const { return end - begin; }
};

struct SafetensorsHeader {
  uint64_t header_size = 0;  // N
  uint64_t data_start = 0;   // 8 + N: where the buffer begins in the file
  std::map<std::string, TensorInfo> tensors;
  std::map<std::string, std::string> metadata;
};

// Largest header accepted (as the reference implementation: 100 MB).
constexpr uint64_t kMaxSafetensorsHeaderSize = 100'000'000;

// Parses and validates the header of a complete safetensors file held in
// [data, data + size). Throws flame::Error naming `source` (and the tensor) on
// any defect: short file, bad size, invalid JSON, unknown dtype, negative or
// overflowing shape, offsets outside the file, holes or overlap, or a byte
// length that does not equal numel x dtype size.
SafetensorsHeader parse_safetensors_header(const uint8_t* data, size_t size, const std::string& source);

// One memory-mapped safetensors file.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return map_->path(); }
  const SafetensorsHeader& header() const { return header_; }
  const std::map<std::string, TensorInfo>& tensors() const { return header_.tensors; }
  bool contains(const std::string& name) const { return header_.tensors.count(name) != 0; }
  // Throws flame::Error naming the file if the tensor is absent.
  const TensorInfo& info(const std::string& name) const;
  // Pointer to the tensor's bytes inside the map.
  const uint8_t* data(const TensorInfo& info) const;
  // The map, shared so tensors can keep it alive.
  const std::shared_ptr<MappedFile>& mapping() const { return map_; }

 private:
  std::shared_ptr<MappedFile> map_;
  SafetensorsHeader header_;
};

// Collects tensors, then writes one file atomically (temp file + rename).
// Tensors are laid out in name order; the header is padded with spaces so the
// buffer starts at an 8-byte boundary, as the reference writer does.
class SafetensorsWriter {
 public:
  void add(const std::string& name, DType dtype, std::vector<int64_t> shape, std::string bytes);
  void set_metadata(std::map<std::string, std::string> metadata) { metadata_ = std::move(metadata); }
  size_t size() const { return entries_.size(); }
  void write(const std::filesystem::path& path) const;
  // The header JSON text (unpadded), for tests and tools.
  std::string header_json() const;

 private:
  struct Entry {
    DType dtype;
    std::vector<int64_t> shape;
    std::string bytes;
  };
  std::map<std::string, Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace flame
