#include "util/safetensors.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>

#include "util/error.h"

namespace flame {

namespace {

struct DTypeEntry {
  DType dtype;
  const char* name;
  size_t size;
};

constexpr std::array<DTypeEntry, 15> kDTypes{{
    {DType::Bool, "BOOL", 1},
    {DType::U8, "U8", 1},
    {DType::I8, "I8", 1},
    {DType::I16, "I16", 2},
    {DType::U16, "U16", 2},
    {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2},
    {DType::I32, "I32", 4},
    {DType::U32, "U32", 4},
    {DType::F32, "F32", 4},
    {DType::F64, "F64", 8},
    {DType::I64, "I64", 8},
    {DType::U64, "U64", 8},
    {DType::F8_E4M3, "F8_E4M3", 1},
    {DType::F8_E5M2, "F8_E5M2", 1},
}};

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

size_t dtype_size(DType dtype) {
  for (const auto& e : kDTypes)
    if (e.dtype == dtype) return e.size;
  return 0;
}

std::string_view dtype_name(DType dtype) {
  for (const auto& e : kDTypes)
    if (e.dtype == dtype) return e.name;
  return "?";
}

bool parse_dtype(std::string_view name, DType* out) {
  for (const auto& e : kDTypes) {
    if (name == e.name) {
      *out = e.dtype;
      return true;
    }
  }
  return false;
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

namespace {

using nlohmann::json;

// The 8-byte size, then the JSON object it sizes; fills header_size and data_start.
json read_header_json(const uint8_t* data, size_t size, const std::string& source, SafetensorsHeader& h) {
  if (size < 8)
    fail("{}: not a safetensors file: {} bytes, shorter than the 8-byte header size", source, size);
  h.header_size = read_u64_le(data);
  if (h.header_size > kMaxSafetensorsHeaderSize) {
    fail("{}: header size {} exceeds the {} byte limit (corrupt file?)", source, h.header_size,
         kMaxSafetensorsHeaderSize);
  }
  if (h.header_size > size - 8) {
    fail("{}: truncated: header claims {} bytes but the file has only {} after the size field", source,
         h.header_size, size - 8);
  }
  h.data_start = 8 + h.header_size;
  const auto* text = reinterpret_cast<const char*>(data + 8);
  if (h.header_size == 0) fail("{}: not a safetensors file: the header is empty", source);

  json header;
  std::set<std::string> names;
  std::string twice;  // JSON parsers keep the last of two equal keys: the first tensor would vanish
  const json::parser_callback_t note_duplicates = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::key && depth == 1 && !names.insert(parsed.get<std::string>()).second &&
        twice.empty())
      twice = parsed.get<std::string>();
    return true;
  };
  try {
    header = json::parse(text, text + h.header_size, note_duplicates);
  } catch (const json::exception& e) {
    // Not JSON at all (another format, or garbage): say so, with its first bytes.
    if (text[0] != '{') {
      std::string start;
      for (size_t i = 0; i < std::min<uint64_t>(h.header_size, 8); ++i)
        start += fmt::format("{:02x}", static_cast<uint8_t>(text[i]));
      fail("{}: not a safetensors file: its {}-byte header is not JSON (it starts with bytes {})", source,
           h.header_size, start);
    }
    fail("{}: header is not valid JSON: {}", source, e.what());
  }
  if (!header.is_object()) fail("{}: header is not a JSON object", source);
  if (!twice.empty()) fail("{}: the header names '{}' twice", source, twice);
  return header;
}

void read_metadata(const json& value, const std::string& source,
                   std::map<std::string, std::string>& metadata) {
  if (!value.is_object()) fail("{}: __metadata__ must be an object of strings", source);
  for (const auto& [k, v] : value.items()) {
    if (!v.is_string()) fail("{}: __metadata__ value for '{}' is not a string", source, k);
    metadata[k] = v.get<std::string>();
  }
}

// Fills info.shape and returns the element count, refusing counts whose byte size could overflow.
uint64_t read_shape(const json& value, const std::string& source, TensorInfo& info) {
  const std::string& name = info.name;
  const auto shape_it = value.find("shape");
  if (shape_it == value.end() || !shape_it->is_array()) fail("{}: tensor '{}': missing shape", source, name);
  uint64_t numel = 1;
  for (const auto& d : *shape_it) {
    if (!d.is_number_unsigned())
      fail("{}: tensor '{}': shape entries must be non-negative integers", source, name);
    const uint64_t dim = d.get<uint64_t>();
    if (dim > 0 && numel > std::numeric_limits<uint64_t>::max() / 16 / dim) {
      fail("{}: tensor '{}': shape overflows", source, name);
    }
    numel *= dim;
    info.shape.push_back(static_cast<int64_t>(dim));
  }
  return numel;
}

// Fills info.begin and info.end, which must lie inside the data buffer.
void read_data_offsets(const json& value, const std::string& source, uint64_t buffer_size, TensorInfo& info) {
  const std::string& name = info.name;
  const auto off_it = value.find("data_offsets");
  if (off_it == value.end() || !off_it->is_array() || off_it->size() != 2 ||
      !(*off_it)[0].is_number_unsigned() || !(*off_it)[1].is_number_unsigned()) {
    fail("{}: tensor '{}': data_offsets must be [begin, end]", source, name);
  }
  info.begin = (*off_it)[0].get<uint64_t>();
  info.end = (*off_it)[1].get<uint64_t>();
  if (info.begin > info.end)
    fail("{}: tensor '{}': data_offsets begin {} > end {}", source, name, info.begin, info.end);
  if (info.end > buffer_size) {
    fail("{}: tensor '{}': data_offsets end {} is past the data buffer ({} bytes): file truncated?", source,
         name, info.end, buffer_size);
  }
}

// One tensor entry: dtype, shape and offsets, whose byte span must match shape x dtype.
TensorInfo read_tensor_info(const std::string& name, const json& value, const std::string& source,
                            uint64_t buffer_size) {
  if (!value.is_object()) fail("{}: tensor '{}': entry is not an object", source, name);
  TensorInfo info;
  info.name = name;
  const auto dtype_it = value.find("dtype");
  if (dtype_it == value.end() || !dtype_it->is_string()) fail("{}: tensor '{}': missing dtype", source, name);
  if (!parse_dtype(dtype_it->get_ref<const std::string&>(), &info.dtype)) {
    fail("{}: tensor '{}': unknown dtype '{}'", source, name, dtype_it->get<std::string>());
  }
  const uint64_t numel = read_shape(value, source, info);
  read_data_offsets(value, source, buffer_size, info);
  const uint64_t expected = numel * dtype_size(info.dtype);
  if (info.byte_size() != expected) {
    fail("{}: tensor '{}': {} bytes stored, but shape x dtype needs {}", source, name, info.byte_size(),
         expected);
  }
  return info;
}

// The buffer must be covered exactly: no holes, no overlap.
void check_buffer_coverage(std::vector<const TensorInfo*> by_offset, uint64_t buffer_size,
                           const std::string& source) {
  std::sort(by_offset.begin(), by_offset.end(), [](const TensorInfo* a, const TensorInfo* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t cursor = 0;
  for (const TensorInfo* t : by_offset) {
    if (t->begin < cursor) fail("{}: tensor '{}' overlaps the previous tensor", source, t->name);
    if (t->begin > cursor)
      fail("{}: tensor '{}' leaves a hole at bytes {}..{}", source, t->name, cursor, t->begin);
    cursor = t->end;
  }
  if (cursor != buffer_size) {
    fail("{}: data buffer has {} bytes but tensors cover {}", source, buffer_size, cursor);
  }
}

}  // namespace

SafetensorsHeader parse_safetensors_header(const uint8_t* data, size_t size, const std::string& source) {
  SafetensorsHeader h;
  const json header = read_header_json(data, size, source, h);
  const uint64_t buffer_size = size - h.data_start;
  std::vector<const TensorInfo*> by_offset;
  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      read_metadata(value, source, h.metadata);
      continue;
    }
    auto [it, inserted] = h.tensors.emplace(name, read_tensor_info(name, value, source, buffer_size));
    if (!inserted) fail("{}: tensor '{}' appears twice", source, name);
    by_offset.push_back(&it->second);
  }
  check_buffer_coverage(std::move(by_offset), buffer_size, source);
  return h;
}

SafetensorsFile::SafetensorsFile(const std::filesystem::path& path)
    : map_(std::make_shared<MappedFile>(path)),
      header_(parse_safetensors_header(map_->data(), map_->size(), path.string())) {}

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  const auto it = header_.tensors.find(name);
  if (it == header_.tensors.end()) fail("{}: no tensor named '{}'", path().string(), name);
  return it->second;
}

const uint8_t* SafetensorsFile::data(const TensorInfo& info) const {
  return map_->data() + header_.data_start + info.begin;
}

void SafetensorsWriter::add(const std::string& name, DType dtype, std::vector<int64_t> shape,
                            std::string bytes) {
  uint64_t numel = 1;
  for (int64_t d : shape) {
    if (d < 0) fail("safetensors writer: tensor '{}' has a negative dimension", name);
    numel *= static_cast<uint64_t>(d);
  }
  if (numel * dtype_size(dtype) != bytes.size()) {
    fail("safetensors writer: tensor '{}' has {} bytes, shape x dtype needs {}", name, bytes.size(),
         numel * dtype_size(dtype));
  }
  if (name == "__metadata__") fail("safetensors writer: '__metadata__' is not a tensor name");
  if (entries_.count(name)) fail("safetensors writer: tensor '{}' added twice", name);
  entries_.emplace(name, Entry{dtype, std::move(shape), std::move(bytes)});
}

std::string SafetensorsWriter::header_json() const {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata_.empty()) header["__metadata__"] = metadata_;
  uint64_t offset = 0;
  for (const auto& [name, e] : entries_) {
    header[name] = {{"dtype", std::string(dtype_name(e.dtype))},
                    {"shape", e.shape},
                    {"data_offsets", {offset, offset + e.bytes.size()}}};
    offset += e.bytes.size();
  }
  return header.dump();
}

void SafetensorsWriter::write(const std::filesystem::path& path) const {
  std::string header = header_json();
  while ((8 + header.size()) % 8 != 0) header.push_back(' ');
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path());
  const auto tmp = temp_path_for(path);
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) fail("cannot create '{}'", tmp.string());
    uint8_t size_le[8];
    uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) size_le[i] = static_cast<uint8_t>(n >> (8 * i));
    out.write(reinterpret_cast<const char*>(size_le), 8);
    out.write(header.data(), static_cast<std::streamsize>(header.size()));
    for (const auto& [name, e] : entries_)
      out.write(e.bytes.data(), static_cast<std::streamsize>(e.bytes.size()));
    out.flush();
    if (!out) {
      const std::string why = std::strerror(errno);
      std::filesystem::remove(tmp);
      fail("cannot write '{}': {} (disk full? the partial file was removed)", path.string(), why);
    }
  }
  rename_durable(tmp, path);
}

}  // namespace flame
