#include "text/store_shard.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <spdlog/spdlog.h>

#include <cmath>
#include <limits>
#include <unordered_set>

#include "llm/weights.h"
#include "util/error.h"
#include "util/hash.h"
#include "util/utf8.h"

namespace flame::text {

namespace {

using nlohmann::json;

// Unit-norm vectors stored in f16/bf16/int8 keep their norm within ~1e-2.
constexpr double kNormTolerance = 2e-2;
constexpr double kMinInt8Cosine = 0.999;

// A NaN or an f16 overflow would poison training much later; catch it here.
void check_finite(const std::string& source, const StoreIdentity& identity,
                  const std::vector<std::string>& keys, const torch::Tensor& as_float) {
  if (as_float.numel() == 0) return;
  const torch::Tensor bad_rows = (~torch::isfinite(as_float)).flatten(1).any(1);
  if (bad_rows.any().item<bool>()) {
    const int64_t row = bad_rows.nonzero()[0][0].item<int64_t>();
    fail("{}: embedding of key '{}' has NaN or infinite values (as {})", source, keys[row], identity.dtype);
  }
}

// An all-zero vector (a zero hidden state, or values that underflow the
// stored dtype) has no direction: normalising it divides by zero, and its
// cosine to anything is undefined. Checked on the values as stored.
void check_nonzero(const std::string& source, const StoreIdentity& identity,
                   const std::vector<std::string>& keys, const torch::Tensor& as_float) {
  if (as_float.numel() == 0) return;
  const torch::Tensor zero = (as_float == 0).all(-1).flatten();  // [n * K]
  if (!zero.any().item<bool>()) return;
  const int64_t first = zero.nonzero()[0][0].item<int64_t>();
  fail("{}: facet '{}' of key '{}' is an all-zero vector (as {}): it has no direction to store", source,
       identity.facets[first % identity.num_facets], keys[first / identity.num_facets], identity.dtype);
}

void check_unit_norm(const std::string& source, const StoreIdentity& identity,
                     const std::vector<std::string>& keys, const torch::Tensor& as_float) {
  if (as_float.numel() == 0) return;
  const torch::Tensor norms = as_float.norm(2, -1).flatten();  // [n * K]
  const int64_t worst = (norms - 1).abs().argmax().item<int64_t>();
  const double norm = norms[worst].item<double>();
  if (std::abs(norm - 1) > kNormTolerance) {
    fail("{}: the store is marked normalized, but facet '{}' of key '{}' has L2 norm {:.4f}", source,
         identity.facets[worst % identity.num_facets], keys[worst / identity.num_facets], norm);
  }
}

// int8 keeps cosine >= 0.999 unless a vector is dominated by a few outlier
// dimensions (its scale then coarsens all others): say so, naming the vector.
void warn_if_lossy(const std::string& source, const StoreIdentity& identity,
                   const std::vector<std::string>& keys, const torch::Tensor& original,
                   const torch::Tensor& restored) {
  if (original.numel() == 0) return;
  // In f64: the f32 dot products of large vectors (|x| ~ 1e20) overflow to
  // inf and the cosine of a vector stored fine read as NaN.
  const torch::Tensor x = original.to(torch::kFloat64), y = restored.to(torch::kFloat64);
  const torch::Tensor cosine = ((x * y).sum(-1) / (x.norm(2, -1) * y.norm(2, -1))).flatten();
  const int64_t worst = cosine.argmin().item<int64_t>();
  const double value = cosine[worst].item<double>();
  if (value < kMinInt8Cosine) {
    spdlog::warn(
        "{}: int8 keeps cosine {:.5f} < {} for facet '{}' of key '{}' (outlier dimensions); "
        "use --store-dtype f16 for this model",
        source, value, kMinInt8Cosine, identity.facets[worst % identity.num_facets],
        keys[worst / identity.num_facets]);
  }
}

void check_scales(const SafetensorsFile& file, const std::string& source, const std::vector<int64_t>& shape) {
  if (!file.contains(kScalesTensor)) fail("{}: an int8 shard needs the tensor '{}'", source, kScalesTensor);
  const TensorInfo& info = file.info(kScalesTensor);
  if (info.dtype != DType::F32 || info.shape != shape) {
    fail("{}: '{}' must be F32 of shape [{}], not {} [{}]", source, kScalesTensor, fmt::join(shape, ", "),
         dtype_name(info.dtype), fmt::join(info.shape, ", "));
  }
}

}  // namespace

QuantizedEmbeddings quantize_int8(const torch::Tensor& embeddings) {
  const torch::Tensor x = embeddings.to(torch::kFloat32);
  // Symmetric, one scale per [D] vector: x ~= q * scale with q in -127..127.
  const torch::Tensor scales = (x.abs().amax(-1) / 127.0).clamp_min(std::numeric_limits<float>::min());
  const torch::Tensor values = (x / scales.unsqueeze(-1)).round().clamp(-127, 127).to(torch::kInt8);
  return {values.contiguous(), scales.contiguous()};
}

torch::Tensor dequantize_int8(const torch::Tensor& values, const torch::Tensor& scales) {
  return values.to(torch::kFloat32) * scales.to(torch::kFloat32).unsqueeze(-1);
}

torch::Tensor StoreShard::embeddings() const {
  return llm::mapped_tensor(*file, file->info(kEmbeddingsTensor));
}

torch::Tensor StoreShard::scales() const {
  if (!identity.quantized()) return {};
  return llm::mapped_tensor(*file, file->info(kScalesTensor));
}

torch::ScalarType store_torch_dtype(const StoreIdentity& identity) {
  if (identity.dtype == "int8") return torch::kInt8;
  return identity.dtype == "bf16" ? torch::kBFloat16 : torch::kFloat16;
}

StoreShard open_store_shard(const fs::path& path) {
  StoreShard shard;
  shard.file = std::make_shared<SafetensorsFile>(path);
  const std::string source = path.string();
  ShardMetadata metadata = shard_metadata_from_strings(shard.file->header().metadata, source);
  shard.identity = std::move(metadata.identity);
  shard.part = metadata.part;
  shard.keys = std::move(metadata.keys);
  shard.sha256 = std::move(metadata.sha256);

  if (!shard.file->contains(kEmbeddingsTensor)) fail("{}: no tensor '{}'", source, kEmbeddingsTensor);
  const TensorInfo& info = shard.file->info(kEmbeddingsTensor);
  const DType expected_dtype = llm::from_torch_dtype(store_torch_dtype(shard.identity));
  if (info.dtype != expected_dtype) {
    fail("{}: '{}' is {}, but the shard's identity says {}", source, kEmbeddingsTensor,
         dtype_name(info.dtype), shard.identity.dtype);
  }
  const std::vector<int64_t> expected_shape = {shard.rows(), shard.identity.num_facets, shard.identity.dim};
  if (info.shape != expected_shape) {
    fail("{}: '{}' has shape [{}], expected [{}] ({} keys, K={}, D={})", source, kEmbeddingsTensor,
         fmt::join(info.shape, ", "), fmt::join(expected_shape, ", "), shard.rows(),
         shard.identity.num_facets, shard.identity.dim);
  }
  if (shard.identity.quantized())
    check_scales(*shard.file, source, {shard.rows(), shard.identity.num_facets});
  return shard;
}

std::string shard_vectors_sha256(const StoreShard& shard) {
  Sha256 hash;
  for (const char* name : {kEmbeddingsTensor, kScalesTensor}) {
    if (!shard.file->contains(name)) continue;
    const TensorInfo& info = shard.file->info(name);
    hash.update(shard.file->data(info), info.byte_size());
  }
  return hash.hex();
}

void check_shard_checksum(const StoreShard& shard) {
  if (shard.sha256.empty()) return;  // written before checksums were recorded
  const std::string now = shard_vectors_sha256(shard);
  if (now != shard.sha256) {
    fail("{}: its vectors changed after they were written (checksum mismatch: sha256 {} recorded, {} now)",
         shard.file->path().string(), shard.sha256, now);
  }
}

void write_store_shard(const fs::path& path, const StoreIdentity& identity, const PartSelection& part,
                       const std::vector<std::string>& keys, const torch::Tensor& embeddings) {
  const std::string source = path.string();  // names the store and the shard
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
    if (!utf8::is_valid(key)) fail("{}: key '{}' is not valid UTF-8", source, utf8::sanitize(key));
    if (!seen.insert(key).second) fail("{}: key '{}' appears twice", source, key);
  }

  torch::Tensor stored, scales, as_float;
  if (identity.quantized()) {
    as_float = embeddings.detach().to(torch::kCPU, torch::kFloat32).contiguous();
    check_finite(source, identity, keys, as_float);  // before quantizing: NaN has no int8 code
    const QuantizedEmbeddings q = quantize_int8(as_float);
    stored = q.values;
    scales = q.scales;
    const torch::Tensor restored = dequantize_int8(q.values, q.scales);
    check_nonzero(source, identity, keys, restored);  // zero, or so small its scale underflows
    warn_if_lossy(source, identity, keys, as_float, restored);
    as_float = restored;
  } else {
    stored = embeddings.detach().to(torch::kCPU, store_torch_dtype(identity)).contiguous();
    as_float = stored.to(torch::kFloat32);
    check_finite(source, identity, keys, as_float);   // an f16 overflow shows here
    check_nonzero(source, identity, keys, as_float);  // and an underflow to zero
  }
  if (identity.normalized) check_unit_norm(source, identity, keys, as_float);

  SafetensorsWriter writer;
  llm::add_tensor(writer, kEmbeddingsTensor, stored);
  if (scales.defined()) llm::add_tensor(writer, kScalesTensor, scales);
  // The checksum covers the bytes as stored, in shard_vectors_sha256's order.
  Sha256 hash;
  for (const torch::Tensor& t : {stored, scales}) {
    if (!t.defined()) continue;
    const torch::Tensor bytes = t.contiguous();
    hash.update(bytes.data_ptr(), static_cast<size_t>(bytes.nbytes()));
  }
  writer.set_metadata({{"format", "pt"},
                       {"keys", json(keys).dump()},
                       {"identity", identity_to_json(identity).dump()},
                       {"part", part.to_json().dump()},
                       {"sha256", hash.hex()}});
  writer.write(path);
}

}  // namespace flame::text
