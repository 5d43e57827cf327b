// The Transformer against an independent, deliberately naive reference: one
// sequence, double precision, explicit loops for RoPE, attention and the
// sliding window, weights read straight from the checkpoint. Covers Llama
// (GQA, tied head), Qwen2 (q/k/v biases, untied) and Mistral (head_dim !=
// hidden / heads, sliding window), plus GQA == MHA with repeated K/V heads.
#include <gtest/gtest.h>

#include <cmath>
#include <optional>

#include "llm/config.h"
#include "llm/weights.h"
#include "transformer_test_helpers.h"
#include "util/file.h"

namespace flame::llm {
namespace {

using test::load_tiny;
using test::random_ids;
using test::relative_diff;
using test::tiny_checkpoint;

// Hidden states 0..L of one sequence, [T, hidden] each, in float64.
std::vector<torch::Tensor> naive_forward(const std::filesystem::path& dir, const std::vector<int64_t>& ids) {
  const LlmConfig c = load_llm_config(dir);
  const WeightFiles files(dir);
  auto w = [&](const std::string& name) { return files.get(name, torch::kFloat64, torch::kCPU).clone(); };
  auto has = [&](const std::string& name) { return files.contains(name); };
  const auto T = static_cast<int64_t>(ids.size());
  const int64_t H = c.hidden_size, D = c.head_dim, Hq = c.num_attention_heads, Hkv = c.num_key_value_heads;

  auto rms = [&](const torch::Tensor& x, const torch::Tensor& weight) {
    return weight * x / torch::sqrt((x * x).mean() + c.rms_norm_eps);
  };
  auto rotate = [&](torch::Tensor v, int64_t pos) {  // v: [D], one head
    auto a = v.accessor<double, 1>();
    for (int64_t i = 0; i < D / 2; ++i) {
      const double freq = 1.0 / std::pow(c.rope_theta, 2.0 * static_cast<double>(i) / static_cast<double>(D));
      const double angle = static_cast<double>(pos) * freq;
      const double x1 = a[i], x2 = a[i + D / 2];
      a[i] = x1 * std::cos(angle) - x2 * std::sin(angle);
      a[i + D / 2] = x2 * std::cos(angle) + x1 * std::sin(angle);
    }
    return v;
  };

  const torch::Tensor embed = w("model.embed_tokens.weight");
  std::vector<torch::Tensor> x(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) x[static_cast<size_t>(t)] = embed[ids[static_cast<size_t>(t)]].clone();
  std::vector<torch::Tensor> states;
  states.push_back(torch::stack(x));
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    auto proj = [&](const std::string& name, const torch::Tensor& in) {
      torch::Tensor y = torch::mv(w(p + name + ".weight"), in);
      if (has(p + name + ".bias")) y = y + w(p + name + ".bias");
      return y;
    };
    std::vector<torch::Tensor> q(static_cast<size_t>(T)), k(static_cast<size_t>(T)), v(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t) {
      const auto ti = static_cast<size_t>(t);
      const torch::Tensor h = rms(x[ti], w(p + "input_layernorm.weight"));
      q[ti] = proj("self_attn.q_proj", h).view({Hq, D}).clone();
      k[ti] = proj("self_attn.k_proj", h).view({Hkv, D}).clone();
      v[ti] = proj("self_attn.v_proj", h).view({Hkv, D});
      for (int64_t head = 0; head < Hq; ++head) q[ti][head] = rotate(q[ti][head].clone(), t);
      for (int64_t head = 0; head < Hkv; ++head) k[ti][head] = rotate(k[ti][head].clone(), t);
    }
    for (int64_t t = 0; t < T; ++t) {
      torch::Tensor attn = torch::zeros({Hq, D}, torch::kFloat64);
      for (int64_t head = 0; head < Hq; ++head) {
        const int64_t kv_head = head / (Hq / Hkv);
        std::vector<double> scores;
        int64_t first = 0;
        if (c.sliding_window) first = std::max<int64_t>(0, t - *c.sliding_window + 1);
        for (int64_t s = first; s <= t; ++s) {
          scores.push_back(torch::dot(q[static_cast<size_t>(t)][head], k[static_cast<size_t>(s)][kv_head]).item<double>() /
                           std::sqrt(static_cast<double>(D)));
        }
        const double top = *std::max_element(scores.begin(), scores.end());
        double total = 0;
        for (double& s : scores) total += (s = std::exp(s - top));
        for (int64_t s = first; s <= t; ++s) {
          attn[head] += scores[static_cast<size_t>(s - first)] / total * v[static_cast<size_t>(s)][kv_head];
        }
      }
      const auto ti = static_cast<size_t>(t);
      x[ti] = x[ti] + proj("self_attn.o_proj", attn.view({Hq * D}));
      const torch::Tensor h = rms(x[ti], w(p + "post_attention_layernorm.weight"));
      const torch::Tensor gate = proj("mlp.gate_proj", h);
      x[ti] = x[ti] + proj("mlp.down_proj", gate / (1 + torch::exp(-gate)) * proj("mlp.up_proj", h));
    }
    states.push_back(torch::stack(x));
  }
  // HF's last hidden state is after the final norm.
  for (int64_t t = 0; t < T; ++t) x[static_cast<size_t>(t)] = rms(x[static_cast<size_t>(t)], w("model.norm.weight"));
  states.back() = torch::stack(x);
  (void)H;
  return states;
}

void expect_matches_reference(const std::filesystem::path& dir, const std::vector<int64_t>& ids, double tol) {
  TransformerOptions options;
  options.dtype = torch::kFloat32;
  const Transformer model = Transformer::load(dir, options);
  const auto expected = naive_forward(dir, ids);
  const auto actual = test::single_pass(model, ids, test::all_layers(model));
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_LE(relative_diff(actual[i], expected[i]), tol) << dir.filename() << " hidden state " << i;
  }
}

TEST(TransformerReference, LlamaMatchesNaiveLoops) {
  expect_matches_reference(tiny_checkpoint("llama"), random_ids(13, 200, 1), 1e-5);
}

TEST(TransformerReference, Qwen2WithBiasesMatchesNaiveLoops) {
  expect_matches_reference(tiny_checkpoint("qwen2"), random_ids(13, 200, 2), 1e-5);
}

TEST(TransformerReference, MistralHeadDimMatchesNaiveLoops) {
  const auto c = load_llm_config(tiny_checkpoint("mistral"));
  ASSERT_NE(c.head_dim * c.num_attention_heads, c.hidden_size);
  expect_matches_reference(tiny_checkpoint("mistral"), random_ids(13, 200, 3), 1e-5);
}

// A copy of the tiny Mistral checkpoint whose config sets sliding_window.
std::filesystem::path mistral_with_window(int64_t window) {
  const auto dir = test::fresh_temp_dir();
  const auto src = tiny_checkpoint("mistral");
  auto config = read_json_file(src / "config.json");
  config["sliding_window"] = window;
  write_json_file_atomic(dir / "config.json", config);
  std::filesystem::create_symlink(src / "model.safetensors", dir / "model.safetensors");
  return dir;
}

TEST(TransformerReference, MistralSlidingWindowMatchesNaiveLoops) {
  const auto dir = mistral_with_window(4);
  const auto ids = random_ids(12, 200, 4);
  expect_matches_reference(dir, ids, 1e-5);
  // The window must matter: past it, states differ from full attention.
  const auto full = test::single_pass(load_tiny("mistral"), ids, {2});
  TransformerOptions options;
  options.dtype = torch::kFloat32;
  const auto windowed = test::single_pass(Transformer::load(dir, options), ids, {2});
  EXPECT_GT(relative_diff(windowed[0].narrow(0, 8, 4), full[0].narrow(0, 8, 4)), 1e-3);
  EXPECT_LT(relative_diff(windowed[0].narrow(0, 0, 4), full[0].narrow(0, 0, 4)), 1e-6);
}

TEST(TransformerReference, GqaEqualsMhaWithRepeatedKvHeads) {
  const auto src = tiny_checkpoint("llama");
  const LlmConfig c = load_llm_config(src);
  ASSERT_LT(c.num_key_value_heads, c.num_attention_heads);
  const int64_t group = c.num_attention_heads / c.num_key_value_heads;
  const WeightFiles files(src);
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& name : files.names()) {
    torch::Tensor t = files.get(name, torch::kFloat32, torch::kCPU).clone();
    if (name.find("k_proj") != std::string::npos || name.find("v_proj") != std::string::npos) {
      // [kv_heads * D, hidden] -> every kv head repeated for its group of query heads.
      auto sizes = t.sizes().vec();
      t = t.view({c.num_key_value_heads, c.head_dim, -1}).repeat_interleave(group, 0).reshape({-1, sizes.back()});
      if (sizes.size() == 1) t = t.reshape({-1});
    }
    tensors.emplace_back(name, t);
  }
  const auto dir = test::fresh_temp_dir();
  write_checkpoint_weights(dir, tensors);
  auto config = read_json_file(src / "config.json");
  config["num_key_value_heads"] = c.num_attention_heads;
  write_json_file_atomic(dir / "config.json", config);

  TransformerOptions options;
  options.dtype = torch::kFloat32;
  const Transformer mha = Transformer::load(dir, options);
  ASSERT_EQ(mha.config().num_key_value_heads, mha.config().num_attention_heads);
  const auto ids = random_ids(10, 200, 5);
  const auto a = test::single_pass(load_tiny("llama"), ids, test::all_layers(mha));
  const auto b = test::single_pass(mha, ids, test::all_layers(mha));
  for (size_t i = 0; i < a.size(); ++i) EXPECT_LE(relative_diff(a[i], b[i]), 1e-5) << "hidden state " << i;
}

}  // namespace
}  // namespace flame::llm
