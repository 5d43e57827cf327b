// Transformer behaviour on tiny random checkpoints (f32, ~1e-5): KV-cache
// continuation, a shared prefix cache read by K continuations, the packed
// facet block mask, padding and batch composition, hidden-state numbering and
// early stop, greedy decoding, loading errors, zero-copy frozen weights, and
// bf16 against f32. The naive-reference checks are in test_transformer_reference.cpp.
#include <gtest/gtest.h>

#include <cmath>

#include "llm/attention.h"
#include "llm/batch.h"
#include "llm/cpu_kernels.h"
#include "llm/generate.h"
#include "llm/rms_norm.h"
#include "llm/rope.h"
#include "llm/weights.h"
#include "transformer_test_helpers.h"
#include "util/error.h"
#include "util/file.h"

namespace flame::llm {
namespace {

using test::concat;
using test::load_tiny;
using test::random_ids;
using test::relative_diff;
using test::single_pass;
using test::tiny_checkpoint;

constexpr double kTol = 1e-5;

TEST(TransformerCache, ContinuationEqualsFullPass) {
  for (const char* arch : {"llama", "qwen2", "mistral"}) {
    const Transformer model = load_tiny(arch);
    const auto layers = test::all_layers(model);
    const auto ids = random_ids(12, 200, 10);
    const auto full = single_pass(model, ids, layers);

    ForwardInput prefix;
    prefix.input_ids = torch::tensor(std::vector<int64_t>(ids.begin(), ids.begin() + 7)).unsqueeze(0);
    ForwardRequest want_cache;
    want_cache.cache = true;
    const KvCache cache = model.forward(prefix, want_cache).cache;
    ASSERT_EQ(cache.num_layers(), model.num_layers());
    ASSERT_EQ(cache.length(), 7);

    ForwardInput rest;
    rest.input_ids = torch::tensor(std::vector<int64_t>(ids.begin() + 7, ids.end())).unsqueeze(0);
    rest.past = &cache;
    ForwardRequest req;
    req.hidden_layers = layers;
    req.logits = true;
    req.cache = true;
    const ForwardOutput out = model.forward(rest, req);
    for (size_t i = 0; i < layers.size(); ++i) {
      EXPECT_LE(relative_diff(out.hidden[i].squeeze(0), full[i].narrow(0, 7, 5)), kTol) << arch << " layer " << i;
    }
    EXPECT_EQ(out.cache.length(), 12);
    // Logits are the (tied or untied) head applied to the final hidden state.
    const torch::Tensor expected_logits = torch::linear(full.back().narrow(0, 7, 5), model.lm_head());
    EXPECT_LE(relative_diff(out.logits.squeeze(0), expected_logits), kTol) << arch;
  }
}

TEST(TransformerCache, PaddedBatchContinuationEqualsFullPasses) {
  const Transformer model = load_tiny("llama");
  const std::vector<TokenIds> prefixes = {random_ids(5, 200, 11), random_ids(8, 200, 12)};
  const std::vector<TokenIds> rests = {random_ids(3, 200, 13), random_ids(4, 200, 14)};
  const TokenBatch pb = pad_right(prefixes), rb = pad_right(rests);
  ForwardInput prefix;
  prefix.input_ids = pb.input_ids;
  prefix.valid = pb.valid;
  ForwardRequest want_cache;
  want_cache.cache = true;
  const KvCache cache = model.forward(prefix, want_cache).cache;
  EXPECT_TRUE(torch::equal(cache.next_positions(), torch::tensor({5, 8}, torch::kInt64)));
  ForwardInput rest;
  rest.input_ids = rb.input_ids;
  rest.valid = rb.valid;
  rest.past = &cache;
  ForwardRequest req;
  req.hidden_layers = {1, model.num_layers()};
  const auto out = model.forward(rest, req);
  for (size_t b = 0; b < 2; ++b) {
    const auto full = single_pass(model, concat(prefixes[b], rests[b]), req.hidden_layers);
    const int64_t n = static_cast<int64_t>(rests[b].size()), p = static_cast<int64_t>(prefixes[b].size());
    for (size_t i = 0; i < full.size(); ++i) {
      EXPECT_LE(relative_diff(out.hidden[i][static_cast<int64_t>(b)].narrow(0, 0, n), full[i].narrow(0, p, n)), kTol)
          << "row " << b << " layer " << req.hidden_layers[i];
    }
  }
}

// B = 2 captions, padded prefix cache, K = 3 continuations each, gathered at
// their last tokens: equal to 6 separate full passes.
TEST(TransformerCache, SharedPrefixWithKContinuationsEqualsFullPasses) {
  for (const char* arch : {"llama", "qwen2"}) {
    const Transformer model = load_tiny(arch);
    const std::vector<TokenIds> prefixes = {random_ids(6, 200, 20), random_ids(9, 200, 21)};
    std::vector<TokenIds> suffixes;
    for (int64_t i = 0; i < 6; ++i) suffixes.push_back(random_ids(2 + i % 4, 200, 30 + static_cast<uint64_t>(i)));
    const TokenBatch pb = pad_right(prefixes);
    ForwardInput prefix;
    prefix.input_ids = pb.input_ids;
    prefix.valid = pb.valid;
    ForwardRequest want_cache;
    want_cache.cache = true;
    want_cache.cache_layers = 2;  // only what the continuations need
    const KvCache cache = model.forward(prefix, want_cache).cache;
    ASSERT_EQ(cache.num_layers(), 2);

    const TokenBatch sb = pad_right(suffixes);
    ForwardInput cont;
    cont.input_ids = sb.input_ids;
    cont.valid = sb.valid;
    cont.past = &cache;
    cont.rows_per_past = 3;
    ForwardRequest req;
    req.hidden_layers = {2, 1};
    req.gather = sb.last_index;
    const auto shared = model.forward(cont, req);
    ASSERT_EQ(shared.hidden[0].sizes(), (std::vector<int64_t>{6, 1, model.config().hidden_size}));

    // The same mapping as past_rows reads copied cache rows.
    ForwardInput by_rows = cont;
    by_rows.rows_per_past = 1;
    by_rows.past_rows = torch::tensor({0, 0, 0, 1, 1, 1}, torch::kInt64);
    const auto by_rows_out = model.forward(by_rows, req);
    // rows_per_past must cover the batch, and excludes past_rows.
    by_rows.rows_per_past = 3;
    EXPECT_THROW(model.forward(by_rows, req), Error);
    ForwardInput too_few = cont;
    too_few.rows_per_past = 2;
    EXPECT_THROW(model.forward(too_few, req), Error);

    // Any other row mapping (here reversed) goes through copied cache rows.
    ForwardInput reversed = cont;
    reversed.rows_per_past = 1;
    reversed.past_rows = torch::tensor({1, 1, 1, 0, 0, 0}, torch::kInt64);
    std::vector<TokenIds> swapped(suffixes.begin() + 3, suffixes.end());
    swapped.insert(swapped.end(), suffixes.begin(), suffixes.begin() + 3);
    const TokenBatch swb = pad_right(swapped);
    reversed.input_ids = swb.input_ids;
    reversed.valid = swb.valid;
    req.gather = swb.last_index;
    const auto copied = model.forward(reversed, req);

    for (int64_t r = 0; r < 6; ++r) {
      const auto ids = concat(prefixes[static_cast<size_t>(r / 3)], suffixes[static_cast<size_t>(r)]);
      const auto full = single_pass(model, ids, {2, 1});
      const int64_t last = static_cast<int64_t>(ids.size()) - 1;
      const int64_t swapped_row = (r + 3) % 6;
      for (size_t i = 0; i < 2; ++i) {
        EXPECT_LE(relative_diff(shared.hidden[i][r][0], full[i][last]), kTol) << arch << " row " << r;
        EXPECT_LE(relative_diff(by_rows_out.hidden[i][r][0], full[i][last]), kTol) << arch << " row " << r;
        EXPECT_LE(relative_diff(copied.hidden[i][swapped_row][0], full[i][last]), kTol) << arch << " row " << r;
      }
    }
  }
}

TEST(TransformerFacets, PackedBlockMaskEqualsSeparatePasses) {
  const Transformer model = load_tiny("mistral");
  const std::vector<TokenIds> prefixes = {random_ids(4, 200, 40), random_ids(7, 200, 41)};
  const std::vector<std::vector<TokenIds>> facets = {
      {random_ids(3, 200, 42), random_ids(1, 200, 43), random_ids(5, 200, 44)},
      {random_ids(2, 200, 45), random_ids(4, 200, 46), random_ids(2, 200, 47)}};
  const FacetPacking packed = pack_facets(prefixes, facets);
  ForwardInput in;
  in.input_ids = packed.input_ids;
  in.valid = packed.valid;
  in.positions = packed.positions;
  in.attention_mask = packed.attention_mask;
  ForwardRequest req;
  req.hidden_layers = {1, 2};
  req.gather = packed.facet_last;
  const auto out = model.forward(in, req);
  ASSERT_EQ(out.hidden[0].sizes(), (std::vector<int64_t>{2, 3, model.config().hidden_size}));
  for (int64_t b = 0; b < 2; ++b) {
    for (int64_t f = 0; f < 3; ++f) {
      const auto ids = concat(prefixes[static_cast<size_t>(b)], facets[static_cast<size_t>(b)][static_cast<size_t>(f)]);
      const auto full = single_pass(model, ids, {1, 2});
      const int64_t last = static_cast<int64_t>(ids.size()) - 1;
      for (size_t i = 0; i < 2; ++i) {
        EXPECT_LE(relative_diff(out.hidden[i][b][f], full[i][last]), kTol) << "caption " << b << " facet " << f;
      }
    }
  }
}

TEST(TransformerFacets, PackingLayout) {
  const FacetPacking p = pack_facets({{10, 11}}, {{{20, 21}, {30}}}, /*pad_id=*/0);
  EXPECT_TRUE(torch::equal(p.input_ids, torch::tensor({{10, 11, 20, 21, 30}}, torch::kInt64)));
  EXPECT_TRUE(torch::equal(p.positions, torch::tensor({{0, 1, 2, 3, 2}}, torch::kInt64)));
  EXPECT_TRUE(torch::equal(p.facet_last, torch::tensor({{3, 4}}, torch::kInt64)));
  const auto expected = torch::tensor({{1, 0, 0, 0, 0},  //
                                       {1, 1, 0, 0, 0},
                                       {1, 1, 1, 0, 0},
                                       {1, 1, 1, 1, 0},
                                       {1, 1, 0, 0, 1}}, torch::kInt64).to(torch::kBool);
  EXPECT_TRUE(torch::equal(p.attention_mask[0], expected));
  EXPECT_THROW(pack_facets({{1}, {2}}, {{{3}}, {{4}, {5}}}), Error);  // unequal facet counts
}

TEST(TransformerBatch, PaddingAndCompositionDoNotChangeStates) {
  const Transformer model = load_tiny("qwen2");
  const std::vector<TokenIds> seqs = {random_ids(3, 200, 50), random_ids(9, 200, 51), random_ids(6, 200, 52)};
  const auto layers = test::all_layers(model);
  std::vector<std::vector<torch::Tensor>> alone;
  for (const auto& s : seqs) alone.push_back(single_pass(model, s, layers));
  for (const std::vector<size_t>& order : {std::vector<size_t>{0, 1, 2}, {2, 0, 1}, {0, 2}, {1}}) {
    std::vector<TokenIds> batch_seqs;
    for (size_t i : order) batch_seqs.push_back(seqs[i]);
    const TokenBatch batch = pad_right(batch_seqs, /*pad_id=*/0, /*min_length=*/11);  // extra padding too
    ForwardInput in;
    in.input_ids = batch.input_ids;
    in.valid = batch.valid;
    ForwardRequest req;
    req.hidden_layers = layers;
    const auto out = model.forward(in, req);
    for (size_t r = 0; r < order.size(); ++r) {
      const auto n = static_cast<int64_t>(seqs[order[r]].size());
      for (size_t i = 0; i < layers.size(); ++i) {
        EXPECT_LE(relative_diff(out.hidden[i][static_cast<int64_t>(r)].narrow(0, 0, n), alone[order[r]][i]), kTol)
            << "sequence " << order[r] << " at row " << r << " layer " << i;
      }
    }
  }
}

TEST(TransformerHidden, NumberingGatherAndEarlyStop) {
  const Transformer model = load_tiny("llama");
  const int64_t L = model.num_layers();
  const auto ids = random_ids(8, 200, 60);
  const auto all = single_pass(model, ids, test::all_layers(model));
  // 0 = embeddings.
  const torch::Tensor embed = model.embed_tokens().index_select(0, torch::tensor(ids));
  EXPECT_TRUE(torch::equal(all[0], embed));
  // Gathering a list of positions returns exactly those rows; order as requested.
  ForwardInput in;
  in.input_ids = torch::tensor(ids).unsqueeze(0);
  ForwardRequest req;
  req.hidden_layers = {L, 1};
  req.gather = torch::tensor({{7, 2, 2}}, torch::kInt64);
  const auto out = model.forward(in, req);
  EXPECT_TRUE(torch::equal(out.hidden[0][0], all[static_cast<size_t>(L)].index_select(0, req.gather[0])));
  EXPECT_TRUE(torch::equal(out.hidden[1][0], all[1].index_select(0, req.gather[0])));
  EXPECT_FALSE(out.logits.defined());

  // Early stop: poison the last layer; states before it stay finite and equal.
  const auto src = tiny_checkpoint("llama");
  const WeightFiles files(src);
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  const std::string last_layer = "model.layers." + std::to_string(L - 1) + ".";
  for (const auto& name : files.names()) {
    torch::Tensor t = files.get(name, torch::kFloat32, torch::kCPU).clone();
    if (name.rfind(last_layer, 0) == 0) t.fill_(std::nan(""));
    tensors.emplace_back(name, t);
  }
  const auto dir = test::fresh_temp_dir();
  write_checkpoint_weights(dir, tensors);
  std::filesystem::copy_file(src / "config.json", dir / "config.json");
  TransformerOptions options;
  options.dtype = torch::kFloat32;
  const Transformer poisoned = Transformer::load(dir, options);
  const auto early = single_pass(poisoned, ids, {L - 1});
  EXPECT_TRUE(torch::equal(early[0], all[static_cast<size_t>(L - 1)]));
  EXPECT_TRUE(single_pass(poisoned, ids, {L})[0].isnan().any().item<bool>());
}

TEST(TransformerGenerate, GreedyIsDeterministicAndMatchesUncachedArgmax) {
  const Transformer model = load_tiny("qwen2");
  const auto prompt = random_ids(5, 200, 70);
  GenerateOptions options;
  options.max_new_tokens = 8;
  const TokenIds a = greedy_generate(model, prompt, options);
  const TokenIds b = greedy_generate(model, prompt, options);
  ASSERT_EQ(a.size(), 8u);
  EXPECT_EQ(a, b);
  TokenIds ids = prompt;
  for (int64_t step = 0; step < 8; ++step) {  // no cache: the whole sequence every step
    ForwardInput in;
    in.input_ids = torch::tensor(ids).unsqueeze(0);
    ForwardRequest req;
    req.logits = true;
    const auto out = model.forward(in, req);
    ids.push_back(out.logits[0][static_cast<int64_t>(ids.size()) - 1].argmax().item<int64_t>());
  }
  EXPECT_EQ(a, TokenIds(ids.begin() + 5, ids.end()));
  options.stop_ids = {a[2]};
  EXPECT_EQ(greedy_generate(model, prompt, options), TokenIds(a.begin(), a.begin() + 3));
}

std::string load_error(const std::filesystem::path& dir) {
  try {
    Transformer::load(dir);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(TransformerLoad, MissingOrMisshapedTensorIsNamed) {
  const auto src = tiny_checkpoint("qwen2");
  const WeightFiles files(src);
  for (const std::string broken : {"model.layers.1.self_attn.k_proj.bias", "model.layers.0.mlp.up_proj.weight"}) {
    for (const bool remove : {true, false}) {
      std::vector<std::pair<std::string, torch::Tensor>> tensors;
      for (const auto& name : files.names()) {
        torch::Tensor t = files.get(name, torch::kFloat32, torch::kCPU);
        if (name == broken) {
          if (remove) continue;
          t = t.narrow(0, 0, t.size(0) - 1);
        }
        tensors.emplace_back(name, t);
      }
      const auto dir = test::fresh_temp_dir(remove ? "-missing" : "-shape");
      write_checkpoint_weights(dir, tensors);
      std::filesystem::copy_file(src / "config.json", dir / "config.json");
      const std::string message = load_error(dir);
      EXPECT_NE(message.find(broken), std::string::npos) << message;
      if (!remove) EXPECT_NE(message.find("expected ["), std::string::npos) << message;
    }
  }
}

TEST(TransformerLoad, WeightsAreFrozenAndZeroCopy) {
  const auto dir = tiny_checkpoint("llama", "bf16");
  const WeightFiles files(dir);
  const auto& mapped = files.files().front()->mapping();
  const auto* begin = static_cast<const uint8_t*>(mapped->data());
  const auto* end = begin + mapped->size();
  auto in_map = [&](const torch::Tensor& t) {
    const auto* p = static_cast<const uint8_t*>(t.data_ptr());
    return p >= begin && p + t.nbytes() <= end;
  };
  TransformerOptions options;  // bf16 on the CPU = the stored dtype: nothing is copied
  const Transformer model = Transformer::load(files, load_llm_config(dir), options);
  EXPECT_TRUE(in_map(model.embed_tokens()));
  for (const auto& l : model.layers()) {
    EXPECT_TRUE(in_map(l.q) && in_map(l.k) && in_map(l.v) && in_map(l.o) && in_map(l.down));
    EXPECT_TRUE(in_map(l.input_norm) && in_map(l.post_norm));
    EXPECT_TRUE(in_map(l.gate_up));  // gate and up are adjacent in the file: one matrix, viewed
    for (const auto* t : {&l.q, &l.o, &l.gate_up, &l.down}) EXPECT_FALSE(t->requires_grad());
  }
  const auto ids = random_ids(6, 200, 80);
  EXPECT_FALSE(single_pass(model, ids, {1})[0].requires_grad());
  // Converted to f32 anyway, q/k/v are fused at load; the states do not change.
  options.dtype = torch::kFloat32;
  const Transformer fused = Transformer::load(files, load_llm_config(dir), options);
  options.fuse_projections = false;
  const Transformer unfused = Transformer::load(files, load_llm_config(dir), options);
  EXPECT_TRUE(fused.layers()[0].qkv.defined() && fused.layers()[0].gate_up.defined());
  EXPECT_TRUE(unfused.layers()[0].q.defined() && !unfused.layers()[0].qkv.defined());
  EXPECT_LE(relative_diff(single_pass(fused, ids, {3})[0], single_pass(unfused, ids, {3})[0]), 1e-6);
}

TEST(TransformerPrecision, Bf16AgreesWithF32ByCosine) {
  for (const char* arch : {"llama", "qwen2", "mistral"}) {
    const auto ids = random_ids(16, 200, 90);
    const Transformer bf16 = load_tiny(arch, "bf16", torch::kBFloat16);
    const Transformer f32 = load_tiny(arch, "bf16", torch::kFloat32);  // same weights, computed in f32
    const auto a = single_pass(bf16, ids, test::all_layers(bf16));
    const auto b = single_pass(f32, ids, test::all_layers(f32));
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_EQ(a[i].scalar_type(), torch::kBFloat16);
      const auto cos = torch::cosine_similarity(a[i].to(torch::kFloat32), b[i], -1);
      EXPECT_GT(cos.min().item<double>(), 0.995) << arch << " layer " << i;
    }
  }
}

TEST(TransformerInputs, BadShapesAndWindowsAreRefused) {
  const Transformer model = load_tiny("llama");
  ForwardInput in;
  in.input_ids = torch::tensor({{5, 6, 7}}, torch::kInt64);
  ForwardRequest req;
  req.hidden_layers = {model.num_layers() + 1};
  EXPECT_THROW(model.forward(in, req), Error);
  req.hidden_layers = {1};
  in.attention_mask = torch::ones({1, 3, 4}, torch::kBool);
  EXPECT_THROW(model.forward(in, req), Error);
  in.attention_mask = torch::Tensor();
  in.valid = torch::ones({1, 2}, torch::kBool);
  EXPECT_THROW(model.forward(in, req), Error);
  in.valid = torch::Tensor();
  req.gather = torch::tensor({{3}}, torch::kInt64);
  EXPECT_THROW(model.forward(in, req), Error);
  // A cache with fewer layers than the pass needs.
  ForwardRequest want_cache;
  want_cache.cache = true;
  want_cache.cache_layers = 1;
  const KvCache cache = model.forward(in, want_cache).cache;
  in.past = &cache;
  req.gather = torch::Tensor();
  req.hidden_layers = {2};
  EXPECT_THROW(model.forward(in, req), Error);
}

// Query blocks skip the keys a block cannot see; the result must not change.
TEST(TransformerAttention, QueryBlocksEqualOneBlock) {
  torch::manual_seed(2);
  const int64_t groups = 2, K = 3, B = groups * K, Hq = 4, Hkv = 2, T = 37, P = 5, D = 8;
  AttentionInputs in;
  in.q = torch::randn({B, Hq, T, D});
  in.k = torch::randn({B, Hkv, T, D});
  in.v = torch::randn({B, Hkv, T, D});
  in.past_k = torch::randn({groups, Hkv, P, D});
  in.past_v = torch::randn({groups, Hkv, P, D});
  in.rows_per_past = K;
  torch::Tensor valid = torch::ones({B, T}, torch::kBool);
  valid[1].narrow(0, 30, 7).fill_(false);  // a padded row
  const torch::Tensor past_valid = torch::ones({B, P}, torch::kBool);
  const torch::Tensor positions = torch::arange(P, P + T).expand({B, T});
  const torch::Tensor key_positions = torch::arange(0, P + T).expand({B, P + T});
  in.allowed = build_attention_mask(valid, past_valid, {}, positions, key_positions, std::nullopt);
  const torch::Tensor whole = grouped_attention(in);
  in.blocks = plan_query_blocks(in.allowed, P, /*block_size=*/8);
  ASSERT_EQ(in.blocks.size(), 5u);
  EXPECT_EQ(in.blocks.front().new_keys, in.blocks.front().size);  // causal: a block sees up to its end
  EXPECT_EQ(in.blocks.back().new_keys, T);
  const torch::Tensor blocked = grouped_attention(in);
  // Padding queries are unspecified; compare the real ones.
  const torch::Tensor real = valid.unsqueeze(-1).expand_as(whole);
  EXPECT_LE(relative_diff(blocked.masked_select(real), whole.masked_select(real)), 1e-6);
  in.chunk_elements = 1;  // one past row (K query rows) per chunk
  EXPECT_LE(relative_diff(grouped_attention(in).masked_select(real), whole.masked_select(real)), 1e-6);
}

// Longer than one query block (128): a full pass equals the same sequence fed
// in three cached pieces.
TEST(TransformerCache, LongSequenceInPiecesEqualsFullPass) {
  const Transformer model = load_tiny("llama");
  const auto ids = random_ids(300, 200, 15);
  const auto full = single_pass(model, ids, {model.num_layers()});
  KvCache cache;
  std::vector<torch::Tensor> pieces;
  for (const auto& [begin, end] : std::vector<std::pair<int64_t, int64_t>>{{0, 140}, {140, 150}, {150, 300}}) {
    ForwardInput in;
    in.input_ids = torch::tensor(std::vector<int64_t>(ids.begin() + begin, ids.begin() + end)).unsqueeze(0);
    in.past = cache.empty() ? nullptr : &cache;
    ForwardRequest req;
    req.hidden_layers = {model.num_layers()};
    req.cache = true;
    auto out = model.forward(in, req);
    pieces.push_back(out.hidden[0].squeeze(0));
    cache = std::move(out.cache);
  }
  EXPECT_LE(relative_diff(torch::cat(pieces), full[0]), kTol);
}

// Turns the AVX-512 kernels off for a scope (the tensor-op fallback).
struct WithoutCpuKernels {
  WithoutCpuKernels() { set_cpu_kernels_enabled(false); }
  ~WithoutCpuKernels() { set_cpu_kernels_enabled(true); }
};

TEST(TransformerKernels, SiluMulMatchesTensorOps) {
  if (!cpu_kernels_available()) GTEST_SKIP() << "no AVX-512 on this CPU: the fallback is the tensor ops";
  torch::manual_seed(3);
  const torch::Tensor gu = 4 * torch::randn({37, 2 * 53});  // odd width: masked tails
  for (const auto dtype : {torch::kFloat32, torch::kBFloat16}) {
    const torch::Tensor x = gu.to(dtype);
    const torch::Tensor gate = x.narrow(1, 0, 53), up = x.narrow(1, 53, 53);
    const torch::Tensor expected = torch::silu(gate) * up;
    const torch::Tensor actual = silu_mul(gate, up);
    ASSERT_EQ(actual.scalar_type(), dtype);
    if (dtype == torch::kFloat32) {
      EXPECT_LE(relative_diff(actual, expected), 1e-6);
    } else {
      // exp differs from Sleef by ~1 ulp of fp32: rarely one bf16 rounding step apart.
      const torch::Tensor ulps = (actual.to(torch::kFloat32) - expected.to(torch::kFloat32)).abs() /
                                 expected.to(torch::kFloat32).abs().clamp_min(1e-3);
      EXPECT_LE(ulps.max().item<double>(), 2.0 / 128);
      // Against the fp32 truth, the kernel is as accurate as torch's own bf16 ops.
      const torch::Tensor g32 = gate.to(torch::kFloat32), u32 = up.to(torch::kFloat32);
      const torch::Tensor truth = torch::silu(g32) * u32;
      const double kernel_error = (actual.to(torch::kFloat32) - truth).abs().mean().item<double>();
      const double torch_error = (expected.to(torch::kFloat32) - truth).abs().mean().item<double>();
      EXPECT_LE(kernel_error, 1.25 * torch_error);
    }
  }
}

TEST(TransformerKernels, MaskedSoftmaxMatchesTensorOps) {
  torch::manual_seed(4);
  const torch::Tensor scores = 5 * torch::randn({2, 3, 7, 45});
  torch::Tensor allowed = torch::rand({2, 7, 45}) > 0.3;
  allowed[1][4].fill_(false);  // a padding query: all zeros
  torch::Tensor expected = scores.clone();
  {
    WithoutCpuKernels off;
    masked_softmax_(expected, allowed);
  }
  torch::Tensor actual = scores.clone();
  masked_softmax_(actual, allowed);
  EXPECT_LE(relative_diff(actual, expected), 1e-6);
  EXPECT_TRUE(actual.masked_select(allowed.logical_not().unsqueeze(1).expand_as(actual)).eq(0).all().item<bool>());
  EXPECT_NEAR(actual[0][1][2].sum().item<double>(), 1.0, 1e-6);
  EXPECT_EQ(actual[1][2][4].abs().sum().item<double>(), 0.0);
}

TEST(TransformerKernels, ModelStatesWithAndWithoutKernelsAgree) {
  for (const char* arch : {"llama", "qwen2"}) {
    const Transformer model = load_tiny(arch);
    const TokenBatch batch = pad_right({random_ids(9, 200, 16), random_ids(4, 200, 17)});
    ForwardInput in;
    in.input_ids = batch.input_ids;
    in.valid = batch.valid;
    ForwardRequest req;
    req.hidden_layers = {1, model.num_layers()};
    req.gather = batch.last_index;
    const auto with = model.forward(in, req);
    WithoutCpuKernels off;
    const auto without = model.forward(in, req);
    for (size_t i = 0; i < 2; ++i) EXPECT_LE(relative_diff(with.hidden[i], without.hidden[i]), kTol) << arch;
  }
}

TEST(TransformerNorm, KernelFollowsHfArithmetic) {
  torch::manual_seed(1);
  for (const auto dtype : {torch::kFloat32, torch::kBFloat16}) {
    const torch::Tensor x = (3 * torch::randn({5, 7, 83})).to(dtype);  // odd width: the kernel's tail loop
    const torch::Tensor w = (1 + 0.1 * torch::randn({83})).to(dtype);
    // HF LlamaRMSNorm.forward, op for op.
    const torch::Tensor x32 = x.to(torch::kFloat32);
    const torch::Tensor expected = w * (x32 * torch::rsqrt(x32.pow(2).mean(-1, true) + 1e-5)).to(dtype);
    const torch::Tensor actual = rms_norm(x, w, 1e-5);
    EXPECT_EQ(actual.scalar_type(), dtype);
    // f32: summation order only; bf16: at most one rounding step apart.
    const double tol = dtype == torch::kFloat32 ? 1e-6 : 1.0 / 64;
    EXPECT_LE(relative_diff(actual, expected), tol);
    EXPECT_LE(relative_diff(rms_norm(x.transpose(0, 1), w, 1e-5), expected.transpose(0, 1)), tol);
  }
}

// RoPE against closed forms written from the HF definitions.
double llama3_inv_freq(double inv_freq, const RopeScaling& s) {
  const double wavelen = 2 * M_PI / inv_freq;
  const double low_wavelen = s.original_max_position_embeddings / s.low_freq_factor;
  const double high_wavelen = s.original_max_position_embeddings / s.high_freq_factor;
  if (wavelen < high_wavelen) return inv_freq;           // high frequency: kept
  if (wavelen > low_wavelen) return inv_freq / s.factor;  // low frequency: interpolated
  const double smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor) /
                        (s.high_freq_factor - s.low_freq_factor);
  return (1 - smooth) * inv_freq / s.factor + smooth * inv_freq;
}

TEST(TransformerRope, MatchesClosedForm) {
  const int64_t D = 64;
  const double theta = 500000.0;
  RopeScaling none, linear, llama3;
  linear.type = RopeScaling::Type::Linear;
  linear.factor = 4.0;
  llama3.type = RopeScaling::Type::Llama3;
  llama3.factor = 8.0;
  llama3.low_freq_factor = 1.0;
  llama3.high_freq_factor = 4.0;
  llama3.original_max_position_embeddings = 8192;
  int64_t kept = 0, scaled = 0, smoothed = 0;
  for (const RopeScaling* s : {&none, &linear, &llama3}) {
    const torch::Tensor inv = rope_inverse_frequencies(D, theta, *s);
    ASSERT_EQ(inv.size(0), D / 2);
    for (int64_t i = 0; i < D / 2; ++i) {
      const double base = 1.0 / std::pow(theta, 2.0 * static_cast<double>(i) / D);
      double expected = base;
      if (s->type == RopeScaling::Type::Linear) expected = base / s->factor;
      if (s->type == RopeScaling::Type::Llama3) {
        expected = llama3_inv_freq(base, *s);
        if (expected == base) ++kept;
        else if (expected == base / s->factor) ++scaled;
        else ++smoothed;
      }
      EXPECT_NEAR(inv[i].item<double>() / expected, 1.0, 2e-6) << "i=" << i;
    }
  }
  EXPECT_GT(kept, 0);  // the chosen shape exercises all three llama3 bands
  EXPECT_GT(scaled, 0);
  EXPECT_GT(smoothed, 0);

  // Rotation of a head vector at a few positions: pairs (i, i + D/2) rotate by pos * inv_freq[i].
  const RotaryEmbedding rope(D, theta, none, torch::kCPU);
  torch::manual_seed(0);
  const torch::Tensor x = torch::randn({1, 1, 4, D});  // [B, heads, T, D]
  const torch::Tensor positions = torch::tensor({{0, 1, 17, 1000}}, torch::kInt64);
  const torch::Tensor out = apply_rope(x, rope.tables(positions, torch::kFloat32));
  for (int64_t t = 0; t < 4; ++t) {
    const double pos = static_cast<double>(positions[0][t].item<int64_t>());
    const double tol = 1e-5 * (1 + pos / 10);  // angles are float32, as in HF
    for (int64_t i = 0; i < D / 2; ++i) {
      const double angle = pos / std::pow(theta, 2.0 * static_cast<double>(i) / D);
      const double x1 = x[0][0][t][i].item<double>(), x2 = x[0][0][t][i + D / 2].item<double>();
      EXPECT_NEAR(out[0][0][t][i].item<double>(), x1 * std::cos(angle) - x2 * std::sin(angle), tol);
      EXPECT_NEAR(out[0][0][t][i + D / 2].item<double>(), x2 * std::cos(angle) + x1 * std::sin(angle), tol);
    }
  }
}

}  // namespace
}  // namespace flame::llm
