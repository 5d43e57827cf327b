#include "text/clip_tokenize.h"

#include <algorithm>

#include "util/error.h"

namespace flame::text {

ClipTokens clip_tokenize(const llm::Tokenizer& tokenizer, const std::vector<std::string>& texts,
                         int64_t context_length) {
  if (context_length < 1) fail("clip_tokenize: context_length must be positive, got {}", context_length);
  const std::optional<int32_t> eot = tokenizer.eos_id();
  if (!eot) fail("clip_tokenize: tokenizer '{}' has no eos token to end captions with", tokenizer.source());
  const int64_t pad = tokenizer.pad_id().value_or(0);
  const int64_t n = static_cast<int64_t>(texts.size());

  ClipTokens out;
  out.ids = torch::full({n, context_length}, pad, torch::kLong);
  out.eot_index = torch::empty({n}, torch::kLong);
  auto ids = out.ids.accessor<int64_t, 2>();
  auto eot_index = out.eot_index.accessor<int64_t, 1>();
  for (int64_t i = 0; i < n; ++i) {
    // The post-processor's specials (BOS for some tokenizers) are left out: a
    // row is the caption and its EOT only, whatever the tokenizer.
    const std::vector<int32_t> tokens = tokenizer.encode(texts[static_cast<size_t>(i)], false);
    const int64_t kept = std::min<int64_t>(static_cast<int64_t>(tokens.size()), context_length - 1);
    if (kept < static_cast<int64_t>(tokens.size())) ++out.truncated;
    for (int64_t t = 0; t < kept; ++t) ids[i][t] = tokens[static_cast<size_t>(t)];
    ids[i][kept] = *eot;
    eot_index[i] = kept;
  }
  return out;
}

}  // namespace flame::text
