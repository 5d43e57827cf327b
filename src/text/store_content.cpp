#include "text/store_content.h"

#include "util/hash.h"
#include "util/safetensors.h"

namespace flame::text {

std::string store_content_sha256(const EmbeddingStore& store) {
  Sha256 hash;
  for (const fs::path& shard : store.shard_paths()) {
    const SafetensorsFile file(shard);
    const auto& metadata = file.header().metadata;
    const auto it = metadata.find("sha256");
    if (it == metadata.end() || it->second.empty()) return "";
    hash.update(it->second);
    hash.update("\n");
  }
  for (const std::string& key : store.keys()) {
    hash.update(key);
    hash.update("\n");
  }
  return hash.hex();
}

}  // namespace flame::text
