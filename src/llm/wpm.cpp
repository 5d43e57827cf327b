#include "llm/wpm.h"

#include "llm/unicode.h"
#include "util/utf8.h"

namespace flame::llm {

WordPieceModel::WordPieceModel(std::unordered_map<std::string, int32_t> vocab, int32_t unk_id,
                               std::string word_prefix, std::string continuing_prefix,
                               size_t max_input_chars_per_word)
    : vocab_(std::move(vocab)),
      unk_id_(unk_id),
      word_prefix_(std::move(word_prefix)),
      continuing_prefix_(std::move(continuing_prefix)),
      max_input_chars_per_word_(max_input_chars_per_word) {
  for (const auto& [piece, id] : vocab_) max_piece_bytes_ = std::max(max_piece_bytes_, piece.size());
}

void WordPieceModel::encode(std::string_view word, std::vector<int32_t>& ids) const {
  if (word.empty()) return;
  size_t chars = 0;
  for (char c : word) chars += (static_cast<uint8_t>(c) & 0xC0) != 0x80;
  if (chars > max_input_chars_per_word_) {
    ids.push_back(unk_id_);
    return;
  }
  const size_t first = ids.size();
  std::string key;
  size_t start = 0;
  while (start < word.size()) {
    const std::string& prefix = start == 0 ? word_prefix_ : continuing_prefix_;
    // Longest match first; candidates end on character boundaries.
    size_t end = std::min(word.size(), start + max_piece_bytes_);
    if (end < word.size()) end = utf8::char_start(word, end);
    bool found = false;
    while (end > start) {
      key.assign(prefix);
      key.append(word.substr(start, end - start));
      const auto it = vocab_.find(key);
      if (it != vocab_.end()) {
        ids.push_back(it->second);
        found = true;
        break;
      }
      end = utf8::char_start(word, end - 1, start);
    }
    if (!found) {
      ids.resize(first);
      ids.push_back(unk_id_);
      return;
    }
    start = end;
  }
}

}  // namespace flame::llm
