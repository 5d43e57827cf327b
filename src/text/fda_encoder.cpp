#include "text/fda_encoder.h"

#include <algorithm>
#include <numeric>

#include "llm/tokenizer.h"
#include "llm/transformer.h"
#include "util/error.h"
#include "util/utf8.h"

namespace flame::text {

namespace {

// Rows `batch` of `out` ([n, K, D], on the model's device) take a pass's
// gathered hidden states ([b, K, D] or [b * K, D]).
void store_rows(torch::Tensor& out, const std::vector<int64_t>& batch, const torch::Tensor& hidden) {
  const auto index = torch::tensor(batch, torch::kInt64).to(out.device());
  out.index_copy_(
      0, index,
      hidden.reshape({static_cast<int64_t>(batch.size()), out.size(1), out.size(2)}).to(torch::kFloat32));
}

llm::TokenIds to_token_ids(const std::vector<int32_t>& ids) {
  return llm::TokenIds(ids.begin(), ids.end());
}

}  // namespace

EncodeMode parse_encode_mode(const std::string& name) {
  if (name == "fda") return EncodeMode::Fda;
  if (name == "fda-cache") return EncodeMode::FdaCache;
  if (name == "naive") return EncodeMode::Naive;
  fail("unknown mode '{}' (use fda, fda-cache or naive)", name);
}

std::string to_string(EncodeMode mode) {
  switch (mode) {
    case EncodeMode::Fda: return "fda";
    case EncodeMode::FdaCache: return "fda-cache";
    case EncodeMode::Naive: return "naive";
  }
  return "?";
}

FacetEncoder::FacetEncoder(const llm::Transformer& model, const llm::Tokenizer& tokenizer, PromptSet prompts,
                           FacetEncoderOptions options)
    : model_(model), tokenizer_(tokenizer), prompts_(std::move(prompts)), options_(options) {
  const int64_t num_layers = model_.num_layers();
  layer_ = llm::hidden_state_index(options_.layer, num_layers);
  const int64_t context = model_.config().max_position_embeddings;
  // Positions past the model's context were never trained (and -1 read as 0).
  if (options_.max_tokens < 0 || options_.max_tokens > context) {
    fail("--max-tokens {} is out of range: 0 (the model's context) to {} (max_position_embeddings)",
         options_.max_tokens, context);
  }
  max_tokens_ = options_.max_tokens > 0 ? options_.max_tokens : context;
  for (const auto& facet : prompts_.facets) {
    facet_tokens_.push_back(to_token_ids(tokenizer_.encode(facet.text, /*add_special_tokens=*/false)));
    if (facet_tokens_.back().empty())
      fail("prompt set '{}': facet '{}' has no tokens", prompts_.name, facet.name);
    facet_tokens_total_ += static_cast<int64_t>(facet_tokens_.back().size());
    facet_tokens_max_ = std::max<int64_t>(facet_tokens_max_, facet_tokens_.back().size());
  }
  if (options_.batch_tokens <= 0) fail("batch_tokens must be positive");
  if (options_.facet_positions == llm::FacetPositions::kConcatenated && options_.mode != EncodeMode::Fda) {
    fail(
        "facet positions 'concatenated' need mode fda, not {}: only the packed row numbers its facets one "
        "after another",
        to_string(options_.mode));
  }
}

int64_t FacetEncoder::dim() const {
  return model_.config().hidden_size;
}

TokenizedCaption FacetEncoder::tokenize(std::string_view caption) const {
  const std::string clean = prompts_.clean(caption);
  TokenizedCaption out;
  out.prefix = to_token_ids(tokenizer_.encode(prompts_.prefix(clean)));
  // Concatenated positions run through every facet, not one.
  const int64_t limit =
      max_tokens_ - (options_.facet_positions == llm::FacetPositions::kConcatenated ? facet_tokens_total_
                                                                                    : facet_tokens_max_);
  if (static_cast<int64_t>(out.prefix.size()) <= limit) return out;
  // Too long: cut the caption (never the template or a facet) and re-tokenize.
  const auto caption_ids = tokenizer_.encode(clean, /*add_special_tokens=*/false);
  int64_t keep = static_cast<int64_t>(caption_ids.size()) - (static_cast<int64_t>(out.prefix.size()) - limit);
  while (keep > 0) {
    std::string cut =
        tokenizer_.decode(std::vector<int32_t>(caption_ids.begin(), caption_ids.begin() + keep));
    utf8::drop_incomplete_tail(cut);  // a token cut may split a character
    out.prefix = to_token_ids(tokenizer_.encode(prompts_.prefix(cut)));
    const int64_t over = static_cast<int64_t>(out.prefix.size()) - limit;
    if (over <= 0) {
      out.truncated = true;
      return out;
    }
    keep -= over;
  }
  fail("prompt set '{}' does not fit in {} tokens even without a caption", prompts_.name, max_tokens_);
}

int64_t FacetEncoder::row_tokens(const TokenizedCaption& caption) const {
  const auto p = static_cast<int64_t>(caption.prefix.size());
  const auto k = static_cast<int64_t>(facet_tokens_.size());
  switch (options_.mode) {
    case EncodeMode::Fda: return p + facet_tokens_total_;
    case EncodeMode::FdaCache: return p + k * facet_tokens_max_;
    case EncodeMode::Naive: return k * (p + facet_tokens_max_);
  }
  return p;
}

torch::Tensor FacetEncoder::encode(const std::vector<TokenizedCaption>& captions, EncodeStats* stats) const {
  torch::InferenceMode inference;
  const auto n = static_cast<int64_t>(captions.size());
  const auto k = static_cast<int64_t>(facet_tokens_.size());
  // On the model's device until the end: one copy to the CPU per call, not a
  // synchronising copy per pass, so a GPU runs the passes back to back.
  auto out = torch::empty({n, k, dim()},
                          torch::TensorOptions().dtype(torch::kFloat32).device(model_.options().device));
  EncodeStats local;
  // Longest first, then greedy batches under the padded-token budget: rows of
  // similar length share a batch, so little padding is computed.
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return captions[a].prefix.size() > captions[b].prefix.size();
  });
  size_t start = 0;
  while (start < order.size()) {
    const int64_t widest = row_tokens(captions[order[start]]);
    size_t end = start + 1;
    while (end < order.size() && static_cast<int64_t>(end - start + 1) * widest <= options_.batch_tokens)
      ++end;
    const std::vector<int64_t> batch(order.begin() + static_cast<std::ptrdiff_t>(start),
                                     order.begin() + static_cast<std::ptrdiff_t>(end));
    switch (options_.mode) {
      case EncodeMode::Fda: encode_packed(captions, batch, out, local); break;
      case EncodeMode::FdaCache: encode_with_cache(captions, batch, out, local); break;
      case EncodeMode::Naive: encode_naive(captions, batch, out, local); break;
    }
    start = end;
  }
  local.captions = n;
  local.truncated =
      std::count_if(captions.begin(), captions.end(), [](const auto& c) { return c.truncated; });
  if (options_.normalize)
    out = torch::nn::functional::normalize(out, torch::nn::functional::NormalizeFuncOptions().dim(-1));
  out = out.to(torch::kCPU);
  if (stats != nullptr) {
    stats->captions += local.captions;
    stats->tokens += local.tokens;
    stats->padded_tokens += local.padded_tokens;
    stats->passes += local.passes;
    stats->truncated += local.truncated;
  }
  return out;
}

torch::Tensor FacetEncoder::encode_texts(const std::vector<std::string>& captions, EncodeStats* stats) const {
  std::vector<TokenizedCaption> tokenized;
  tokenized.reserve(captions.size());
  for (const auto& c : captions) tokenized.push_back(tokenize(c));
  return encode(tokenized, stats);
}

void FacetEncoder::encode_packed(const std::vector<TokenizedCaption>& captions,
                                 const std::vector<int64_t>& batch, torch::Tensor& out,
                                 EncodeStats& stats) const {
  std::vector<llm::TokenIds> prefixes;
  for (int64_t i : batch) prefixes.push_back(captions[i].prefix);
  const std::vector<std::vector<llm::TokenIds>> facets(batch.size(), facet_tokens_);
  const auto packed = llm::pack_facets(prefixes, facets, /*pad_id=*/0, options_.facet_positions);
  const auto device = model_.options().device;
  llm::ForwardInput input;
  input.input_ids = packed.input_ids.to(device);
  input.valid = packed.valid.to(device);
  input.positions = packed.positions.to(device);
  input.attention_mask = packed.attention_mask.to(device);
  llm::ForwardRequest request;
  request.hidden_layers = {layer_};
  request.gather = packed.facet_last.to(device);
  store_rows(out, batch, model_.forward(input, request).hidden[0]);
  stats.tokens += packed.valid.sum().item<int64_t>();
  stats.padded_tokens += packed.valid.numel();
  stats.passes += 1;
}

void FacetEncoder::encode_with_cache(const std::vector<TokenizedCaption>& captions,
                                     const std::vector<int64_t>& batch, torch::Tensor& out,
                                     EncodeStats& stats) const {
  const auto device = model_.options().device;
  const auto b = static_cast<int64_t>(batch.size());
  const auto k = static_cast<int64_t>(facet_tokens_.size());
  std::vector<llm::TokenIds> prefixes;
  for (int64_t i : batch) prefixes.push_back(captions[i].prefix);
  const auto prefix_batch = llm::pad_right(prefixes);
  llm::ForwardInput prefix_input;
  prefix_input.input_ids = prefix_batch.input_ids.to(device);
  prefix_input.valid = prefix_batch.valid.to(device);
  llm::ForwardRequest prefix_request;
  prefix_request.cache = true;
  prefix_request.cache_layers = std::max<int64_t>(1, std::min(layer_, model_.num_layers()));
  const auto prefix_out = model_.forward(prefix_input, prefix_request);

  std::vector<llm::TokenIds> rows;
  rows.reserve(static_cast<size_t>(b * k));
  for (int64_t i = 0; i < b; ++i) rows.insert(rows.end(), facet_tokens_.begin(), facet_tokens_.end());
  const auto facet_batch = llm::pad_right(rows);
  llm::ForwardInput input;
  input.input_ids = facet_batch.input_ids.to(device);
  input.valid = facet_batch.valid.to(device);
  input.past = &prefix_out.cache;
  input.rows_per_past = k;  // facet row i continues prefix row i / k
  llm::ForwardRequest request;
  request.hidden_layers = {layer_};
  request.gather = facet_batch.last_index.to(device);
  store_rows(out, batch, model_.forward(input, request).hidden[0]);
  stats.tokens += prefix_batch.valid.sum().item<int64_t>() + facet_batch.valid.sum().item<int64_t>();
  stats.padded_tokens += prefix_batch.valid.numel() + facet_batch.valid.numel();
  stats.passes += 2;
}

void FacetEncoder::encode_naive(const std::vector<TokenizedCaption>& captions,
                                const std::vector<int64_t>& batch, torch::Tensor& out,
                                EncodeStats& stats) const {
  const auto device = model_.options().device;
  std::vector<llm::TokenIds> rows;
  for (int64_t i : batch) {
    for (const auto& facet : facet_tokens_) {
      llm::TokenIds row = captions[i].prefix;
      row.insert(row.end(), facet.begin(), facet.end());
      rows.push_back(std::move(row));
    }
  }
  const auto padded = llm::pad_right(rows);
  llm::ForwardInput input;
  input.input_ids = padded.input_ids.to(device);
  input.valid = padded.valid.to(device);
  llm::ForwardRequest request;
  request.hidden_layers = {layer_};
  request.gather = padded.last_index.to(device);
  store_rows(out, batch, model_.forward(input, request).hidden[0]);
  stats.tokens += padded.valid.sum().item<int64_t>();
  stats.padded_tokens += padded.valid.numel();
  stats.passes += 1;
}

}  // namespace flame::text
