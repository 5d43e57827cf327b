// Greedy decoding with the KV cache: a smoke test of the forward pass (FLAME
// itself only needs hidden states).
#pragma once

#include <cstdint>
#include <vector>

#include "llm/batch.h"
#include "llm/transformer.h"

namespace flame::llm {

struct GenerateOptions {
  int64_t max_new_tokens = 20;
  std::vector<int64_t> stop_ids;  // generation ends after emitting one of these
};

// The generated ids (without the prompt). The prompt must not be empty.
TokenIds greedy_generate(const Transformer& model, const TokenIds& prompt, const GenerateOptions& options);

}  // namespace flame::llm
