#include "llm/spm.h"

#include <queue>

#include "util/error.h"
#include "util/utf8.h"

namespace flame::llm {

SpmModel::SpmModel(const std::vector<std::string>& pieces, const std::vector<float>& scores,
                   const std::vector<TokenType>& types, std::optional<int32_t> unk_id)
    : scores_(scores), unk_id_(unk_id) {
  scores_.resize(pieces.size(), 0.0f);
  byte_ids_.fill(-1);
  std::unordered_map<std::string, int32_t> all;
  for (size_t id = 0; id < pieces.size(); ++id) {
    const TokenType type = id < types.size() ? types[id] : TokenType::Normal;
    if (type == TokenType::Normal || type == TokenType::UserDefined || type == TokenType::Undefined) {
      ids_.emplace(pieces[id], static_cast<int32_t>(id));
    }
    all.emplace(pieces[id], static_cast<int32_t>(id));
  }
  for (int b = 0; b < 256; ++b) {
    const auto it = all.find(fmt::format("<0x{:02X}>", b));
    if (it != all.end()) byte_ids_[b] = it->second;
  }
}

std::optional<int32_t> SpmModel::find(std::string_view text) const {
  const auto it = ids_.find(std::string(text));
  if (it == ids_.end()) return std::nullopt;
  return it->second;
}

void SpmModel::encode(std::string_view piece, std::vector<int32_t>& ids) const {
  if (piece.empty()) return;
  struct Symbol {
    size_t offset;
    size_t size;  // 0 once merged into its left neighbour
    int32_t prev;
    int32_t next;
  };
  std::vector<Symbol> symbols;
  symbols.reserve(piece.size());
  for (size_t pos = 0; pos < piece.size();) {
    const size_t len = utf8::char_length(piece, pos);
    const auto index = static_cast<int32_t>(symbols.size());
    symbols.push_back({pos, len, index - 1, index + 1});
    pos += len;
  }
  symbols.back().next = -1;

  // Highest score first, then leftmost.
  struct Bigram {
    float score;
    int32_t left;
    int32_t right;
    size_t size;
    bool operator<(const Bigram& o) const { return score != o.score ? score < o.score : left > o.left; }
  };
  std::priority_queue<Bigram> queue;
  const auto try_pair = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const size_t size = symbols[left].size + symbols[right].size;
    const auto id = find(piece.substr(symbols[left].offset, size));
    if (id) queue.push({scores_[*id], left, right, size});
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i) try_pair(i, i + 1);
  while (!queue.empty()) {
    const Bigram top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.left];
    Symbol& right = symbols[top.right];
    // Stale: one side was merged elsewhere since this pair was queued.
    if (left.size == 0 || right.size == 0 || left.size + right.size != top.size) continue;
    left.size += right.size;
    right.size = 0;
    left.next = right.next;
    if (left.next >= 0) symbols[left.next].prev = top.left;
    try_pair(left.prev, top.left);
    try_pair(top.left, left.next);
  }
  for (int32_t i = 0; i >= 0; i = symbols[i].next) {
    const std::string_view text = piece.substr(symbols[i].offset, symbols[i].size);
    if (const auto id = find(text)) {
      ids.push_back(*id);
      continue;
    }
    for (char c : text) {
      const int32_t byte_id = byte_ids_[static_cast<uint8_t>(c)];
      if (byte_id >= 0) {
        ids.push_back(byte_id);
      } else if (unk_id_) {
        ids.push_back(*unk_id_);
      }
    }
  }
}

}  // namespace flame::llm
