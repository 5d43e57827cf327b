#include "text/store_manifest.h"

#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <unordered_set>

#include "util/error.h"

namespace flame::text {

namespace {

using nlohmann::json;

std::string quoted(const json& value) {
  return value.is_string() ? fmt::format("'{}'", value.get<std::string>()) : value.dump();
}

template <typename T>
T get_field(const json& object, const char* name, const std::string& source) {
  const auto it = object.find(name);
  if (it == object.end()) fail("{}: missing field '{}'", source, name);
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    // nlohmann converts 1.5 or 1e300 to an integer by a cast (undefined for
    // out-of-range values); a count or a layer must be written as an integer
    // that fits.
    const bool fits =
        it->is_number_integer() &&
        (it->is_number_unsigned()
             ? it->template get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<T>::max())
             : it->template get<int64_t>() >= std::numeric_limits<T>::min() &&
                   it->template get<int64_t>() <= std::numeric_limits<T>::max());
    if (!fits) fail("{}: field '{}' must be an integer, got {}", source, name, it->dump());
    return static_cast<T>(it->template get<int64_t>());
  }
  try {
    return it->get<T>();
  } catch (const json::exception&) {
    fail("{}: field '{}' has the wrong type: {}", source, name, it->dump());
  }
}

}  // namespace

StoreIdentity prompt_store_identity(const nlohmann::json& llm, const PromptSet& prompts) {
  StoreIdentity identity;
  identity.llm = llm;
  identity.prompt_set_name = prompts.name;
  identity.prompt_set_sha256 = prompts.sha256;
  for (const auto& f : prompts.facets) identity.facets.push_back(f.name);
  identity.num_facets = prompts.num_facets();
  return identity;
}

void StoreIdentity::validate(const std::string& source) const {
  if (!llm.is_object()) fail("{}: 'llm' must be an object", source);
  if (prompt_set_name.empty()) fail("{}: the prompt set has no name", source);
  if (dtype != "f16" && dtype != "bf16" && dtype != "int8") {
    fail("{}: dtype '{}' is not f16, bf16 or int8", source, dtype);
  }
  if (num_facets < 1) fail("{}: num_facets is {}, must be at least 1", source, num_facets);
  if (dim < 1) fail("{}: dim is {}, must be at least 1", source, dim);
  if (static_cast<int64_t>(facets.size()) != num_facets) {
    fail("{}: {} facet names for num_facets {}", source, facets.size(), num_facets);
  }
  if (facet_positions != "separate" && facet_positions != "concatenated")
    fail("{}: facet_positions '{}' is not separate or concatenated", source, facet_positions);
}

json identity_to_json(const StoreIdentity& identity) {
  json out = json::object();
  out["format"] = kStoreFormat;
  out["version"] = kStoreVersion;
  out["llm"] = identity.llm;
  out["prompt_set"] = {{"name", identity.prompt_set_name},
                       {"sha256", identity.prompt_set_sha256},
                       {"facets", identity.facets}};
  out["layer"] = identity.layer;
  out["dtype"] = identity.dtype;
  out["num_facets"] = identity.num_facets;
  out["dim"] = identity.dim;
  out["normalized"] = identity.normalized;
  out["facet_positions"] = identity.facet_positions;
  if (!identity.compute_dtype.empty() || !identity.mode.empty())
    out["computation"] = {{"compute_dtype", identity.compute_dtype}, {"mode", identity.mode}};
  return out;
}

StoreIdentity identity_from_json(const json& manifest, const std::string& source) {
  if (!manifest.is_object()) fail("{}: not a JSON object", source);
  const auto format = get_field<std::string>(manifest, "format", source);
  if (format != kStoreFormat) fail("{}: format is '{}', expected '{}'", source, format, kStoreFormat);
  const auto version = get_field<int>(manifest, "version", source);
  if (version != kStoreVersion) {
    fail("{}: store format version {} is not supported (this build reads version {})", source, version,
         kStoreVersion);
  }
  StoreIdentity id;
  id.llm = get_field<json>(manifest, "llm", source);
  const auto prompt_set = get_field<json>(manifest, "prompt_set", source);
  const std::string prompt_source = source + ": prompt_set";
  id.prompt_set_name = get_field<std::string>(prompt_set, "name", prompt_source);
  id.prompt_set_sha256 = get_field<std::string>(prompt_set, "sha256", prompt_source);
  id.facets = get_field<std::vector<std::string>>(prompt_set, "facets", prompt_source);
  id.layer = get_field<int>(manifest, "layer", source);
  id.dtype = get_field<std::string>(manifest, "dtype", source);
  id.num_facets = get_field<int64_t>(manifest, "num_facets", source);
  id.dim = get_field<int64_t>(manifest, "dim", source);
  id.normalized = get_field<bool>(manifest, "normalized", source);
  if (manifest.contains("facet_positions"))
    id.facet_positions = get_field<std::string>(manifest, "facet_positions", source);
  if (manifest.contains("computation")) {
    const auto computation = get_field<json>(manifest, "computation", source);
    id.compute_dtype = get_field<std::string>(computation, "compute_dtype", source + ": computation");
    id.mode = get_field<std::string>(computation, "mode", source + ": computation");
  }
  id.validate(source);
  return id;
}

StoreManifest manifest_from_json(const json& manifest, const std::string& source) {
  StoreManifest out;
  out.identity = identity_from_json(manifest, source);
  const auto part = manifest.find("part");
  if (part != manifest.end()) out.part = PartSelection::from_json(*part, source);
  out.count = get_field<int64_t>(manifest, "count", source);
  if (out.count < 0) fail("{}: negative count {}", source, out.count);
  const auto shards = manifest.find("shards");
  if (shards == manifest.end() || !shards->is_array()) fail("{}: missing 'shards' array", source);
  int64_t total = 0;
  for (const auto& entry : *shards) {
    if (!entry.is_object() || !entry.contains("file") || !entry["file"].is_string() ||
        !entry.contains("count")) {
      fail("{}: each shard entry must be {{\"file\": name, \"count\": n}}, got {}", source, entry.dump());
    }
    ManifestShard shard{entry["file"].get<std::string>(),
                        get_field<int64_t>(entry, "count", source + ": shards")};
    if (shard.file.empty() || shard.file.find('/') != std::string::npos || shard.file == "." ||
        shard.file == "..") {
      fail("{}: shard file name '{}' must be a plain name inside the store", source, shard.file);
    }
    if (shard.count < 0 || shard.count > out.count - total) {
      fail("{}: shard '{}' lists {} embeddings, more than the count {} leaves", source, shard.file,
           shard.count, out.count);
    }
    total += shard.count;
    out.shards.push_back(std::move(shard));
  }
  if (total != out.count)
    fail("{}: the shards list {} embeddings, the manifest says count {}", source, total, out.count);
  return out;
}

namespace {

json parse_metadata_json(const std::map<std::string, std::string>& metadata, const std::string& name,
                         const std::string& source) {
  const auto it = metadata.find(name);
  if (it == metadata.end()) fail("{}: not an embedding store shard: no '{}' in __metadata__", source, name);
  const json value = json::parse(it->second, nullptr, false);
  if (value.is_discarded()) fail("{}: __metadata__ '{}' is not valid JSON", source, name);
  return value;
}

}  // namespace

ShardMetadata shard_metadata_from_strings(const std::map<std::string, std::string>& metadata,
                                          const std::string& source) {
  ShardMetadata out;
  out.identity = identity_from_json(parse_metadata_json(metadata, "identity", source), source + ": identity");
  out.part =
      PartSelection::from_json(parse_metadata_json(metadata, "part", source), source + ": __metadata__");
  const json keys = parse_metadata_json(metadata, "keys", source);
  if (!keys.is_array()) fail("{}: __metadata__ 'keys' is not a JSON array", source);
  out.keys.reserve(keys.size());
  std::unordered_set<std::string> seen;
  for (const auto& key : keys) {
    if (!key.is_string() || key.get_ref<const std::string&>().empty()) {
      fail("{}: key #{} is not a non-empty string", source, out.keys.size());
    }
    if (!seen.insert(key.get<std::string>()).second)
      fail("{}: key '{}' appears twice", source, key.get<std::string>());
    out.keys.push_back(key.get<std::string>());
  }
  const auto sha256 = metadata.find("sha256");
  if (sha256 != metadata.end()) out.sha256 = sha256->second;
  return out;
}

std::vector<IdentityDifference> llm_differences(const json& a, const json& b) {
  std::vector<IdentityDifference> out;
  // Name the LLM fields that differ, in a stable order. "name" (the folder's)
  // is shown in messages but not compared: a copy of a checkpoint elsewhere
  // is the same LLM.
  std::vector<std::string> names;
  for (const json* llm : {&a, &b})
    if (llm->is_object())
      for (const auto& [name, value] : llm->items())
        if (name != "name") names.push_back(name);
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  const auto field_of = [](const json& llm, const std::string& name) {
    return llm.is_object() && llm.contains(name) ? llm.at(name) : json(nullptr);
  };
  for (const auto& name : names) {
    if (field_of(a, name) != field_of(b, name))
      out.push_back({"LLM " + name, quoted(field_of(a, name)), quoted(field_of(b, name))});
  }
  if (out.empty() && (!a.is_object() || !b.is_object()) && a != b)
    out.push_back({"LLM", quoted(a), quoted(b)});
  return out;
}

std::vector<IdentityDifference> identity_differences(const StoreIdentity& a, const StoreIdentity& b) {
  std::vector<IdentityDifference> out = llm_differences(a.llm, b.llm);
  const auto compare = [&](const std::string& field, const json& x, const json& y) {
    if (x != y) out.push_back({field, quoted(x), quoted(y)});
  };
  compare("prompt set", a.prompt_set_name, b.prompt_set_name);
  compare("prompt set sha256", a.prompt_set_sha256, b.prompt_set_sha256);
  compare("facets", a.facets, b.facets);
  compare("layer", a.layer, b.layer);
  compare("dtype", a.dtype, b.dtype);
  compare("num_facets", a.num_facets, b.num_facets);
  compare("dim", a.dim, b.dim);
  compare("normalized", a.normalized, b.normalized);
  compare("compute dtype", a.compute_dtype, b.compute_dtype);
  compare("mode", a.mode, b.mode);
  compare("facet positions", a.facet_positions, b.facet_positions);
  return out;
}

std::string describe_differences(const std::vector<IdentityDifference>& differences,
                                 const std::string& first_name, const std::string& second_name) {
  std::vector<std::string> parts;
  for (const auto& d : differences) {
    parts.push_back(
        fmt::format("{} was made with {} {}, {} {}", first_name, d.field, d.first, second_name, d.second));
  }
  return fmt::format("{}", fmt::join(parts, "; "));
}

std::string shard_file_name(int64_t shard_id) {
  return fmt::format("shard-{:05}.safetensors", shard_id);
}

bool parse_shard_file_name(const std::string& name, int64_t* shard_id) {
  const std::string prefix = "shard-", suffix = ".safetensors";
  if (name.size() <= prefix.size() + suffix.size() || name.compare(0, prefix.size(), prefix) != 0 ||
      name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) {
    return false;
  }
  const std::string digits = name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
  if (digits.size() < 5 || digits.size() > 12) return false;
  for (char c : digits)
    if (c < '0' || c > '9') return false;
  *shard_id = std::stoll(digits);
  return shard_file_name(*shard_id) == name;  // one spelling per id
}

std::vector<std::pair<int64_t, fs::path>> list_shard_files(const fs::path& dir) {
  std::vector<std::pair<int64_t, fs::path>> out;
  for (const auto& entry : fs::directory_iterator(dir)) {
    int64_t id = 0;
    if (entry.is_regular_file() && parse_shard_file_name(entry.path().filename().string(), &id)) {
      out.emplace_back(id, entry.path());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace flame::text
