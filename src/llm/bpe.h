// Byte-pair encoding with merge ranks (Hugging Face's BPE model; also GGUF
// "gpt2" vocabularies): a piece starts as its characters, and the adjacent pair
// with the lowest merge rank (leftmost on ties) is merged until none is left.
#pragma once

#include <array>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "llm/tokenizer.h"

namespace flame::llm {

struct BpeOptions {
  std::optional<int32_t> unk_id;          // for characters not in the vocabulary (else they are dropped)
  bool fuse_unk = false;                  // consecutive unknown characters give one unk
  bool byte_fallback = false;             // unknown characters become their <0xNN> byte tokens
  bool ignore_merges = false;             // a piece that is itself in the vocabulary is one token
  std::string continuing_subword_prefix;  // added to each non-initial character
  std::string end_of_word_suffix;         // added to the last character
};

class BpeModel : public TokenizerModel {
 public:
  // `merges` in rank order. strict_merges: a merge whose parts or result are
  // not in `vocab` is an error naming `source` (Hugging Face); otherwise it is
  // skipped (GGUF). A repeated merge keeps its first (lowest) rank.
  BpeModel(std::unordered_map<std::string, int32_t> vocab,
           const std::vector<std::pair<std::string, std::string>>& merges, BpeOptions options,
           bool strict_merges, const std::string& source);

  void encode(std::string_view piece, std::vector<int32_t>& ids) const override;
  size_t merge_count() const { return merges_.size(); }

 private:
  struct Merge {
    int32_t rank;
    int32_t merged_id;
  };
  static uint64_t pair_key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  }
  std::optional<int32_t> find(const std::string& piece) const;
  void encode_uncached(std::string_view piece, std::vector<int32_t>& ids) const;

  std::unordered_map<std::string, int32_t> vocab_;
  std::unordered_map<uint64_t, Merge> merges_;
  BpeOptions options_;
  std::array<int32_t, 256> byte_ids_{};  // <0xNN> tokens, -1 if absent

  // Results per piece, so repeated words are merged once. Sharded to keep
  // concurrent encode calls from contending on one lock.
  struct CacheShard {
    std::mutex mutex;
    std::unordered_map<std::string, std::vector<int32_t>> entries;
  };
  static constexpr size_t kCacheShards = 16;
  static constexpr size_t kMaxCachedPerShard = 8192;
  static constexpr size_t kMaxCachedPieceBytes = 128;
  mutable std::array<CacheShard, kCacheShards> cache_;
};

}  // namespace flame::llm
