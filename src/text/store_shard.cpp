#include "text/store_shard.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <unordered_set>

#include "data/utf8.h"
#include "llm/weights.h"
#include "util/error.h"

namespace flame::text {

namespace {

using nlohmann::json;

// Unit-norm vectors stored in f16/bf16 keep their norm within ~1e-2.
constexpr double kNormTolerance = 2e-2;

const std::string& metadata_field(const llm::SafetensorsFile& file, const std::string& name) {
  const auto& metadata = file.header().metadata;
  const auto it = metadata.find(name);
  if (it == metadata.end())
    fail("{}: not an embedding store shard: no '{}' in __metadata__", file.path().string(), name);
  return it->second;
}

json parse_metadata_json(const llm::SafetensorsFile& file, const std::string& name) {
  const json value = json::parse(metadata_field(file, name), nullptr, false);
  if (value.is_discarded()) fail("{}: __metadata__ '{}' is not valid JSON", file.path().string(), name);
  return value;
}

}  // namespace

torch::Tensor StoreShard::embeddings() const {
  return llm::mapped_tensor(*file, file->info(kEmbeddingsTensor));
}

StoreShard open_store_shard(const fs::path& path) {
  StoreShard shard;
  shard.file = std::make_shared<llm::SafetensorsFile>(path);
  const std::string source = path.string();
  shard.identity = identity_from_json(parse_metadata_json(*shard.file, "identity"), source + ": identity");

  shard.part = PartSelection::from_json(parse_metadata_json(*shard.file, "part"), source + ": __metadata__");

  const json keys = parse_metadata_json(*shard.file, "keys");
  if (!keys.is_array()) fail("{}: __metadata__ 'keys' is not a JSON array", source);
  shard.keys.reserve(keys.size());
  std::unordered_set<std::string> seen;
  for (const auto& key : keys) {
    if (!key.is_string() || key.get_ref<const std::string&>().empty()) {
      fail("{}: key #{} is not a non-empty string", source, shard.keys.size());
    }
    if (!seen.insert(key.get<std::string>()).second)
      fail("{}: key '{}' appears twice", source, key.get<std::string>());
    shard.keys.push_back(key.get<std::string>());
  }

  if (!shard.file->contains(kEmbeddingsTensor)) fail("{}: no tensor '{}'", source, kEmbeddingsTensor);
  const llm::TensorInfo& info = shard.file->info(kEmbeddingsTensor);
  const llm::DType expected_dtype = shard.identity.dtype == "bf16" ? llm::DType::BF16 : llm::DType::F16;
  if (info.dtype != expected_dtype) {
    fail("{}: '{}' is {}, but the shard's identity says {}", source, kEmbeddingsTensor,
         llm::dtype_name(info.dtype), shard.identity.dtype);
  }
  const std::vector<int64_t> expected_shape = {shard.rows(), shard.identity.num_facets, shard.identity.dim};
  if (info.shape != expected_shape) {
    fail("{}: '{}' has shape [{}], expected [{}] ({} keys, K={}, D={})", source, kEmbeddingsTensor,
         fmt::join(info.shape, ", "), fmt::join(expected_shape, ", "), shard.rows(),
         shard.identity.num_facets, shard.identity.dim);
  }
  return shard;
}

void write_store_shard(const fs::path& path, const StoreIdentity& identity, const PartSelection& part,
                       const std::vector<std::string>& keys, const torch::Tensor& embeddings) {
  const std::string source = path.filename().string();
  const int64_t n = static_cast<int64_t>(keys.size());
  if (!embeddings.defined() || !embeddings.is_floating_point())
    fail("{}: embeddings must be a floating tensor", source);
  const std::vector<int64_t> expected_shape = {n, identity.num_facets, identity.dim};
  if (embeddings.sizes().vec() != expected_shape) {
    fail("{}: embeddings have shape [{}], expected [{}] ({} keys, K={}, D={})", source,
         fmt::join(embeddings.sizes(), ", "), fmt::join(expected_shape, ", "), n, identity.num_facets,
         identity.dim);
  }
  std::unordered_set<std::string> seen;
  for (const auto& key : keys) {
    if (key.empty()) fail("{}: empty key", source);
    if (!data::is_valid_utf8(key))
      fail("{}: key '{}' is not valid UTF-8", source, data::replace_invalid_utf8(key));
    if (!seen.insert(key).second) fail("{}: key '{}' appears twice", source, key);
  }

  const torch::Tensor stored = embeddings.detach().to(torch::kCPU, identity.torch_dtype()).contiguous();
  // A NaN or an f16 overflow would poison training much later; catch it here.
  if (n > 0) {
    const torch::Tensor as_float = stored.to(torch::kFloat32);
    const torch::Tensor bad_rows = (~torch::isfinite(as_float)).flatten(1).any(1);
    if (bad_rows.any().item<bool>()) {
      const int64_t row = bad_rows.nonzero()[0][0].item<int64_t>();
      fail("{}: embedding of key '{}' has NaN or infinite values (as {})", source, keys[row], identity.dtype);
    }
    if (identity.normalized) {
      const torch::Tensor norms = as_float.norm(2, -1).flatten();  // [n * K]
      const int64_t worst = (norms - 1).abs().argmax().item<int64_t>();
      const double norm = norms[worst].item<double>();
      if (std::abs(norm - 1) > kNormTolerance) {
        fail("{}: the store is marked normalized, but facet '{}' of key '{}' has L2 norm {:.4f}", source,
             identity.facets[worst % identity.num_facets], keys[worst / identity.num_facets], norm);
      }
    }
  }

  llm::SafetensorsWriter writer;
  llm::add_tensor(writer, kEmbeddingsTensor, stored);
  writer.set_metadata({{"format", "pt"},
                       {"keys", json(keys).dump()},
                       {"identity", identity_to_json(identity).dump()},
                       {"part", part.to_json().dump()}});
  writer.write(path);
}

}  // namespace flame::text
