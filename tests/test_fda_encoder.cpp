// Facet-decoupled attention: one packed pass per caption must give, facet by
// facet, the states of K separate prompts "prefix + facet".
#include <gtest/gtest.h>

#include "llm/tokenizer.h"
#include "llm/transformer.h"
#include "test_helpers.h"
#include "text/fda_encoder.h"
#include "util/error.h"

namespace flame::text {
namespace {

const std::vector<std::string> kCaptions = {
    "A dog runs.",
    "A child in a pink dress is climbing up a set of stairs in an entry way . A girl going into a wooden "
    "building . A little girl climbing into a wooden playhouse . A little girl climbing the stairs to her "
    "playhouse . A little girl in a pink dress going into a wooden cabin .",
    "Two \"happy\" people\non a beach at sunset",
    "Une petite fille grimpe dans une maisonnette en bois.",
};

struct Loaded {
  llm::Transformer model;
  std::unique_ptr<llm::Tokenizer> tokenizer;
};

Loaded load(const std::string& arch, const std::string& dtype) {
  const auto dir = test::tiny_checkpoint(arch, dtype);
  llm::TransformerOptions options;
  options.dtype = dtype == "f32" ? torch::kFloat32 : torch::kBFloat16;
  return {llm::Transformer::load(dir, options), llm::Tokenizer::load(dir)};
}

torch::Tensor encode(const Loaded& m, const std::string& prompts, EncodeMode mode,
                     EncodeStats* stats = nullptr, int64_t batch_tokens = 8192) {
  FacetEncoderOptions options;
  options.mode = mode;
  options.batch_tokens = batch_tokens;
  FacetEncoder encoder(m.model, *m.tokenizer, load_prompt_set(prompts), options);
  return encoder.encode_texts(kCaptions, stats);
}

// One --layer rule everywhere (Python's hidden_states numbering): -1 is after
// the final norm, -2 the second to last (the default), 0..L as numbered,
// anything else refused naming the range. (flame embed used to map every
// negative value to L-1.)
TEST(Fda, LayerFollowsPythonNumbering) {
  EXPECT_EQ(llm::hidden_state_index(-1, 3), 3);
  EXPECT_EQ(llm::hidden_state_index(-2, 3), 2);
  EXPECT_EQ(llm::hidden_state_index(-4, 3), 0);
  EXPECT_EQ(llm::hidden_state_index(1, 3), 1);
  EXPECT_TRUE(
      test::contains(test::error_of([] { llm::hidden_state_index(-5, 3); }), "--layer -5 is out of range"));
  EXPECT_TRUE(test::contains(test::error_of([] { llm::hidden_state_index(4, 3); }), "0..3"));
  const Loaded m = load("llama", "f32");
  const auto layer_output = [&](int64_t layer) {
    FacetEncoderOptions options;
    options.layer = layer;
    FacetEncoder encoder(m.model, *m.tokenizer, load_prompt_set("raw"), options);
    EXPECT_EQ(encoder.layer(), llm::hidden_state_index(layer, 3));
    return encoder.encode_texts({kCaptions[0]});
  };
  EXPECT_TRUE(torch::equal(layer_output(-2), layer_output(2)));
  EXPECT_TRUE(torch::equal(layer_output(-1), layer_output(3)));
  EXPECT_FALSE(torch::equal(layer_output(-1), layer_output(-2)));
  EXPECT_EQ(FacetEncoderOptions{}.layer, -2);  // the method's layer by default
}

class FdaParity : public ::testing::TestWithParam<std::string> {};

TEST_P(FdaParity, PackedAndCachedEqualNaiveInFp32) {
  const auto m = load(GetParam(), "f32");
  EncodeStats naive_stats, fda_stats;
  const auto naive = encode(m, "long", EncodeMode::Naive, &naive_stats);
  const auto fda = encode(m, "long", EncodeMode::Fda, &fda_stats);
  const auto cached = encode(m, "long", EncodeMode::FdaCache);
  ASSERT_EQ(naive.sizes(), (std::vector<int64_t>{4, 7, 64}));
  EXPECT_LT((fda - naive).abs().max().item<float>(), 1e-4);
  EXPECT_LT((cached - naive).abs().max().item<float>(), 1e-4);
  // Facets differ from each other (the test would be vacuous otherwise).
  EXPECT_GT((naive.select(1, 0) - naive.select(1, 6)).abs().max().item<float>(), 1e-2);
  // FDA processes the prefix once: P + sum(S) tokens instead of K (P + S).
  EXPECT_LT(fda_stats.tokens * 2, naive_stats.tokens);
}

INSTANTIATE_TEST_SUITE_P(Architectures, FdaParity, ::testing::Values("llama", "qwen2", "mistral"));

TEST(Fda, Bf16AgreesWithNaiveByCosine) {
  const auto m = load("llama", "bf16");
  const auto naive = encode(m, "long", EncodeMode::Naive);
  const auto fda = encode(m, "long", EncodeMode::Fda);
  const auto cosine = torch::cosine_similarity(naive, fda, -1);
  EXPECT_GT(cosine.min().item<float>(), 0.999) << cosine;
}

TEST(Fda, FacetDoesNotDependOnOtherFacets) {
  const auto m = load("qwen2", "f32");
  const auto full = encode(m, "long", EncodeMode::Fda);
  const auto short_set = encode(m, "short", EncodeMode::Fda);
  const auto raw = encode(m, "raw", EncodeMode::Fda);
  EXPECT_LT((full.narrow(1, 0, 3) - short_set).abs().max().item<float>(), 1e-4);
  EXPECT_LT((full.narrow(1, 0, 1) - raw).abs().max().item<float>(), 1e-4);
}

TEST(Fda, BatchCompositionDoesNotChangeACaption) {
  const auto m = load("llama", "f32");
  const auto together = encode(m, "short", EncodeMode::Fda);
  const auto one_per_pass = encode(m, "short", EncodeMode::Fda, nullptr, /*batch_tokens=*/1);
  EXPECT_LT((together - one_per_pass).abs().max().item<float>(), 1e-4);
}

TEST(Fda, PrefixAndFacetTokensEqualTheWholePromptTokens) {
  // FDA tokenizes prefix and facets apart; with the real SmolLM tokenizer the
  // concatenation must equal the tokens of the whole prompt string.
  const auto tokenizer = llm::Tokenizer::load(test::smollm_tokenizer_dir());
  const auto prompts = load_prompt_set("long");
  for (const auto& caption : kCaptions) {
    const std::string prefix = prompts.prefix(clean_caption(caption));
    for (const auto& facet : prompts.facets) {
      auto joined = tokenizer->encode(prefix);
      const auto suffix = tokenizer->encode(facet.text, false);
      joined.insert(joined.end(), suffix.begin(), suffix.end());
      EXPECT_EQ(joined, tokenizer->encode(prefix + facet.text)) << prefix << facet.text;
    }
  }
}

TEST(Fda, LongCaptionsAreTruncatedAtTheCaptionOnly) {
  const auto m = load("llama", "f32");
  FacetEncoderOptions options;
  options.max_tokens = 64;
  FacetEncoder encoder(m.model, *m.tokenizer, load_prompt_set("long"), options);
  const auto short_caption = encoder.tokenize(kCaptions[0]);
  EXPECT_FALSE(short_caption.truncated);
  const auto cut = encoder.tokenize(kCaptions[1]);
  EXPECT_TRUE(cut.truncated);
  int64_t longest_facet = 0;
  for (const auto& f : encoder.facet_tokens()) longest_facet = std::max<int64_t>(longest_facet, f.size());
  EXPECT_LE(static_cast<int64_t>(cut.prefix.size()) + longest_facet, 64);
  EXPECT_GE(static_cast<int64_t>(cut.prefix.size()) + longest_facet, 56);  // cut no more than needed
  std::vector<int32_t> ids(cut.prefix.begin(), cut.prefix.end());
  const std::string text = m.tokenizer->decode(ids);
  EXPECT_EQ(text.rfind("Detailed image description: \"A child in a pink dress", 0), 0u) << text;
  EXPECT_NE(text.find("\". After thinking step by step,"), std::string::npos) << text;
  options.max_tokens = 20;  // the template alone does not fit
  FacetEncoder tiny(m.model, *m.tokenizer, load_prompt_set("long"), options);
  EXPECT_THROW(tiny.tokenize(kCaptions[1]), Error);
}

// The method's released code: the packed prompt as one sequence, positions
// 0..T-1, and a dense mask built as it builds it (causal, then each facet's
// rows cut off from later tokens and from earlier facets). Facet positions
// "concatenated" must equal that; "separate" must not, past the first facet.
TEST(Fda, ConcatenatedPositionsEqualADenseMaskPassWithDefaultPositions) {
  const auto m = load("mistral", "f32");
  FacetEncoderOptions options;
  options.facet_positions = llm::FacetPositions::kConcatenated;
  const FacetEncoder encoder(m.model, *m.tokenizer, load_prompt_set("long"), options);
  const torch::Tensor concatenated = encoder.encode_texts(kCaptions);
  const torch::Tensor separate = encode(m, "long", EncodeMode::Fda);
  const auto K = static_cast<int64_t>(encoder.facet_tokens().size());
  for (size_t c = 0; c < kCaptions.size(); ++c) {
    llm::TokenIds ids = encoder.tokenize(kCaptions[c]).prefix;
    const auto prefix_end = static_cast<int64_t>(ids.size());
    std::vector<int64_t> facet_end;  // one past each facet's last token
    for (const auto& f : encoder.facet_tokens()) {
      ids.insert(ids.end(), f.begin(), f.end());
      facet_end.push_back(static_cast<int64_t>(ids.size()));
    }
    const auto T = static_cast<int64_t>(ids.size());
    torch::Tensor mask = torch::ones({T, T}, torch::kBool).tril();
    for (int64_t k = 0; k < K; ++k) {
      const int64_t begin = k == 0 ? prefix_end : facet_end[k - 1];
      mask.slice(0, begin, facet_end[k]).slice(1, facet_end[k]).fill_(false);
      mask.slice(0, begin, facet_end[k]).slice(1, prefix_end, begin).fill_(false);
    }
    llm::ForwardInput input;
    input.input_ids = torch::tensor(ids, torch::kInt64).unsqueeze(0);
    input.attention_mask = mask.unsqueeze(0);  // positions left undefined: 0..T-1
    llm::ForwardRequest request;
    request.hidden_layers = {encoder.layer()};
    request.gather = (torch::tensor(facet_end, torch::kInt64) - 1).unsqueeze(0);
    const torch::Tensor dense = m.model.forward(input, request).hidden[0][0].to(torch::kFloat32);
    EXPECT_LT((concatenated[c] - dense).abs().max().item<float>(), 1e-5) << c;
    EXPECT_LT((separate[c][0] - dense[0]).abs().max().item<float>(), 1e-5) << c;  // facet 1: same positions
    EXPECT_GT((separate[c].slice(0, 1) - dense.slice(0, 1)).abs().max().item<float>(), 1e-3) << c;
  }
  options.mode = EncodeMode::FdaCache;
  EXPECT_TRUE(test::contains(
      test::error_of([&] { FacetEncoder(m.model, *m.tokenizer, load_prompt_set("long"), options); }),
      "need mode fda"));
}

TEST(Fda, DefaultLayerIsTheSecondToLastAndLayerIsChecked) {
  const auto m = load("llama", "f32");
  FacetEncoder encoder(m.model, *m.tokenizer, load_prompt_set("raw"));
  EXPECT_EQ(encoder.layer(), m.model.num_layers() - 1);
  FacetEncoderOptions options;
  options.layer = m.model.num_layers() + 1;
  EXPECT_THROW(FacetEncoder(m.model, *m.tokenizer, load_prompt_set("raw"), options), Error);
}

}  // namespace
}  // namespace flame::text
