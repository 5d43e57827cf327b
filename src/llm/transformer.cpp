#include "llm/transformer.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "llm/attention.h"
#include "llm/cpu_kernels.h"
#include "llm/gguf_model.h"
#include "llm/rms_norm.h"
#include "llm/weights.h"
#include "util/allocator.h"
#include "util/error.h"

namespace flame::llm {

int64_t hidden_state_index(int64_t layer, int64_t num_layers) {
  const int64_t index = layer < 0 ? num_layers + 1 + layer : layer;
  if (index < 0 || index > num_layers) {
    fail(
        "--layer {} is out of range for {} layers: 0..{} (0 = embeddings, {} = after the final norm) or "
        "-{}..-1 (from the end, as Python's hidden_states[-1])",
        layer, num_layers, num_layers, num_layers, num_layers + 1);
  }
  return index;
}

namespace {

// Attributes the time since the previous lap to a stage, when timing is on.
class Laps {
 public:
  explicit Laps(StageTimes* times) : times_(times), last_(Clock::now()) {}
  void lap(const char* stage) {
    if (times_ == nullptr) return;
    const auto now = Clock::now();
    times_->seconds[stage] += std::chrono::duration<double>(now - last_).count();
    last_ = now;
  }

 private:
  using Clock = std::chrono::steady_clock;
  StageTimes* times_;
  Clock::time_point last_;
};

torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias) {
  return bias.defined() ? torch::linear(x, weight, bias) : torch::linear(x, weight);
}

// One [rows, in] matrix over two adjacent ones of the same file, without a
// copy; undefined when they are not adjacent in memory.
torch::Tensor view_adjacent(const torch::Tensor& a, const torch::Tensor& b) {
  if (!a.device().is_cpu() || !a.is_contiguous() || !b.is_contiguous() ||
      a.scalar_type() != b.scalar_type() || a.size(1) != b.size(1)) {
    return {};
  }
  const auto* a_end = static_cast<const char*>(a.data_ptr()) + a.nbytes();
  if (a_end != static_cast<const char*>(b.data_ptr())) return {};
  return torch::from_blob(
      a.data_ptr(), {a.size(0) + b.size(0), a.size(1)}, [a, b](void*) {}, a.options());
}

// Concatenated along dim 0; an adjacent pair is viewed without copying.
torch::Tensor concat_rows(const std::vector<torch::Tensor>& parts) {
  if (parts.size() == 2) {
    torch::Tensor view = view_adjacent(parts[0], parts[1]);
    if (view.defined()) return view;
  }
  return torch::cat(parts, 0);
}

// input_ids and valid, checked and on the device.
struct Tokens {
  torch::Tensor ids;    // [B, T] int64
  torch::Tensor valid;  // [B, T] bool
};

// t ([B, T] like input_ids) on the device as `dtype`.
torch::Tensor like_ids(const torch::Tensor& t, const char* what, int64_t B, int64_t T,
                       torch::ScalarType dtype, const torch::Device& dev) {
  if (t.dim() != 2 || t.size(0) != B || t.size(1) != T) {
    fail("forward: {} has shape [{}], expected [{}, {}] like input_ids", what, fmt::join(t.sizes(), ", "), B,
         T);
  }
  return t.to(dev, dtype);
}

Tokens checked_tokens(const ForwardInput& in, const torch::Device& dev) {
  if (!in.input_ids.defined() || in.input_ids.dim() != 2)
    fail("forward: input_ids must be a [batch, tokens] tensor");
  Tokens t;
  t.ids = in.input_ids.to(dev, torch::kInt64);
  const int64_t B = t.ids.size(0), T = t.ids.size(1);
  if (B == 0 || T == 0) fail("forward: empty input ({} rows of {} tokens)", B, T);
  t.valid = in.valid.defined() ? like_ids(in.valid, "valid", B, T, torch::kBool, dev)
                               : torch::ones({B, T}, torch::TensorOptions().dtype(torch::kBool).device(dev));
  return t;
}

// Which layers a request needs run, and whether it needs the final norm.
struct LayerPlan {
  int64_t run = 0;
  bool final_norm = false;
};

LayerPlan plan_layers(const ForwardRequest& req, int64_t L) {
  LayerPlan plan{req.logits ? L : 0, req.logits};
  for (const int64_t h : req.hidden_layers) {
    if (h < 0 || h > L) fail("forward: hidden layer {} out of range 0..{}", h, L);
    plan.run = std::max(plan.run, h);
    if (h == L) plan.final_norm = true;
  }
  if (req.cache && plan.run == 0 && !plan.final_norm) {
    plan.run = req.cache_layers > 0 ? std::min(req.cache_layers, L) : L;
  }
  return plan;
}

// [B, T] int64 position ids: the given ones, or 0..T-1 after each row's past.
torch::Tensor token_positions(const ForwardInput& in, const BatchPast& past, int64_t B, int64_t T,
                              const torch::Device& dev) {
  if (in.positions.defined()) return like_ids(in.positions, "positions", B, T, torch::kInt64, dev);
  const torch::Tensor positions = torch::arange(T, torch::TensorOptions().dtype(torch::kInt64).device(dev));
  if (past.empty()) return positions.unsqueeze(0).expand({B, T});
  return positions.unsqueeze(0).expand({B, T}) + past.next_positions().unsqueeze(1);
}

// [B, G] int64 token indices (a [B] tensor is one per row), checked; undefined = all.
torch::Tensor checked_gather(const torch::Tensor& index, int64_t B, int64_t T, const torch::Device& dev) {
  if (!index.defined()) return {};
  torch::Tensor gather = index.to(dev, torch::kInt64);
  if (gather.dim() == 1) gather = gather.unsqueeze(1);
  if (gather.dim() != 2 || gather.size(0) != B) fail("forward: gather must be [{}, G] token indices", B);
  if (gather.numel() > 0 && (gather.min().item<int64_t>() < 0 || gather.max().item<int64_t>() >= T)) {
    fail("forward: gather indices must lie in 0..{}", T - 1);
  }
  return gather;
}

// x [B, T, C] at the gathered tokens: [B, G, C] (x itself without a gather).
torch::Tensor gather_tokens(const torch::Tensor& x, const torch::Tensor& gather) {
  if (!gather.defined()) return x;
  return x.gather(1, gather.unsqueeze(-1).expand({x.size(0), gather.size(1), x.size(-1)}));
}

// Which keys each query attends to, shared by all layers of a pass.
struct AttentionPattern {
  torch::Tensor allowed;  // [B, T, P + T] bool
  std::vector<QueryBlock> blocks;
};

AttentionPattern attention_pattern(const LlmConfig& c, const torch::Tensor& valid, const BatchPast& past,
                                   const torch::Tensor& custom, const torch::Tensor& positions,
                                   const torch::Tensor& key_positions) {
  const bool mistral_window = c.sliding_window && c.architecture == Architecture::Mistral;
  AttentionPattern pattern;
  pattern.allowed = build_attention_mask(valid, past.valid(), custom, positions, key_positions,
                                         mistral_window ? c.sliding_window : std::nullopt);
  if (c.sliding_window && !mistral_window) {
    // Qwen2's use_sliding_window applies to some layers only; refuse instead of guessing.
    const torch::Tensor distance = positions.unsqueeze(2) - key_positions.unsqueeze(1);
    if (pattern.allowed.logical_and(distance >= *c.sliding_window).any().item<bool>()) {
      fail(
          "forward: keys {} or more positions back need {}'s sliding window attention, which is not "
          "supported",
          *c.sliding_window, c.architecture_name);
    }
  }
  pattern.blocks = plan_query_blocks(pattern.allowed, past.length());
  return pattern;
}

// The attention of layer `layer` before its queries, keys and values: the
// pattern and the layer's past keys/values.
AttentionInputs layer_attention(const AttentionPattern& pattern, const BatchPast& past, int64_t layer) {
  AttentionInputs a;
  if (!past.empty()) {
    a.past_k = past.cache().keys[static_cast<size_t>(layer)];
    a.past_v = past.cache().values[static_cast<size_t>(layer)];
    a.rows_per_past = past.rows_per_past();
  }
  a.allowed = pattern.allowed;
  a.blocks = pattern.blocks;
  return a;
}

struct QkRope {
  RopeTables q, k;
};

// RoPE tables for the positions in the compute dtype. Angles in fp32;
// 1/sqrt(D) is folded into the query tables.
QkRope rope_tables(const torch::Tensor& inverse_frequencies, const torch::Tensor& positions, int64_t D,
                   torch::ScalarType dtype) {
  const torch::Tensor angles = positions.to(torch::kFloat32).unsqueeze(-1) * inverse_frequencies;
  const torch::Tensor cos32 = angles.cos(), sin32 = angles.sin();
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  QkRope tables;
  tables.k = {cos32.to(dtype), sin32.to(dtype)};
  tables.q = {(cos32 * scale).to(dtype), (sin32 * scale).to(dtype)};
  return tables;
}

// A layer's projected queries, keys and values: [B, T, heads * D] each
// (views of one matmul's output with fused weights).
struct Qkv {
  torch::Tensor q, k, v;
};

Qkv project_qkv(const torch::Tensor& h, const LayerWeights& l, int64_t q_dim, int64_t kv_dim) {
  if (!l.qkv.defined()) return {linear(h, l.q, l.q_bias), linear(h, l.k, l.k_bias), linear(h, l.v, l.v_bias)};
  const torch::Tensor qkv = linear(h, l.qkv, l.qkv_bias);
  return {qkv.narrow(-1, 0, q_dim), qkv.narrow(-1, q_dim, kv_dim), qkv.narrow(-1, q_dim + kv_dim, kv_dim)};
}

// The MLP's silu(gate) * up: [B, T, I]; the gate/up matmuls are lapped as "linear".
torch::Tensor gated_activation(const torch::Tensor& h, const LayerWeights& l, int64_t I, Laps& laps) {
  const int64_t B = h.size(0), T = h.size(1);
  torch::Tensor act;
  if (l.gate_up.defined()) {
    const torch::Tensor gu = linear(h, l.gate_up, l.gate_up_bias).view({B * T, 2 * I});
    laps.lap("linear");
    act = silu_mul(gu.narrow(1, 0, I), gu.narrow(1, I, I));
  } else {
    const torch::Tensor gate = linear(h, l.gate, l.gate_bias), up = linear(h, l.up, l.up_bias);
    laps.lap("linear");
    act = silu_mul(gate.view({B * T, I}), up.view({B * T, I}));
  }
  act = act.view({B, T, I});
  laps.lap("activation");
  return act;
}

// A tokenizer with more tokens than the checkpoint's embedding table (or ids
// given by hand) would fail inside index_select ("index out of range in
// self", or a device-side assert on CUDA): refuse with the id and the size.
void check_token_ids(const torch::Tensor& ids, int64_t vocab_size) {
  if (ids.numel() == 0) return;
  const int64_t low = ids.min().item<int64_t>(), high = ids.max().item<int64_t>();
  if (low < 0 || high >= vocab_size) {
    fail(
        "token id {} is outside the model's vocabulary of {} (config.json vocab_size): the tokenizer or the "
        "ids do not match this checkpoint",
        low < 0 ? low : high, vocab_size);
  }
}

}  // namespace

Transformer Transformer::load(const std::filesystem::path& path, const TransformerOptions& options) {
  if (is_gguf_file(path)) {
    const GgufWeights weights(path);
    return load(weights, weights.config(), options);
  }
  const LlmConfig config = load_llm_config(path);
  const WeightFiles weights(path);
  return load(weights, config, options);
}

Transformer Transformer::load(const WeightSource& w, const LlmConfig& c, const TransformerOptions& o) {
  if (o.dtype != torch::kBFloat16 && o.dtype != torch::kFloat16 && o.dtype != torch::kFloat32) {
    fail("compute dtype must be bf16, f16 or f32, not {}", c10::toString(o.dtype));
  }
  if (o.retain_freed_memory) retain_freed_memory();
  torch::NoGradGuard no_grad;
  Transformer m;
  m.config_ = c;
  m.options_ = o;
  const int64_t H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
  const int64_t q_dim = c.num_attention_heads * c.head_dim, kv_dim = c.num_key_value_heads * c.head_dim;
  auto get = [&](const std::string& name, std::vector<int64_t> shape) {
    return w.get(name, o.dtype, o.device, shape);
  };
  m.embed_ = get("model.embed_tokens.weight", {V, H});
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = fmt::format("model.layers.{}.", i);
    LayerWeights l;
    l.input_norm = get(p + "input_layernorm.weight", {H});
    l.q = get(p + "self_attn.q_proj.weight", {q_dim, H});
    l.k = get(p + "self_attn.k_proj.weight", {kv_dim, H});
    l.v = get(p + "self_attn.v_proj.weight", {kv_dim, H});
    if (c.attention_bias) {
      l.q_bias = get(p + "self_attn.q_proj.bias", {q_dim});
      l.k_bias = get(p + "self_attn.k_proj.bias", {kv_dim});
      l.v_bias = get(p + "self_attn.v_proj.bias", {kv_dim});
    }
    l.o = get(p + "self_attn.o_proj.weight", {H, q_dim});
    if (c.attention_output_bias) l.o_bias = get(p + "self_attn.o_proj.bias", {H});
    l.post_norm = get(p + "post_attention_layernorm.weight", {H});
    l.gate = get(p + "mlp.gate_proj.weight", {I, H});
    l.up = get(p + "mlp.up_proj.weight", {I, H});
    l.down = get(p + "mlp.down_proj.weight", {H, I});
    if (c.mlp_bias) {
      l.gate_bias = get(p + "mlp.gate_proj.bias", {I});
      l.up_bias = get(p + "mlp.up_proj.bias", {I});
      l.down_bias = get(p + "mlp.down_proj.bias", {H});
    }
    // Fuse where it costs no extra copy (see TransformerOptions::fuse_projections).
    auto copied = [&](const std::string& name) { return w.copies(name, o.dtype, o.device); };
    auto clear = [](std::initializer_list<torch::Tensor*> tensors) {
      for (torch::Tensor* t : tensors) *t = torch::Tensor();
    };
    const torch::Tensor gate_up = view_adjacent(l.gate, l.up);
    if (gate_up.defined() || (o.fuse_projections && copied(p + "mlp.gate_proj.weight"))) {
      l.gate_up = gate_up.defined() ? gate_up : concat_rows({l.gate, l.up});
      if (c.mlp_bias) l.gate_up_bias = concat_rows({l.gate_bias, l.up_bias});
      clear({&l.gate, &l.up, &l.gate_bias, &l.up_bias});
    }
    if (o.fuse_projections && copied(p + "self_attn.q_proj.weight")) {
      l.qkv = concat_rows({l.q, l.k, l.v});
      if (c.attention_bias) l.qkv_bias = concat_rows({l.q_bias, l.k_bias, l.v_bias});
      clear({&l.q, &l.k, &l.v, &l.q_bias, &l.k_bias, &l.v_bias});
    }
    m.layers_.push_back(std::move(l));
  }
  m.final_norm_ = get("model.norm.weight", {H});
  m.lm_head_ = c.tie_word_embeddings ? m.embed_ : get("lm_head.weight", {V, H});
  m.rope_ = RotaryEmbedding(c.head_dim, c.rope_theta, c.rope_scaling, o.device);
  return m;
}

ForwardOutput Transformer::forward(const ForwardInput& in, const ForwardRequest& req) const {
  torch::NoGradGuard no_grad;
  Laps laps(req.timings);
  const auto& c = config_;
  const torch::Device dev = options_.device;
  const int64_t L = c.num_hidden_layers, D = c.head_dim, Hq = c.num_attention_heads,
                Hkv = c.num_key_value_heads;
  const Tokens tokens = checked_tokens(in, dev);
  const int64_t B = tokens.ids.size(0), T = tokens.ids.size(1);
  const LayerPlan plan = plan_layers(req, L);
  const BatchPast past(in.past, in.past_rows, in.rows_per_past, B, plan.run, dev);
  const torch::Tensor positions = token_positions(in, past, B, T, dev);
  const torch::Tensor key_positions = past.key_positions(positions);
  const torch::Tensor gather = checked_gather(req.gather, B, T, dev);
  const AttentionPattern pattern =
      attention_pattern(c, tokens.valid, past, in.attention_mask, positions, key_positions);
  const QkRope rope = rope_tables(rope_.inverse_frequencies(), positions, D, options_.dtype);
  laps.lap("mask+rope tables");

  ForwardOutput out;
  out.hidden.resize(req.hidden_layers.size());
  auto record = [&](int64_t h, const torch::Tensor& x) {
    for (size_t j = 0; j < req.hidden_layers.size(); ++j) {
      if (req.hidden_layers[j] == h) out.hidden[j] = gather_tokens(x, gather);
    }
  };
  auto split_heads = [&](const torch::Tensor& t, int64_t n) { return t.view({B, T, n, D}).transpose(1, 2); };

  const torch::Tensor flat_ids = tokens.ids.reshape({-1});
  check_token_ids(flat_ids, c.vocab_size);
  torch::Tensor x = embed_.index_select(0, flat_ids).view({B, T, c.hidden_size});
  record(0, x);
  laps.lap("embed");
  std::vector<torch::Tensor> new_keys, new_values;
  for (int64_t i = 0; i < plan.run; ++i) {
    const LayerWeights& l = layers_[static_cast<size_t>(i)];
    torch::Tensor h = rms_norm(x, l.input_norm, c.rms_norm_eps);
    laps.lap("norm");
    const Qkv qkv = project_qkv(h, l, Hq * D, Hkv * D);
    laps.lap("linear");
    AttentionInputs a = layer_attention(pattern, past, i);
    a.q = apply_rope(split_heads(qkv.q, Hq), rope.q);
    a.k = apply_rope(split_heads(qkv.k, Hkv), rope.k);
    a.v = split_heads(qkv.v, Hkv).contiguous();
    laps.lap("rope");
    const torch::Tensor attn = grouped_attention(a);
    laps.lap("attention");
    if (req.cache) {
      new_keys.push_back(a.k);
      new_values.push_back(a.v);
    }
    x = x + linear(attn, l.o, l.o_bias);
    laps.lap("linear");
    h = rms_norm(x, l.post_norm, c.rms_norm_eps);
    laps.lap("norm");
    const torch::Tensor act = gated_activation(h, l, c.intermediate_size, laps);
    x = x + linear(act, l.down, l.down_bias);
    laps.lap("linear");
    if (i + 1 < L) record(i + 1, x);
  }
  if (plan.final_norm) {
    const torch::Tensor normed = rms_norm(gather_tokens(x, gather), final_norm_, c.rms_norm_eps);
    for (size_t j = 0; j < req.hidden_layers.size(); ++j) {
      if (req.hidden_layers[j] == L) out.hidden[j] = normed;
    }
    if (req.logits) out.logits = torch::linear(normed, lm_head_).to(torch::kFloat32);
    laps.lap("final norm+head");
  }
  if (req.cache) {
    out.cache = past.extend(new_keys, new_values, tokens.valid, key_positions);
    laps.lap("cache");
  }
  return out;
}

torch::Tensor Transformer::hidden_at(const torch::Tensor& input_ids, const torch::Tensor& valid,
                                     int64_t layer, const torch::Tensor& index) const {
  ForwardInput in;
  in.input_ids = input_ids;
  in.valid = valid;
  ForwardRequest req;
  req.hidden_layers = {layer};
  req.gather = index.dim() == 1 ? index.unsqueeze(1) : index;
  if (req.gather.size(1) != 1) fail("hidden_at: one index per row expected");
  return forward(in, req).hidden[0].squeeze(1);
}

torch::Tensor Transformer::output_head(const torch::Tensor& hidden, bool apply_final_norm) const {
  const int64_t H = config_.hidden_size;
  if (!hidden.defined() || hidden.dim() < 1 || hidden.size(-1) != H) {
    fail("output_head: expected [..., {}] hidden states, got [{}]", H,
         hidden.defined() ? fmt::format("{}", fmt::join(hidden.sizes(), ", ")) : std::string());
  }
  torch::NoGradGuard no_grad;
  // The same arithmetic as forward()'s final norm + head, so both agree exactly.
  torch::Tensor x = hidden.to(options_.device, options_.dtype).contiguous();
  if (apply_final_norm) x = rms_norm(x, final_norm_, config_.rms_norm_eps);
  return torch::linear(x, lm_head_).to(torch::kFloat32);
}

}  // namespace flame::llm
