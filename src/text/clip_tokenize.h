// CLIP-style fixed-length tokenization for the CLIP baseline's text tower,
// with the frozen LLM's tokenizer (byte-level BPE for SmolLM) in place of
// CLIP's own BPE. Each row is the caption's tokens (no BOS: SmolLM's BOS is its
// EOT, <|endoftext|> = 0), then EOT = the tokenizer's eos id, then padding with
// the tokenizer's pad id (SmolLM: [PAD] = 49152), or 0 when it has none. A row
// longer than the context is cut as OpenCLIP's tokenize: the first
// context_length tokens are kept and the last is replaced by EOT.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "llm/tokenizer.h"

namespace flame::text {

struct ClipTokens {
  torch::Tensor ids;        // int64 [N, context_length]
  torch::Tensor eot_index;  // int64 [N]: position of each row's EOT, where the tower pools
  int64_t truncated = 0;    // rows whose caption was cut to fit
};

// Throws flame::Error when the tokenizer has no eos id, context_length < 1 or
// a text is not valid UTF-8.
ClipTokens clip_tokenize(const llm::Tokenizer& tokenizer, const std::vector<std::string>& texts,
                         int64_t context_length);

}  // namespace flame::text
