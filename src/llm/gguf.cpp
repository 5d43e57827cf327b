#include "llm/gguf.h"

#include <cstring>
#include <limits>

#include "util/error.h"
#include "util/file.h"

namespace flame::llm {

namespace {

constexpr uint32_t kMaxDims = 4;     // GGML_MAX_DIMS
constexpr int kMaxArrayNesting = 8;  // arrays of arrays, well beyond any real file
constexpr uint64_t kMaxStringBytes = 1ull << 30;

// Bytes an element of `type` takes at least, to bound counts before allocating.
uint64_t min_encoded_size(GgufType type) {
  switch (type) {
    case GgufType::Uint8:
    case GgufType::Int8:
    case GgufType::Bool: return 1;
    case GgufType::Uint16:
    case GgufType::Int16: return 2;
    case GgufType::Uint32:
    case GgufType::Int32:
    case GgufType::Float32: return 4;
    case GgufType::Uint64:
    case GgufType::Int64:
    case GgufType::Float64: return 8;
    case GgufType::String: return 8;
    case GgufType::Array: return 12;
  }
  return 1;
}

bool valid_type(uint32_t t) {
  return t <= static_cast<uint32_t>(GgufType::Float64);
}

class Reader {
 public:
  Reader(const uint8_t* data, size_t size, const std::string& source)
      : data_(data), size_(size), source_(source) {}

  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }

  // `what` names the field for messages ("key 'x'", "header").
  void need(uint64_t n, const std::string& what) const {
    if (n > remaining()) {
      fail("{}: truncated GGUF file: {} needs {} more bytes at offset {}, but only {} remain", source_, what,
           n, pos_, remaining());
    }
  }

  template <typename T>
  T read(const std::string& what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));  // GGUF is little-endian, as every supported host
    pos_ += sizeof(T);
    return v;
  }

  std::string read_string(const std::string& what) {
    const auto n = read<uint64_t>(what);
    if (n > kMaxStringBytes)
      fail("{}: corrupt GGUF file: {} has a string length of {} bytes", source_, what, n);
    need(n, what);
    std::string s(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return s;
  }

  // Checks that `count` elements of at least `element_size` bytes can fit in what is left.
  void check_count(uint64_t count, uint64_t element_size, const std::string& what) const {
    if (count > remaining() / element_size) {
      fail("{}: truncated or corrupt GGUF file: {} claims {} elements, more than the {} bytes left can hold",
           source_, what, count, remaining());
    }
  }

  void read_value(GgufType type, GgufValue* out, const std::string& what, int depth) {
    out->type = type;
    switch (type) {
      case GgufType::Uint8: out->integer = read<uint8_t>(what); break;
      case GgufType::Int8: out->integer = read<int8_t>(what); break;
      case GgufType::Uint16: out->integer = read<uint16_t>(what); break;
      case GgufType::Int16: out->integer = read<int16_t>(what); break;
      case GgufType::Uint32: out->integer = read<uint32_t>(what); break;
      case GgufType::Int32: out->integer = read<int32_t>(what); break;
      case GgufType::Uint64: out->integer = static_cast<int64_t>(read<uint64_t>(what)); break;
      case GgufType::Int64: out->integer = read<int64_t>(what); break;
      case GgufType::Float32: out->real = read<float>(what); break;
      case GgufType::Float64: out->real = read<double>(what); break;
      case GgufType::Bool: {
        const auto b = read<uint8_t>(what);
        if (b > 1) fail("{}: corrupt GGUF file: {} has bool value {}", source_, what, b);
        out->integer = b;
        break;
      }
      case GgufType::String: out->string = read_string(what); break;
      case GgufType::Array: read_array(out, what, depth); break;
    }
  }

 private:
  void read_array(GgufValue* out, const std::string& what, int depth) {
    if (depth >= kMaxArrayNesting) fail("{}: corrupt GGUF file: {} nests arrays too deeply", source_, what);
    const auto raw_type = read<uint32_t>(what);
    if (!valid_type(raw_type))
      fail("{}: corrupt GGUF file: {} has unknown element type {}", source_, what, raw_type);
    const auto type = static_cast<GgufType>(raw_type);
    const auto count = read<uint64_t>(what);
    check_count(count, min_encoded_size(type), what);
    out->element_type = type;
    GgufValue element;
    switch (type) {
      case GgufType::String:
        out->strings.reserve(count);
        for (uint64_t i = 0; i < count; ++i) out->strings.push_back(read_string(what));
        break;
      case GgufType::Float32:
      case GgufType::Float64:
        out->reals.reserve(count);
        for (uint64_t i = 0; i < count; ++i) {
          read_value(type, &element, what, depth + 1);
          out->reals.push_back(element.real);
        }
        break;
      case GgufType::Array:
        out->arrays.reserve(count);
        for (uint64_t i = 0; i < count; ++i) {
          out->arrays.emplace_back();
          read_value(type, &out->arrays.back(), what, depth + 1);
        }
        break;
      default:
        out->integers.reserve(count);
        for (uint64_t i = 0; i < count; ++i) {
          read_value(type, &element, what, depth + 1);
          out->integers.push_back(element.integer);
        }
        break;
    }
  }

  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  const std::string& source_;
};

bool is_integer_type(GgufType t) {
  switch (t) {
    case GgufType::Uint8:
    case GgufType::Int8:
    case GgufType::Uint16:
    case GgufType::Int16:
    case GgufType::Uint32:
    case GgufType::Int32:
    case GgufType::Uint64:
    case GgufType::Int64: return true;
    default: return false;
  }
}

}  // namespace

std::string_view gguf_type_name(GgufType type) {
  switch (type) {
    case GgufType::Uint8: return "uint8";
    case GgufType::Int8: return "int8";
    case GgufType::Uint16: return "uint16";
    case GgufType::Int16: return "int16";
    case GgufType::Uint32: return "uint32";
    case GgufType::Int32: return "int32";
    case GgufType::Float32: return "float32";
    case GgufType::Bool: return "bool";
    case GgufType::String: return "string";
    case GgufType::Array: return "array";
    case GgufType::Uint64: return "uint64";
    case GgufType::Int64: return "int64";
    case GgufType::Float64: return "float64";
  }
  return "?";
}

bool GgufValue::is_integer() const {
  return is_integer_type(type);
}

size_t GgufValue::array_size() const {
  return strings.size() + integers.size() + reals.size() + arrays.size();
}

GgufFile parse_gguf(const uint8_t* data, size_t size, const std::string& source) {
  GgufFile file;
  file.source = source;
  Reader r(data, size, source);
  r.need(4, "magic");
  if (std::memcmp(data, "GGUF", 4) != 0)
    fail("{}: not a GGUF file (the first 4 bytes are not \"GGUF\")", source);
  r.read<uint32_t>("magic");
  file.version = r.read<uint32_t>("version");
  if (file.version == 1) fail("{}: GGUF version 1 is not supported (only 2 and 3)", source);
  if (file.version > 0xFFFF)
    fail("{}: GGUF version field {:#x}: big-endian GGUF files are not supported", source, file.version);
  if (file.version != 2 && file.version != 3)
    fail("{}: unsupported GGUF version {} (only 2 and 3)", source, file.version);
  const auto tensor_count = r.read<uint64_t>("tensor count");
  const auto kv_count = r.read<uint64_t>("metadata count");
  r.check_count(kv_count, 8 + 4 + 1, "the metadata count");
  for (uint64_t i = 0; i < kv_count; ++i) {
    const std::string index = fmt::format("metadata key #{}", i);
    std::string key = r.read_string(index);
    const std::string what = fmt::format("key '{}'", key);
    const auto raw_type = r.read<uint32_t>(what);
    if (!valid_type(raw_type))
      fail("{}: corrupt GGUF file: {} has unknown value type {}", source, what, raw_type);
    GgufValue value;
    r.read_value(static_cast<GgufType>(raw_type), &value, what, 0);
    if (file.metadata.count(key) != 0) fail("{}: duplicate GGUF key '{}'", source, key);
    file.keys.push_back(key);
    file.metadata.emplace(std::move(key), std::move(value));
  }
  r.check_count(tensor_count, 8 + 4 + 4 + 8, "the tensor count");
  file.tensors.reserve(tensor_count);
  for (uint64_t i = 0; i < tensor_count; ++i) {
    GgufTensorInfo t;
    t.name = r.read_string(fmt::format("tensor #{} name", i));
    const std::string what = fmt::format("tensor '{}'", t.name);
    const auto n_dims = r.read<uint32_t>(what);
    if (n_dims > kMaxDims)
      fail("{}: corrupt GGUF file: {} has {} dimensions (at most {})", source, what, n_dims, kMaxDims);
    for (uint32_t d = 0; d < n_dims; ++d) t.shape.push_back(r.read<uint64_t>(what));
    t.ggml_type = r.read<uint32_t>(what);
    t.offset = r.read<uint64_t>(what);
    file.tensors.push_back(std::move(t));
  }
  if (const auto* a = file.find("general.alignment")) {
    if (!a->is_integer() || a->integer <= 0 || (a->integer & (a->integer - 1)) != 0) {
      fail("{}: general.alignment must be a positive power of two", source);
    }
    file.alignment = static_cast<uint64_t>(a->integer);
  }
  const uint64_t pos = r.pos();
  file.data_offset = (pos + file.alignment - 1) / file.alignment * file.alignment;
  if (!file.tensors.empty() && file.data_offset > size) {
    fail("{}: truncated GGUF file: tensor data would start at offset {}, past the end ({} bytes)", source,
         file.data_offset, size);
  }
  for (const auto& t : file.tensors) {
    if (t.offset % file.alignment != 0 || t.offset > size - std::min<uint64_t>(size, file.data_offset)) {
      fail("{}: corrupt GGUF file: tensor '{}' has data offset {} outside the data section or unaligned",
           source, t.name, t.offset);
    }
  }
  return file;
}

int64_t GgufTensorInfo::numel() const {
  int64_t n = 1;
  for (const uint64_t d : shape) n *= static_cast<int64_t>(d);
  return n;
}

std::vector<int64_t> GgufTensorInfo::sizes() const {
  return {shape.rbegin(), shape.rend()};
}

GgufFile read_gguf(const std::filesystem::path& path) {
  const MappedFile map(path);
  return parse_gguf(map.data(), map.size(), path.string());
}

const GgufValue* GgufFile::find(std::string_view key) const {
  const auto it = metadata.find(key);
  return it == metadata.end() ? nullptr : &it->second;
}

std::optional<std::string> GgufFile::get_string(std::string_view key) const {
  const auto* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (v->type != GgufType::String)
    fail("{}: GGUF key '{}' is a {}, expected a string", source, key, gguf_type_name(v->type));
  return v->string;
}

std::optional<int64_t> GgufFile::get_integer(std::string_view key) const {
  const auto* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (!v->is_integer())
    fail("{}: GGUF key '{}' is a {}, expected an integer", source, key, gguf_type_name(v->type));
  if (v->type == GgufType::Uint64 && v->integer < 0) fail("{}: GGUF key '{}' is out of range", source, key);
  return v->integer;
}

std::optional<bool> GgufFile::get_bool(std::string_view key) const {
  const auto* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (v->type != GgufType::Bool)
    fail("{}: GGUF key '{}' is a {}, expected a bool", source, key, gguf_type_name(v->type));
  return v->integer != 0;
}

std::optional<double> GgufFile::get_real(std::string_view key) const {
  const auto* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (v->type == GgufType::Float32 || v->type == GgufType::Float64) return v->real;
  if (v->is_integer()) return static_cast<double>(v->integer);
  fail("{}: GGUF key '{}' is a {}, expected a number", source, key, gguf_type_name(v->type));
}

namespace {

const GgufValue* find_array(const GgufFile& f, std::string_view key, std::string_view expected) {
  const auto* v = f.find(key);
  if (v == nullptr) return nullptr;
  if (!v->is_array())
    fail("{}: GGUF key '{}' is a {}, expected an array of {}", f.source, key, gguf_type_name(v->type),
         expected);
  return v;
}

}  // namespace

const std::vector<std::string>* GgufFile::get_strings(std::string_view key) const {
  const auto* v = find_array(*this, key, "strings");
  if (v == nullptr) return nullptr;
  if (v->element_type != GgufType::String) {
    fail("{}: GGUF key '{}' is an array of {}, expected strings", source, key,
         gguf_type_name(v->element_type));
  }
  return &v->strings;
}

const std::vector<int64_t>* GgufFile::get_integers(std::string_view key) const {
  const auto* v = find_array(*this, key, "integers");
  if (v == nullptr) return nullptr;
  if (!is_integer_type(v->element_type)) {
    fail("{}: GGUF key '{}' is an array of {}, expected integers", source, key,
         gguf_type_name(v->element_type));
  }
  return &v->integers;
}

const std::vector<double>* GgufFile::get_reals(std::string_view key) const {
  const auto* v = find_array(*this, key, "floats");
  if (v == nullptr) return nullptr;
  if (v->element_type != GgufType::Float32 && v->element_type != GgufType::Float64) {
    fail("{}: GGUF key '{}' is an array of {}, expected floats", source, key,
         gguf_type_name(v->element_type));
  }
  return &v->reals;
}

}  // namespace flame::llm
