// WordPiece (BERT): each word is split greedily into the longest vocabulary
// pieces from the left; a word with an unmatched rest, or longer than
// max_input_chars_per_word, is one unk token. Word-initial and continuing
// pieces are told apart by prefixes: "" and "##" in Hugging Face files,
// U+2581 and "" in GGUF files (llama.cpp's conversion).
#pragma once

#include <string>
#include <unordered_map>

#include "llm/tokenizer.h"

namespace flame::llm {

class WordPieceModel : public TokenizerModel {
 public:
  WordPieceModel(std::unordered_map<std::string, int32_t> vocab, int32_t unk_id, std::string word_prefix,
                 std::string continuing_prefix, size_t max_input_chars_per_word = 100);

  void encode(std::string_view word, std::vector<int32_t>& ids) const override;

 private:
  std::unordered_map<std::string, int32_t> vocab_;
  int32_t unk_id_;
  std::string word_prefix_;
  std::string continuing_prefix_;
  size_t max_input_chars_per_word_;
  size_t max_piece_bytes_ = 0;  // longest vocabulary entry, bounds the search
};

}  // namespace flame::llm
