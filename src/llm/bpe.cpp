#include "llm/bpe.h"

#include <queue>

#include "util/error.h"
#include "util/utf8.h"

namespace flame::llm {

BpeModel::BpeModel(std::unordered_map<std::string, int32_t> vocab,
                   const std::vector<std::pair<std::string, std::string>>& merges, BpeOptions options,
                   bool strict_merges, const std::string& source)
    : vocab_(std::move(vocab)), options_(std::move(options)) {
  merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [left, right] = merges[rank];
    const auto l = vocab_.find(left);
    const auto r = vocab_.find(right);
    const auto m = vocab_.find(left + right);
    if (l == vocab_.end() || r == vocab_.end() || m == vocab_.end()) {
      if (strict_merges) {
        fail("{}: merge #{} '{} {}' uses a token not in the vocabulary ('{}')", source, rank, left, right,
             l == vocab_.end()   ? left
             : r == vocab_.end() ? right
                                 : left + right);
      }
      continue;
    }
    merges_.emplace(pair_key(l->second, r->second), Merge{static_cast<int32_t>(rank), m->second});
  }
  for (int b = 0; b < 256; ++b) {
    const auto it = vocab_.find(fmt::format("<0x{:02X}>", b));
    byte_ids_[b] = it == vocab_.end() ? -1 : it->second;
  }
}

std::optional<int32_t> BpeModel::find(const std::string& piece) const {
  const auto it = vocab_.find(piece);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

void BpeModel::encode(std::string_view piece, std::vector<int32_t>& ids) const {
  if (piece.empty()) return;
  if (piece.size() > kMaxCachedPieceBytes) {
    encode_uncached(piece, ids);
    return;
  }
  std::string key(piece);
  auto& shard = cache_[std::hash<std::string>{}(key) % kCacheShards];
  {
    std::lock_guard<std::mutex> lock(shard.mutex);
    const auto it = shard.entries.find(key);
    if (it != shard.entries.end()) {
      ids.insert(ids.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t first = ids.size();
  encode_uncached(piece, ids);
  std::vector<int32_t> result(ids.begin() + static_cast<std::ptrdiff_t>(first), ids.end());
  std::lock_guard<std::mutex> lock(shard.mutex);
  if (shard.entries.size() >= kMaxCachedPerShard) shard.entries.clear();
  shard.entries.emplace(std::move(key), std::move(result));
}

namespace {

// One symbol of the piece being merged: a doubly linked list kept in a vector.
struct Symbol {
  int32_t id;
  int32_t prev;
  int32_t next;
  bool removed;
};

// The piece's characters as symbols, with unknown-character handling as
// Hugging Face's merge_word. `find(key)` is the vocabulary lookup.
template <typename Find>
std::vector<Symbol> initial_symbols(std::string_view piece, const BpeOptions& options,
                                    const std::array<int32_t, 256>& byte_ids, const Find& find) {
  std::vector<Symbol> symbols;
  symbols.reserve(piece.size());
  const auto add = [&](int32_t id) {
    const auto index = static_cast<int32_t>(symbols.size());
    symbols.push_back({id, index - 1, index + 1, false});
  };
  int32_t pending_unk = -1;  // an unknown character waiting to be fused with the next
  std::string key;
  size_t pos = 0;
  while (pos < piece.size()) {
    const size_t begin = pos;
    pos += utf8::char_length(piece, pos);
    key.clear();
    if (begin != 0) key += options.continuing_subword_prefix;
    key.append(piece.substr(begin, pos - begin));
    if (pos == piece.size()) key += options.end_of_word_suffix;
    if (const auto id = find(key)) {
      if (pending_unk >= 0) add(pending_unk);
      pending_unk = -1;
      add(*id);
      continue;
    }
    if (options.byte_fallback) {
      bool all_bytes = true;
      for (char c : key) all_bytes = all_bytes && byte_ids[static_cast<uint8_t>(c)] >= 0;
      if (all_bytes) {
        if (pending_unk >= 0) add(pending_unk);
        pending_unk = -1;
        for (char c : key) add(byte_ids[static_cast<uint8_t>(c)]);
        continue;
      }
    }
    if (options.unk_id) {
      if (pending_unk >= 0 && !options.fuse_unk) add(pending_unk);
      pending_unk = *options.unk_id;
    }
  }
  if (pending_unk >= 0) add(pending_unk);
  if (!symbols.empty()) symbols.back().next = -1;
  return symbols;
}

// Merges adjacent pairs, lowest rank first, then leftmost, until none is left.
// `find_merge(left_id, right_id)` is the pair's merge (rank, merged_id) or null.
template <typename FindMerge>
void merge_symbols(std::vector<Symbol>& symbols, const FindMerge& find_merge) {
  struct Candidate {
    int32_t rank;
    int32_t pos;
    int32_t merged_id;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
  const auto push_pair = [&](int32_t left) {
    if (left < 0) return;
    const int32_t right = symbols[left].next;
    if (right < 0) return;
    if (const auto* m = find_merge(symbols[left].id, symbols[right].id))
      queue.push({m->rank, left, m->merged_id});
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i) push_pair(i);
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.pos];
    if (left.removed || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    // Stale entry: the pair at this position is no longer the one that was queued.
    const auto* m = find_merge(left.id, right.id);
    if (m == nullptr || m->merged_id != top.merged_id) continue;
    left.id = top.merged_id;
    right.removed = true;
    left.next = right.next;
    if (left.next >= 0) symbols[left.next].prev = top.pos;
    push_pair(left.prev);
    push_pair(top.pos);
  }
}

}  // namespace

void BpeModel::encode_uncached(std::string_view piece, std::vector<int32_t>& ids) const {
  if (options_.ignore_merges) {
    if (const auto id = find(std::string(piece))) {
      ids.push_back(*id);
      return;
    }
  }
  std::vector<Symbol> symbols =
      initial_symbols(piece, options_, byte_ids_, [this](const std::string& key) { return find(key); });
  if (symbols.empty()) return;
  merge_symbols(symbols, [this](int32_t left, int32_t right) -> const Merge* {
    const auto it = merges_.find(pair_key(left, right));
    return it == merges_.end() ? nullptr : &it->second;
  });
  for (int32_t i = 0; i >= 0; i = symbols[i].next) ids.push_back(symbols[i].id);
}

}  // namespace flame::llm
