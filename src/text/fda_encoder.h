// FacetEncoder: captions -> K facet embeddings with the frozen LLM.
//
// Every caption is cleaned, put into the prompt set's prefix, and followed by
// K facet suffixes. In the default mode (facet-decoupled attention, FDA) one
// packed row per caption holds "prefix, facet 1, ..., facet K": the prefix is
// computed once, each facet attends to the prefix and causally to itself but
// never to another facet, and its positions continue from the prefix end, so
// each facet's state equals that of the separate prompt "prefix + facet".
// The embedding of a facet is the hidden state of `layer` at its last token.
//
// Facet positions "concatenated" (fda mode only) numbers the packed row's
// positions 0..T-1 instead, as the method's released code does (its dense
// mask has the same visibility); it reproduces the features its checkpoints
// were trained on, not K separate prompts (llm/batch.h).
//
// Modes: fda (packed block mask, one pass), fda-cache (prefix pass -> shared
// KV cache -> one batched pass over all facets), naive (K full prompts, for
// comparison and tests).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "llm/batch.h"
#include "text/prompts.h"

namespace flame::llm {
class Transformer;
class Tokenizer;
}  // namespace flame::llm

namespace flame::text {

enum class EncodeMode { Fda, FdaCache, Naive };
EncodeMode parse_encode_mode(const std::string& name);  // "fda" | "fda-cache" | "naive"
std::string to_string(EncodeMode mode);

struct FacetEncoderOptions {
  EncodeMode mode = EncodeMode::Fda;
  int64_t layer = -2;           // hidden_states index (llm::hidden_state_index); -2 = L-1, the method's
  int64_t batch_tokens = 8192;  // padded tokens per forward pass (at least one caption)
  int64_t max_tokens = 0;       // longest prompt (prefix + one facet); 0 = max_position_embeddings
  bool normalize = false;       // L2-normalise each facet vector
  llm::FacetPositions facet_positions = llm::FacetPositions::kSeparate;  // kConcatenated: fda mode only
};

// A caption's prefix tokens (caption truncated if the prompt would not fit).
struct TokenizedCaption {
  llm::TokenIds prefix;
  bool truncated = false;
};

struct EncodeStats {
  int64_t captions = 0;
  int64_t tokens = 0;         // tokens the model processed, padding excluded
  int64_t padded_tokens = 0;  // including padding
  int64_t passes = 0;         // forward passes
  int64_t truncated = 0;      // captions cut to fit max_tokens (TokenizedCaption::truncated)
};

class FacetEncoder {
 public:
  FacetEncoder(const llm::Transformer& model, const llm::Tokenizer& tokenizer, PromptSet prompts,
               FacetEncoderOptions options = {});

  TokenizedCaption tokenize(std::string_view caption) const;
  // [N, K, D] float32 embeddings in input order.
  torch::Tensor encode(const std::vector<TokenizedCaption>& captions, EncodeStats* stats = nullptr) const;
  torch::Tensor encode_texts(const std::vector<std::string>& captions, EncodeStats* stats = nullptr) const;

  const PromptSet& prompts() const { return prompts_; }
  const std::vector<llm::TokenIds>& facet_tokens() const { return facet_tokens_; }
  int64_t layer() const { return layer_; }
  int64_t dim() const;
  int64_t max_tokens() const { return max_tokens_; }
  const FacetEncoderOptions& options() const { return options_; }

 private:
  // Runs one batch (indices into `captions`) and writes rows of `out`.
  void encode_packed(const std::vector<TokenizedCaption>& captions, const std::vector<int64_t>& batch,
                     torch::Tensor& out, EncodeStats& stats) const;
  void encode_with_cache(const std::vector<TokenizedCaption>& captions, const std::vector<int64_t>& batch,
                         torch::Tensor& out, EncodeStats& stats) const;
  void encode_naive(const std::vector<TokenizedCaption>& captions, const std::vector<int64_t>& batch,
                    torch::Tensor& out, EncodeStats& stats) const;
  // Padded cost of one caption in the current mode (for batching).
  int64_t row_tokens(const TokenizedCaption& caption) const;

  const llm::Transformer& model_;
  const llm::Tokenizer& tokenizer_;
  PromptSet prompts_;
  FacetEncoderOptions options_;
  std::vector<llm::TokenIds> facet_tokens_;
  int64_t facet_tokens_total_ = 0;
  int64_t facet_tokens_max_ = 0;
  int64_t layer_ = 0;
  int64_t max_tokens_ = 0;
};

}  // namespace flame::text
