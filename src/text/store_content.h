// What a store holds, whatever its path: one owner of the store's content
// identity, for joins (a copy of a store is the same store) and for training
// records (a store embedded again at the same path is another store).
#pragma once

#include <string>

#include "text/embedding_store.h"

namespace flame::text {

// The SHA-256 of its shards' vector checksums (recorded in each shard's
// metadata when written) and of its keys in order; "" when a shard predates
// the checksums. Reads only the shards' headers.
std::string store_content_sha256(const EmbeddingStore& store);

}  // namespace flame::text
