// An embedding store's manifest.json (identity, part, count, shard list), as
// EmbeddingStore::open reads it, and the same JSON, when an object, as a
// shard's __metadata__ (every value as its JSON text, as the shard writer
// stores them).
#include <map>
#include <nlohmann/json.hpp>

#include "fuzz_targets.h"
#include "text/store_manifest.h"
#include "util/error.h"
#include "util/file.h"

namespace flame::fuzz {

bool store_manifest(const uint8_t* data, size_t size) {
  bool parsed = false;
  nlohmann::json json;
  try {
    json = read_json_file(input_file(data, size, "manifest.json"));
    const text::StoreManifest manifest = text::manifest_from_json(json, "manifest.json");
    int64_t total = 0;
    for (const auto& shard : manifest.shards) total += shard.count;
    if (total != manifest.count) __builtin_trap();
    parsed = true;
  } catch (const Error&) {
  }
  if (!json.is_object()) return parsed;
  try {
    std::map<std::string, std::string> metadata;
    for (const auto& [key, value] : json.items())
      metadata[key] = value.is_string() ? value.get<std::string>() : value.dump();
    const auto shard = text::shard_metadata_from_strings(metadata, "shard-00000.safetensors");
    parsed = parsed || !shard.keys.empty();
  } catch (const Error&) {
  }
  return parsed;
}

}  // namespace flame::fuzz

FLAME_FUZZ_ENTRY(store_manifest)
