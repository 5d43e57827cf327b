#include "llm/weights.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>

#include "util/error.h"
#include "util/file.h"

namespace flame::llm {

torch::ScalarType to_torch_dtype(DType dtype) {
  switch (dtype) {
    case DType::Bool: return torch::kBool;
    case DType::U8: return torch::kUInt8;
    case DType::I8: return torch::kInt8;
    case DType::I16: return torch::kInt16;
    case DType::F16: return torch::kFloat16;
    case DType::BF16: return torch::kBFloat16;
    case DType::I32: return torch::kInt32;
    case DType::F32: return torch::kFloat32;
    case DType::F64: return torch::kFloat64;
    case DType::I64: return torch::kInt64;
    default: fail("safetensors dtype {} has no torch equivalent here", dtype_name(dtype));
  }
}

DType from_torch_dtype(torch::ScalarType dtype) {
  switch (dtype) {
    case torch::kBool: return DType::Bool;
    case torch::kUInt8: return DType::U8;
    case torch::kInt8: return DType::I8;
    case torch::kInt16: return DType::I16;
    case torch::kFloat16: return DType::F16;
    case torch::kBFloat16: return DType::BF16;
    case torch::kInt32: return DType::I32;
    case torch::kFloat32: return DType::F32;
    case torch::kFloat64: return DType::F64;
    case torch::kInt64: return DType::I64;
    default: fail("torch dtype {} cannot be stored as safetensors", c10::toString(dtype));
  }
}

torch::ScalarType parse_compute_dtype(const std::string& name) {
  std::string n = name;
  std::transform(n.begin(), n.end(), n.begin(), [](unsigned char c) { return std::tolower(c); });
  if (n == "bf16" || n == "bfloat16") return torch::kBFloat16;
  if (n == "f16" || n == "fp16" || n == "float16" || n == "half") return torch::kFloat16;
  if (n == "f32" || n == "fp32" || n == "float32" || n == "float") return torch::kFloat32;
  fail("unknown dtype '{}' (use bf16, f16 or f32)", name);
}

std::string short_dtype_name(torch::ScalarType dtype) {
  switch (dtype) {
    case torch::kBFloat16: return "bf16";
    case torch::kFloat16: return "f16";
    case torch::kFloat32: return "f32";
    default: return c10::toString(dtype);
  }
}

torch::Tensor mapped_tensor(const SafetensorsFile& file, const TensorInfo& info) {
  // F8 and other dtypes LibTorch 1.13 lacks: name the file and tensor (the
  // bare dtype message left the user to search a multi-file checkpoint).
  torch::ScalarType dtype = torch::kFloat32;
  try {
    dtype = to_torch_dtype(info.dtype);
  } catch (const Error&) {
    fail(
        "{}: tensor '{}' is stored as {}, which LibTorch cannot read; convert the checkpoint to F32, F16 or "
        "BF16",
        file.path().string(), info.name, dtype_name(info.dtype));
  }
  const uint8_t* ptr = file.data(info);
  const auto options = torch::TensorOptions().dtype(dtype);
  if (reinterpret_cast<uintptr_t>(ptr) % dtype_size(info.dtype) != 0 || info.byte_size() == 0) {
    auto copy = torch::empty(info.shape, options);
    if (info.byte_size() > 0) std::memcpy(copy.data_ptr(), ptr, info.byte_size());
    return copy;
  }
  auto keep_alive = file.mapping();
  // from_blob takes a non-const pointer; the pages are mapped read-only.
  return torch::from_blob(
      const_cast<uint8_t*>(ptr), info.shape, [keep_alive](void*) {}, options);
}

WeightFiles::WeightFiles(const std::filesystem::path& dir) : dir_(dir) {
  const auto index_path = dir / "model.safetensors.index.json";
  const auto single_path = dir / "model.safetensors";
  std::vector<std::string> file_names;
  nlohmann::json weight_map;
  if (std::filesystem::exists(index_path)) {
    const auto index = read_json_file(index_path);
    if (!index.contains("weight_map") || !index["weight_map"].is_object()) {
      fail("{}: missing 'weight_map' object", index_path.string());
    }
    weight_map = index["weight_map"];
    for (const auto& [tensor, file] : weight_map.items()) {
      if (!file.is_string())
        fail("{}: weight_map entry '{}' is not a file name", index_path.string(), tensor);
      const auto f = file.get<std::string>();
      if (f.find('/') != std::string::npos || f == "..") {
        fail("{}: weight_map entry '{}' points outside the directory: '{}'", index_path.string(), tensor, f);
      }
      if (std::find(file_names.begin(), file_names.end(), f) == file_names.end()) file_names.push_back(f);
    }
    std::sort(file_names.begin(), file_names.end());
  } else if (std::filesystem::exists(single_path)) {
    file_names.push_back("model.safetensors");
  } else {
    fail("no weights in '{}': expected model.safetensors or model.safetensors.index.json", dir.string());
  }
  for (const auto& name : file_names) {
    const auto path = dir / name;
    if (!std::filesystem::exists(path))
      fail("weight file '{}' listed in the index is missing", path.string());
    files_.push_back(std::make_unique<SafetensorsFile>(path));
    for (const auto& [tensor, info] : files_.back()->tensors()) {
      if (!where_.emplace(tensor, files_.back().get()).second) {
        fail("tensor '{}' appears in more than one weight file ({})", tensor, path.string());
      }
    }
  }
  for (const auto& [tensor, file] : weight_map.items()) {
    const auto it = where_.find(tensor);
    if (it == where_.end())
      fail("{}: tensor '{}' is listed but not in '{}'", index_path.string(), tensor, file.get<std::string>());
    if (it->second->path().filename() != file.get<std::string>()) {
      fail("{}: tensor '{}' is listed in '{}' but found in '{}'", index_path.string(), tensor,
           file.get<std::string>(), it->second->path().filename().string());
    }
  }
}

std::vector<std::string> WeightFiles::names() const {
  std::vector<std::string> out;
  for (const auto& [name, file] : where_) out.push_back(name);
  return out;
}

const TensorInfo& WeightFiles::info(const std::string& name) const {
  const auto it = where_.find(name);
  if (it == where_.end()) fail("checkpoint '{}' has no tensor '{}'", dir_.string(), name);
  return it->second->info(name);
}

bool WeightFiles::copies(const std::string& name, torch::ScalarType dtype,
                         const torch::Device& device) const {
  return !device.is_cpu() || to_torch_dtype(info(name).dtype) != dtype;
}

torch::Tensor WeightFiles::get(const std::string& name, torch::ScalarType dtype, const torch::Device& device,
                               const std::vector<int64_t>& expected_shape) const {
  const auto it = where_.find(name);
  if (it == where_.end()) fail("checkpoint '{}' has no tensor '{}'", dir_.string(), name);
  const TensorInfo& info = it->second->info(name);
  if (!expected_shape.empty() && info.shape != expected_shape) {
    fail("{}: tensor '{}' has shape [{}], expected [{}]", it->second->path().string(), name,
         fmt::join(info.shape, ", "), fmt::join(expected_shape, ", "));
  }
  torch::Tensor t = mapped_tensor(*it->second, info);
  if (t.scalar_type() == dtype && device.is_cpu()) return t;
  // An integer or bool tensor read as a float weight is a broken or foreign
  // checkpoint, not something to convert silently.
  if (torch::isFloatingType(dtype) && !torch::isFloatingType(t.scalar_type())) {
    fail("{}: tensor '{}' is stored as {}; weights must be a float dtype (F32, F16, BF16)",
         it->second->path().string(), name, c10::toString(t.scalar_type()));
  }
  return t.to(device, dtype);
}

void add_tensor(SafetensorsWriter& writer, const std::string& name, const torch::Tensor& tensor) {
  const auto cpu = tensor.detach().to(torch::kCPU).contiguous();
  std::string bytes(static_cast<size_t>(cpu.nbytes()), '\0');
  if (!bytes.empty()) std::memcpy(bytes.data(), cpu.data_ptr(), bytes.size());
  writer.add(name, from_torch_dtype(cpu.scalar_type()), cpu.sizes().vec(), std::move(bytes));
}

void write_checkpoint_weights(const std::filesystem::path& dir,
                              const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                              uint64_t shard_bytes, const std::map<std::string, std::string>& metadata) {
  std::filesystem::create_directories(dir);
  uint64_t total = 0;
  for (const auto& [name, t] : tensors) total += static_cast<uint64_t>(t.nbytes());
  if (shard_bytes == 0 || total <= shard_bytes) {
    SafetensorsWriter writer;
    writer.set_metadata(metadata);
    for (const auto& [name, t] : tensors) add_tensor(writer, name, t);
    writer.write(dir / "model.safetensors");
    return;
  }
  // Greedy packing in the given order, as Hugging Face's save_pretrained does.
  std::vector<std::vector<size_t>> shards(1);
  uint64_t current = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto bytes = static_cast<uint64_t>(tensors[i].second.nbytes());
    if (!shards.back().empty() && current + bytes > shard_bytes) {
      shards.emplace_back();
      current = 0;
    }
    shards.back().push_back(i);
    current += bytes;
  }
  nlohmann::json weight_map = nlohmann::json::object();
  for (size_t s = 0; s < shards.size(); ++s) {
    const auto file_name = fmt::format("model-{:05}-of-{:05}.safetensors", s + 1, shards.size());
    SafetensorsWriter writer;
    writer.set_metadata(metadata);
    for (size_t i : shards[s]) {
      add_tensor(writer, tensors[i].first, tensors[i].second);
      weight_map[tensors[i].first] = file_name;
    }
    writer.write(dir / file_name);
  }
  nlohmann::json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
  write_json_file_atomic(dir / "model.safetensors.index.json", index);
}

}  // namespace flame::llm
