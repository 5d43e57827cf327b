// SentencePiece BPE with piece scores, as llama.cpp runs GGUF "llama"
// vocabularies: a piece starts as its characters; the adjacent pair whose
// concatenation is a vocabulary piece with the highest score (leftmost on ties)
// is merged until none is left; characters that are no piece become their
// <0xNN> byte tokens (or unk).
#pragma once

#include <array>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "llm/tokenizer.h"

namespace flame::llm {

class SpmModel : public TokenizerModel {
 public:
  // By id. Only Normal, UserDefined and Undefined pieces can be formed by
  // merging (as SentencePiece: never control, unknown, unused or byte tokens).
  SpmModel(const std::vector<std::string>& pieces, const std::vector<float>& scores,
           const std::vector<TokenType>& types, std::optional<int32_t> unk_id);

  void encode(std::string_view piece, std::vector<int32_t>& ids) const override;

 private:
  std::optional<int32_t> find(std::string_view text) const;

  std::unordered_map<std::string, int32_t> ids_;  // mergeable pieces
  std::vector<float> scores_;
  std::array<int32_t, 256> byte_ids_{};  // <0xNN> tokens, -1 if absent
  std::optional<int32_t> unk_id_;
};

}  // namespace flame::llm
