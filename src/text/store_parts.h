// Scale-out: a job split over n machines writes n part stores (part i of n,
// each in its own directory); verify_stores checks that they form one complete
// store and merge_stores combines them.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "text/embedding_store.h"

namespace flame::text {

struct StoreCheckReport {
  int64_t count = 0;                        // embeddings across the parts that opened
  std::vector<std::string> missing_keys;    // expected keys in no part
  std::vector<std::string> duplicate_keys;  // keys in more than one part (each listed once)
  std::vector<std::string> errors;          // parts that do not open, disagree, or are missing

  bool ok() const { return errors.empty() && missing_keys.empty() && duplicate_keys.empty(); }
  // One line per kind of defect, for logs and error messages.
  std::string summary() const;
};

// Opens every part and checks that their identities agree, that parts 0..n-1
// of the same n are each present once, and that keys are unique across parts
// (and, given `expected_keys`, that each of them is present), then reads every
// vector: all finite, and of unit norm in a normalised store. Problems are
// reported, not thrown.
StoreCheckReport verify_stores(const std::vector<fs::path>& parts,
                               const std::vector<std::string>* expected_keys = nullptr);

// Verifies the parts, then builds one store at `out` (which must not exist or
// be empty): the parts' shards in part order, renumbered, hard-linked when the
// file system allows (else copied), and a manifest saying part 0 of 1 whose
// "job" lists the parts merged. Throws flame::Error with the report's summary
// when the parts do not verify.
// With kReplaceStoreFiles, `out` may hold other things (a launched job's
// parts/ folder): only its manifest and shard files, from an earlier merge,
// are replaced.
enum class MergeTarget { kEmptyDirectory, kReplaceStoreFiles };
void merge_stores(const std::vector<fs::path>& parts, const fs::path& out,
                  MergeTarget target = MergeTarget::kEmptyDirectory);

}  // namespace flame::text
