// The CLIP baseline's text tower: config presets and their validation,
// CLIP-style tokenization with the SmolLM tokenizer (EOT, padding,
// truncation), and the OpenCLIP-shaped causal text transformer (names,
// parameter count, init, causality, output shape, a few steps of CLIP loss).
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <cmath>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "llm/tokenizer.h"
#include "test_helpers.h"
#include "text/clip_text_config.h"
#include "text/clip_text_tower.h"
#include "text/clip_tokenize.h"
#include "train/loss.h"
#include "util/config_files.h"
#include "util/error.h"
#include "util/file.h"
#include "vision/vit.h"

namespace flame::text {
namespace {

using test::contains;
using test::error_of;

const llm::Tokenizer& smollm() {
  static const std::unique_ptr<llm::Tokenizer> tokenizer = llm::Tokenizer::load(test::smollm_tokenizer_dir());
  return *tokenizer;
}

nlohmann::json micro_json() {
  return {{"name", "m"}, {"context_length", 16}, {"width", 32},
          {"heads", 2},  {"layers", 1},          {"embed_dim", 8}};
}

std::string config_error(const nlohmann::json& j) {
  return error_of([&] { clip_text_config_from_json(j, "text.json"); });
}

std::vector<std::string> captions() {
  return {"a dog runs on the beach.",
          "two cats sleep on a red sofa.",
          "a man rides a bicycle down a hill.",
          "children play football in a park.",
          "a bowl of soup with bread on a table.",
          "an old car parked in front of a house.",
          "a bird sits on a snowy branch.",
          "people walk across a busy street at night."};
}

TEST(ClipTextConfig, PresetsAreListedAndLoad) {
  EXPECT_EQ(list_clip_text_presets(),
            (std::vector<std::string>{"clip-text-b", "clip-text-micro", "clip-text-ti"}));
  const ClipTextConfig b = load_clip_text_config("clip-text-b");
  EXPECT_EQ(b.name, "clip-text-b");
  EXPECT_EQ(b.context_length, 77);
  EXPECT_EQ(b.width, 512);
  EXPECT_EQ(b.heads, 8);
  EXPECT_EQ(b.layers, 12);
  EXPECT_EQ(b.embed_dim, 512);
  EXPECT_EQ(b.mlp_width(), 2048);
  const ClipTextConfig m = load_clip_text_config("clip-text-micro");
  EXPECT_EQ(m.context_length, 77);
  EXPECT_EQ(m.width, 64);
  EXPECT_EQ(m.heads, 2);
  EXPECT_EQ(m.layers, 2);
  EXPECT_EQ(m.embed_dim, 64);
  // "smollm" names the shared SmolLM tokenizer.
  EXPECT_EQ(std::filesystem::weakly_canonical(m.tokenizer_path()),
            std::filesystem::weakly_canonical(test::smollm_tokenizer_dir()));
  EXPECT_EQ(llm::Tokenizer::load(m.tokenizer_path())->vocab_size(), smollm().vocab_size());
  ClipTextConfig rel = m;
  rel.tokenizer = "tokenizers/smollm/tokenizer.json";
  EXPECT_EQ(rel.tokenizer_path(), flame::shared_dir() / "tokenizers/smollm/tokenizer.json");
  rel.tokenizer = "/abs/tok.json";
  EXPECT_EQ(rel.tokenizer_path(), std::filesystem::path("/abs/tok.json"));
}

TEST(ClipTextConfig, LoadsAFileAndRoundTrips) {
  const auto dir = test::fresh_temp_dir();
  auto j = micro_json();
  j.erase("name");
  j["mlp_ratio"] = 2.5;
  j["tokenizer"] = "/x/tokenizer.json";
  write_json_file_atomic(dir / "my-text.json", j);
  const ClipTextConfig c = load_clip_text_config((dir / "my-text.json").string());
  EXPECT_EQ(c.name, "my-text");  // the file stem
  EXPECT_EQ(c.mlp_width(), 80);
  EXPECT_EQ(c.tokenizer, "/x/tokenizer.json");
  const ClipTextConfig back = clip_text_config_from_json(to_json(c), "round trip");
  EXPECT_EQ(to_json(back), to_json(c));
}

TEST(ClipTextConfig, ErrorsNameTheFileAndField) {
  auto with = [](const char* key, nlohmann::json value) {
    auto j = micro_json();
    j[key] = std::move(value);
    return config_error(j);
  };
  auto without = [](const char* key) {
    auto j = micro_json();
    j.erase(key);
    return config_error(j);
  };
  EXPECT_TRUE(contains(without("width"), "text.json: missing required field 'width'"));
  EXPECT_TRUE(contains(without("context_length"), "'context_length'"));
  EXPECT_TRUE(contains(without("embed_dim"), "'embed_dim'"));
  EXPECT_TRUE(contains(with("layers", "2"), "text.json: field 'layers' must be an integer"));
  EXPECT_TRUE(contains(with("heads", 0), "field 'heads' must be positive"));
  EXPECT_TRUE(contains(with("heads", 3), "field 'width' (32) must be a multiple of 'heads' (3)"));
  EXPECT_TRUE(contains(with("mlp_ratio", -1.0), "field 'mlp_ratio'"));
  EXPECT_TRUE(contains(with("tokenizer", 5), "field 'tokenizer' must be a string"));
  EXPECT_TRUE(contains(with("tokenizer", ""), "field 'tokenizer' must not be empty"));
  EXPECT_TRUE(contains(with("contxt_length", 77), "text.json: unknown field 'contxt_length'"));
  EXPECT_TRUE(contains(config_error(nlohmann::json::array()), "must be a JSON object"));
  EXPECT_EQ(config_error(micro_json()), "");

  const std::string unknown = error_of([] { load_clip_text_config("clip-text-xl"); });
  EXPECT_TRUE(contains(unknown, "unknown text tower preset 'clip-text-xl'")) << unknown;
  EXPECT_TRUE(contains(unknown, "clip-text-b, clip-text-micro, clip-text-ti")) << unknown;
  EXPECT_TRUE(contains(error_of([] { load_clip_text_config("/no/such/text.json"); }),
                       "'/no/such/text.json' does not exist"));
  const auto dir = test::fresh_temp_dir();
  auto bad = micro_json();
  bad["width"] = -4;
  write_json_file_atomic(dir / "bad.json", bad);
  const std::string e = error_of([&] { load_clip_text_config((dir / "bad.json").string()); });
  EXPECT_TRUE(contains(e, (dir / "bad.json").string() + ": field 'width' must be positive")) << e;
}

TEST(ClipTextTokenize, ShortCaptionIsEncodeThenEotThenPadding) {
  const llm::Tokenizer& tok = smollm();
  ASSERT_EQ(tok.eos_id(), 0);      // <|endoftext|>
  ASSERT_EQ(tok.pad_id(), 49152);  // [PAD]
  const std::string caption = "A dog runs on the beach.";
  const std::vector<int32_t> expected = tok.encode(caption, false);
  ASSERT_GT(expected.size(), 3u);
  ASSERT_EQ(tok.encode(caption, true), expected);  // SmolLM adds no BOS
  const ClipTokens t = clip_tokenize(tok, {caption}, 77);
  ASSERT_EQ(t.ids.sizes(), (std::vector<int64_t>{1, 77}));
  ASSERT_EQ(t.ids.scalar_type(), torch::kLong);
  const int64_t n = static_cast<int64_t>(expected.size());
  for (int64_t i = 0; i < n; ++i) EXPECT_EQ(t.ids[0][i].item<int64_t>(), expected[static_cast<size_t>(i)]);
  EXPECT_EQ(t.ids[0][n].item<int64_t>(), 0);
  EXPECT_TRUE(t.ids[0].slice(0, n + 1).eq(49152).all().item<bool>());
  EXPECT_EQ(t.eot_index[0].item<int64_t>(), n);
}

TEST(ClipTextTokenize, LongCaptionIsCutWithEotLast) {
  const llm::Tokenizer& tok = smollm();
  std::string caption;
  for (int i = 0; i < 200; ++i) caption += (i ? " " : "") + std::string(i % 2 ? "blue" : "house");
  const std::vector<int32_t> full = tok.encode(caption, false);
  ASSERT_GT(full.size(), 77u);
  const ClipTokens t = clip_tokenize(tok, {caption}, 77);
  ASSERT_EQ(t.ids.sizes(), (std::vector<int64_t>{1, 77}));
  for (int64_t i = 0; i < 76; ++i) EXPECT_EQ(t.ids[0][i].item<int64_t>(), full[static_cast<size_t>(i)]);
  EXPECT_EQ(t.ids[0][76].item<int64_t>(), 0);
  EXPECT_EQ(t.eot_index[0].item<int64_t>(), 76);
  // A context one longer than the caption keeps it whole; one shorter than that loses its last token.
  const ClipTokens edge = clip_tokenize(tok, {caption}, static_cast<int64_t>(full.size()) + 1);
  EXPECT_EQ(edge.eot_index[0].item<int64_t>(), static_cast<int64_t>(full.size()));
  const ClipTokens cut = clip_tokenize(tok, {caption}, static_cast<int64_t>(full.size()));
  EXPECT_EQ(cut.eot_index[0].item<int64_t>(), static_cast<int64_t>(full.size()) - 1);
}

TEST(ClipTextTokenize, BatchShapesAndErrors) {
  const llm::Tokenizer& tok = smollm();
  const ClipTokens t = clip_tokenize(tok, {"a cat.", "", "two dogs play in the snow."}, 12);
  ASSERT_EQ(t.ids.sizes(), (std::vector<int64_t>{3, 12}));
  ASSERT_EQ(t.eot_index.sizes(), (std::vector<int64_t>{3}));
  EXPECT_EQ(t.eot_index[1].item<int64_t>(), 0);  // an empty caption is its EOT alone
  for (int64_t r = 0; r < 3; ++r) EXPECT_EQ(t.ids[r][t.eot_index[r].item<int64_t>()].item<int64_t>(), 0);
  EXPECT_EQ(clip_tokenize(tok, {}, 77).ids.sizes(), (std::vector<int64_t>{0, 77}));
  EXPECT_TRUE(contains(error_of([&] { clip_tokenize(tok, {"x"}, 0); }), "context_length must be positive"));
  EXPECT_TRUE(contains(error_of([&] { clip_tokenize(tok, {"bad \xff byte"}, 77); }), "UTF-8"));
}

TEST(ClipTextAttention, MaskIsOptionalAndCausalMaskIsOpenClips) {
  const torch::Tensor m = vision::causal_mask(4);
  EXPECT_EQ(m.sizes(), (std::vector<int64_t>{4, 4}));
  EXPECT_TRUE(m.tril().eq(0).all().item<bool>());
  const torch::Tensor upper = torch::ones({4, 4}, torch::kBool).triu(1);
  EXPECT_TRUE(m.masked_select(upper).isneginf().all().item<bool>());
  torch::manual_seed(0);
  vision::ResidualAttentionBlock block(32, 4, 64);
  {
    torch::NoGradGuard no_grad;
    block->attn->in_proj_weight.normal_(0.0, 0.2);  // torch::empty until a tower initialises it
  }
  const torch::Tensor x = torch::randn({2, 5, 32});
  // An all-zero mask is no mask. Under the causal mask the first position sees
  // itself alone, and the last one sees all, as without a mask.
  EXPECT_TRUE(torch::equal(block(x), block(x, torch::Tensor())));
  EXPECT_TRUE(torch::allclose(block(x), block(x, torch::zeros({5, 5})), 1e-6, 1e-6));
  const torch::Tensor causal = block(x, vision::causal_mask(5));
  EXPECT_TRUE(torch::allclose(causal.select(1, 0), block(x.slice(1, 0, 1)).select(1, 0), 1e-5, 1e-5));
  EXPECT_FALSE(torch::allclose(causal.select(1, 0), block(x).select(1, 0), 1e-3, 1e-3));
  EXPECT_TRUE(torch::allclose(causal.select(1, 4), block(x).select(1, 4), 1e-5, 1e-5));
}

TEST(ClipTextTower, ParameterNamesAndCountFollowOpenClip) {
  const ClipTextConfig c = load_clip_text_config("clip-text-micro");
  ClipTextTower tower(c, 1000);
  std::set<std::string> names;
  for (const auto& p : tower->named_parameters()) names.insert(p.key());
  for (const char* name :
       {"token_embedding.weight", "positional_embedding", "transformer.resblocks.0.ln_1.weight",
        "transformer.resblocks.0.attn.in_proj_weight", "transformer.resblocks.0.attn.in_proj_bias",
        "transformer.resblocks.0.attn.out_proj.weight", "transformer.resblocks.1.mlp.c_fc.weight",
        "transformer.resblocks.1.mlp.c_proj.bias", "transformer.resblocks.1.ln_2.bias", "ln_final.weight",
        "ln_final.bias", "text_projection"}) {
    EXPECT_TRUE(names.count(name)) << name;
  }
  EXPECT_EQ(names.size(), 5u + 2 * 12u);         // 2 embeddings, ln_final (2), projection; 2 blocks of 12
  EXPECT_EQ(tower->named_buffers().size(), 0u);  // the causal mask is not state
  EXPECT_EQ(tower->positional_embedding.sizes(), (std::vector<int64_t>{77, 64}));
  EXPECT_EQ(tower->text_projection.sizes(), (std::vector<int64_t>{64, 64}));
  EXPECT_EQ(tower->parameter_count(), c.parameter_count(1000));

  // clip-text-b with SmolLM's 49152 tokens + [PAD]: OpenCLIP ViT-B/16's text
  // tower (63,428,096 with CLIP's 49408 tokens) less 255 token rows of 512.
  const ClipTextConfig b = load_clip_text_config("clip-text-b");
  EXPECT_EQ(b.parameter_count(49408), 63428096);
  EXPECT_EQ(b.parameter_count(49153), 63297536);
  EXPECT_EQ(smollm().vocab_size(), 49153);
  ClipTextTower big(b, smollm().vocab_size());
  EXPECT_EQ(big->parameter_count(), 63297536);
}

TEST(ClipTextTower, InitFollowsOpenClip) {
  torch::manual_seed(1);
  ClipTextConfig c = load_clip_text_config("clip-text-micro");
  ClipTextTower tower(c, 5000);
  auto near = [](const torch::Tensor& t, double std) {
    return std::abs(t.std().item<double>() - std) < 0.1 * std &&
           std::abs(t.mean().item<double>()) < 0.1 * std;
  };
  EXPECT_TRUE(near(tower->token_embedding->weight, 0.02));
  EXPECT_TRUE(near(tower->positional_embedding, 0.01));
  EXPECT_TRUE(near(tower->text_projection, std::pow(64.0, -0.5)));
  const auto block = tower->resblocks->ptr<vision::ResidualAttentionBlockImpl>(0);
  EXPECT_TRUE(near(block->attn->in_proj_weight, std::pow(64.0, -0.5)));
  EXPECT_TRUE(near(block->attn->out_proj->weight, std::pow(64.0, -0.5) * 0.5));
  EXPECT_TRUE(near(block->mlp->c_fc->weight, std::pow(128.0, -0.5)));
  EXPECT_TRUE(near(block->mlp->c_proj->weight, std::pow(64.0, -0.5) * 0.5));
  EXPECT_TRUE(block->attn->in_proj_bias.eq(0).all().item<bool>());
  EXPECT_TRUE(block->attn->out_proj->bias.eq(0).all().item<bool>());
}

TEST(ClipTextTower, IsCausal) {
  torch::manual_seed(2);
  const ClipTextConfig c = load_clip_text_config("clip-text-micro");
  ClipTextTower tower(c, smollm().vocab_size());
  tower->eval();
  torch::NoGradGuard no_grad;
  const ClipTokens t = clip_tokenize(smollm(), {"a dog runs on the beach.", "a red car."}, c.context_length);
  const torch::Tensor h = tower->hidden_states(t.ids);
  ASSERT_EQ(h.sizes(), (std::vector<int64_t>{2, 77, 64}));
  // Change every token after position p: positions <= p keep their state exactly.
  const int64_t p = 3;
  torch::Tensor changed = t.ids.clone();
  changed.slice(1, p + 1).random_(17, 40000);
  const torch::Tensor h2 = tower->hidden_states(changed);
  EXPECT_TRUE(torch::allclose(h.slice(1, 0, p + 1), h2.slice(1, 0, p + 1), 0.0, 1e-6));
  EXPECT_FALSE(torch::allclose(h.select(1, p + 1), h2.select(1, p + 1), 1e-3, 1e-3));
  // Whatever follows a caption's EOT (padding, or anything else) leaves its features alone.
  const torch::Tensor out = tower(t.ids, t.eot_index);
  // forward stops at the last EOT; the full 77 positions give the same features.
  const torch::Tensor full =
      torch::stack({h[0][t.eot_index[0].item<int64_t>()], h[1][t.eot_index[1].item<int64_t>()]})
          .matmul(tower->text_projection);
  EXPECT_TRUE(torch::allclose(out, full, 1e-5, 1e-5));
  torch::Tensor noisy = t.ids.clone();
  for (int64_t r = 0; r < 2; ++r) noisy[r].slice(0, t.eot_index[r].item<int64_t>() + 1).random_(17, 40000);
  EXPECT_TRUE(torch::allclose(out, tower(noisy, t.eot_index), 0.0, 1e-6));
  // A shorter context of the same rows gives the same features.
  const int64_t keep = t.eot_index.max().item<int64_t>() + 1;
  EXPECT_TRUE(torch::allclose(out, tower(t.ids.slice(1, 0, keep), t.eot_index), 1e-5, 1e-5));
}

TEST(ClipTextTower, OutputShapeDtypesAndErrors) {
  torch::manual_seed(3);
  const ClipTextConfig c = load_clip_text_config("clip-text-micro");
  ClipTextTower tower(c, smollm().vocab_size());
  tower->eval();
  torch::NoGradGuard no_grad;
  const ClipTokens t = clip_tokenize(smollm(), captions(), c.context_length);
  const torch::Tensor out = tower(t.ids, t.eot_index);
  EXPECT_EQ(out.sizes(), (std::vector<int64_t>{8, 64}));
  EXPECT_TRUE(out.isfinite().all().item<bool>());
  // Pooling takes the EOT row: the hidden state there times the projection.
  const torch::Tensor h = tower->hidden_states(t.ids);
  EXPECT_TRUE(torch::allclose(out[5], h[5][t.eot_index[5].item<int64_t>()].matmul(tower->text_projection),
                              1e-5, 1e-6));
  // bf16 weights (the mask keeps the scores in fp32) stay close to fp32.
  ClipTextTower half(c, smollm().vocab_size());
  half->eval();
  {
    auto src = tower->named_parameters();
    auto dst = half->named_parameters();
    for (const auto& p : src) dst[p.key()].copy_(p.value());
  }
  half->to(torch::kBFloat16);
  const torch::Tensor out_bf16 = half(t.ids, t.eot_index);
  EXPECT_EQ(out_bf16.scalar_type(), torch::kBFloat16);
  EXPECT_LT((out_bf16.to(torch::kFloat) - out).abs().max().item<double>(),
            0.05 * out.abs().max().item<double>());

  EXPECT_TRUE(
      contains(error_of([&] { tower(t.ids, t.eot_index.slice(0, 0, 3)); }), "expected eot_index [N]"));
  EXPECT_TRUE(contains(error_of([&] { tower(t.ids, t.eot_index + 77); }), "eot_index must lie in [0, 77)"));
  EXPECT_TRUE(contains(error_of([&] {
                         tower->hidden_states(torch::zeros({2, 78}, torch::kLong));
                       }),
                       "1 <= T <= 77"));
  EXPECT_TRUE(contains(error_of([&] { tower->hidden_states(torch::zeros({2, 5})); }), "integer token ids"));
}

TEST(ClipTextTower, ClipLossTrainingLowersTheLoss) {
  torch::manual_seed(4);
  const ClipTextConfig c = load_clip_text_config("clip-text-micro");
  ClipTextTower tower(c, smollm().vocab_size());
  tower->train();
  const ClipTokens t = clip_tokenize(smollm(), captions(), c.context_length);
  // Fixed random unit vectors stand in for the image features.
  const torch::Tensor images = torch::nn::functional::normalize(
      torch::randn({8, c.embed_dim}), torch::nn::functional::NormalizeFuncOptions().dim(-1));
  const torch::Tensor scale = torch::tensor(10.0);
  torch::optim::Adam opt(tower->parameters(), torch::optim::AdamOptions(3e-3));
  auto loss_now = [&] {
    const torch::Tensor text = torch::nn::functional::normalize(
        tower(t.ids, t.eot_index), torch::nn::functional::NormalizeFuncOptions().dim(-1));
    return train::multi_positive_infonce(images, text.unsqueeze(1), scale);
  };
  const double first = loss_now().item<double>();
  EXPECT_NEAR(first, std::log(8.0), 1.0);  // near chance at init
  for (int step = 0; step < 25; ++step) {
    opt.zero_grad();
    const torch::Tensor loss = loss_now();
    loss.backward();
    opt.step();
  }
  const double last = loss_now().item<double>();
  EXPECT_LT(last, 0.5 * first) << "first " << first << " last " << last;
}

}  // namespace
}  // namespace flame::text
