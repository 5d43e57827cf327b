#include "llm/generate.h"

#include <algorithm>

#include "util/error.h"

namespace flame::llm {

TokenIds greedy_generate(const Transformer& model, const TokenIds& prompt, const GenerateOptions& options) {
  if (prompt.empty()) fail("generate: the prompt has no tokens");
  TokenIds generated;
  ForwardInput in;
  in.input_ids = torch::tensor(prompt, torch::kInt64).unsqueeze(0);
  ForwardRequest req;
  req.logits = true;
  req.cache = true;
  req.gather = torch::full({1, 1}, static_cast<int64_t>(prompt.size()) - 1, torch::kInt64);
  KvCache cache;
  for (int64_t step = 0; step < options.max_new_tokens; ++step) {
    ForwardOutput out = model.forward(in, req);
    const int64_t next = out.logits.reshape({-1}).argmax().item<int64_t>();
    generated.push_back(next);
    if (std::find(options.stop_ids.begin(), options.stop_ids.end(), next) != options.stop_ids.end()) break;
    cache = std::move(out.cache);
    in.input_ids = torch::full({1, 1}, next, torch::kInt64);
    in.past = &cache;
    req.gather = torch::zeros({1, 1}, torch::kInt64);
  }
  return generated;
}

}  // namespace flame::llm
