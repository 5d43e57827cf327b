#include "llm/transformer.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "llm/allocator.h"
#include "llm/attention.h"
#include "llm/cpu_kernels.h"
#include "llm/rms_norm.h"
#include "llm/weights.h"
#include "util/error.h"

namespace flame::llm {

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
  if (!a.device().is_cpu() || !a.is_contiguous() || !b.is_contiguous() || a.scalar_type() != b.scalar_type() ||
      a.size(1) != b.size(1)) {
    return {};
  }
  const auto* a_end = static_cast<const char*>(a.data_ptr()) + a.nbytes();
  if (a_end != static_cast<const char*>(b.data_ptr())) return {};
  return torch::from_blob(a.data_ptr(), {a.size(0) + b.size(0), a.size(1)}, [a, b](void*) {}, a.options());
}

// Concatenated along dim 0; an adjacent pair is viewed without copying.
torch::Tensor concat_rows(const std::vector<torch::Tensor>& parts) {
  if (parts.size() == 2) {
    torch::Tensor view = view_adjacent(parts[0], parts[1]);
    if (view.defined()) return view;
  }
  return torch::cat(parts, 0);
}

}  // namespace

Transformer Transformer::load(const std::filesystem::path& dir, const TransformerOptions& options) {
  const LlmConfig config = load_llm_config(dir);
  const WeightFiles weights(dir);
  return load(weights, config, options);
}

Transformer Transformer::load(const WeightFiles& w, const LlmConfig& c, const TransformerOptions& o) {
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
    auto copied = [&](const std::string& name) {
      return !o.device.is_cpu() || to_torch_dtype(w.info(name).dtype) != o.dtype;
    };
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
  const auto long_opts = torch::TensorOptions().dtype(torch::kInt64).device(dev);
  const int64_t L = c.num_hidden_layers, H = c.hidden_size, D = c.head_dim;
  const int64_t Hq = c.num_attention_heads, Hkv = c.num_key_value_heads;

  if (!in.input_ids.defined() || in.input_ids.dim() != 2) fail("forward: input_ids must be a [batch, tokens] tensor");
  const torch::Tensor ids = in.input_ids.to(dev, torch::kInt64);
  const int64_t B = ids.size(0), T = ids.size(1);
  if (B == 0 || T == 0) fail("forward: empty input ({} rows of {} tokens)", B, T);
  auto check_bt = [&](const torch::Tensor& t, const char* what) {
    if (t.dim() != 2 || t.size(0) != B || t.size(1) != T) {
      fail("forward: {} has shape [{}], expected [{}, {}] like input_ids", what, fmt::join(t.sizes(), ", "), B, T);
    }
  };
  torch::Tensor valid = torch::ones({B, T}, long_opts.dtype(torch::kBool));
  if (in.valid.defined()) {
    check_bt(in.valid, "valid");
    valid = in.valid.to(dev, torch::kBool);
  }

  // Which layers to run and what to keep.
  int64_t run = req.logits ? L : 0;
  bool final_norm = req.logits;
  for (const int64_t h : req.hidden_layers) {
    if (h < 0 || h > L) fail("forward: hidden layer {} out of range 0..{}", h, L);
    run = std::max(run, h);
    if (h == L) final_norm = true;
  }
  if (req.cache && run == 0 && !final_norm) run = req.cache_layers > 0 ? std::min(req.cache_layers, L) : L;

  // The past, mapped to this batch's rows.
  const KvCache* past = in.past != nullptr && in.past->length() > 0 ? in.past : nullptr;
  KvCache selected;
  int64_t rows_per_past = 1;
  torch::Tensor past_valid, past_positions;  // [B, P]
  if (past != nullptr) {
    past->check();
    if (past->num_layers() < run) {
      fail("forward: the KV cache holds {} layers, this pass needs {}", past->num_layers(), run);
    }
    const int64_t Bc = past->batch_size();
    if (in.past_rows.defined()) {
      const torch::Tensor rows = in.past_rows.to(torch::kCPU, torch::kInt64).reshape({-1});
      if (rows.size(0) != B) fail("forward: past_rows has {} entries for {} rows", rows.size(0), B);
      if (rows.numel() > 0 && (rows.min().item<int64_t>() < 0 || rows.max().item<int64_t>() >= Bc)) {
        fail("forward: past_rows refers to rows outside the cache's {} rows", Bc);
      }
      if (B % Bc == 0 && torch::equal(rows, torch::arange(Bc, torch::kInt64).repeat_interleave(B / Bc))) {
        rows_per_past = B / Bc;
      } else {
        selected = past->select_rows(rows);
        past = &selected;
      }
    } else if (Bc != B) {
      fail("forward: the KV cache has {} rows but the batch {}; give past_rows", Bc, B);
    }
    past_valid = rows_per_past > 1 ? past->valid.repeat_interleave(rows_per_past, 0) : past->valid;
    past_positions = rows_per_past > 1 ? past->positions.repeat_interleave(rows_per_past, 0) : past->positions;
    past_valid = past_valid.to(dev);
    past_positions = past_positions.to(dev);
  }
  const int64_t P = past != nullptr ? past->length() : 0;

  torch::Tensor positions;
  if (in.positions.defined()) {
    check_bt(in.positions, "positions");
    positions = in.positions.to(dev, torch::kInt64);
  } else {
    positions = torch::arange(T, long_opts).unsqueeze(0).expand({B, T});
    if (past != nullptr) positions = positions + past_positions.masked_fill(past_valid.logical_not(), -1).amax(1, true) + 1;
  }
  const torch::Tensor key_positions = P > 0 ? torch::cat({past_positions, positions}, 1) : positions;

  torch::Tensor gather;
  if (req.gather.defined()) {
    gather = req.gather.to(dev, torch::kInt64);
    if (gather.dim() == 1) gather = gather.unsqueeze(1);
    if (gather.dim() != 2 || gather.size(0) != B) fail("forward: gather must be [{}, G] token indices", B);
    if (gather.numel() > 0 && (gather.min().item<int64_t>() < 0 || gather.max().item<int64_t>() >= T)) {
      fail("forward: gather indices must lie in 0..{}", T - 1);
    }
  }
  auto gathered = [&](const torch::Tensor& x) {
    if (!gather.defined()) return x;
    return x.gather(1, gather.unsqueeze(-1).expand({B, gather.size(1), x.size(-1)}));
  };

  const bool mistral_window = c.sliding_window && c.architecture == Architecture::Mistral;
  const torch::Tensor allowed =
      build_attention_mask(valid, past_valid, in.attention_mask, positions, key_positions,
                           mistral_window ? c.sliding_window : std::nullopt);
  if (c.sliding_window && !mistral_window) {
    // Qwen2's use_sliding_window applies to some layers only; refuse instead of guessing.
    const torch::Tensor distance = positions.unsqueeze(2) - key_positions.unsqueeze(1);
    if (allowed.logical_and(distance >= *c.sliding_window).any().item<bool>()) {
      fail("forward: keys {} or more positions back need {}'s sliding window attention, which is not supported",
           *c.sliding_window, c.architecture_name);
    }
  }
  const std::vector<QueryBlock> blocks = plan_query_blocks(allowed, P);
  // Angles in fp32; 1/sqrt(D) is folded into the query tables.
  const torch::Tensor angles = positions.to(torch::kFloat32).unsqueeze(-1) * rope_.inverse_frequencies();
  const torch::Tensor cos32 = angles.cos(), sin32 = angles.sin();
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  const RopeTables k_tables{cos32.to(options_.dtype), sin32.to(options_.dtype)};
  const RopeTables q_tables{(cos32 * scale).to(options_.dtype), (sin32 * scale).to(options_.dtype)};
  laps.lap("mask+rope tables");

  ForwardOutput out;
  out.hidden.resize(req.hidden_layers.size());
  auto record = [&](int64_t h, const torch::Tensor& x) {
    for (size_t i = 0; i < req.hidden_layers.size(); ++i) {
      if (req.hidden_layers[i] == h) out.hidden[i] = gathered(x);
    }
  };

  torch::Tensor x = embed_.index_select(0, ids.reshape({-1})).view({B, T, H});
  record(0, x);
  laps.lap("embed");
  std::vector<torch::Tensor> new_keys, new_values;
  for (int64_t i = 0; i < run; ++i) {
    const LayerWeights& l = layers_[static_cast<size_t>(i)];
    torch::Tensor h = rms_norm(x, l.input_norm, c.rms_norm_eps);
    laps.lap("norm");
    torch::Tensor q, k, v;  // [B, T, heads, D] views
    if (l.qkv.defined()) {
      const torch::Tensor qkv = linear(h, l.qkv, l.qkv_bias);
      q = qkv.narrow(-1, 0, Hq * D);
      k = qkv.narrow(-1, Hq * D, Hkv * D);
      v = qkv.narrow(-1, (Hq + Hkv) * D, Hkv * D);
    } else {
      q = linear(h, l.q, l.q_bias);
      k = linear(h, l.k, l.k_bias);
      v = linear(h, l.v, l.v_bias);
    }
    laps.lap("linear");
    AttentionInputs a;
    a.q = apply_rope(q.view({B, T, Hq, D}).transpose(1, 2), q_tables);
    a.k = apply_rope(k.view({B, T, Hkv, D}).transpose(1, 2), k_tables);
    a.v = v.view({B, T, Hkv, D}).transpose(1, 2).contiguous();
    laps.lap("rope");
    if (past != nullptr) {
      a.past_k = past->keys[static_cast<size_t>(i)];
      a.past_v = past->values[static_cast<size_t>(i)];
      a.rows_per_past = rows_per_past;
    }
    a.allowed = allowed;
    a.blocks = blocks;
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
    const int64_t I = c.intermediate_size;
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
    x = x + linear(act, l.down, l.down_bias);
    laps.lap("linear");
    if (i + 1 < L) record(i + 1, x);
  }
  if (final_norm) {
    const torch::Tensor normed = rms_norm(gathered(x), final_norm_, c.rms_norm_eps);
    for (size_t j = 0; j < req.hidden_layers.size(); ++j) {
      if (req.hidden_layers[j] == L) out.hidden[j] = normed;
    }
    if (req.logits) out.logits = torch::linear(normed, lm_head_).to(torch::kFloat32);
    laps.lap("final norm+head");
  }
  if (req.cache) {
    KvCache& cache = out.cache;
    for (int64_t i = 0; i < run; ++i) {
      const auto li = static_cast<size_t>(i);
      if (P == 0) {
        cache.keys.push_back(new_keys[li]);
        cache.values.push_back(new_values[li]);
        continue;
      }
      auto rows = [&](const torch::Tensor& t) {
        return rows_per_past > 1 ? t.repeat_interleave(rows_per_past, 0) : t;
      };
      cache.keys.push_back(torch::cat({rows(past->keys[li]), new_keys[li]}, 2));
      cache.values.push_back(torch::cat({rows(past->values[li]), new_values[li]}, 2));
    }
    cache.valid = P > 0 ? torch::cat({past_valid, valid}, 1) : valid;
    cache.positions = key_positions.contiguous();
    laps.lap("cache");
  }
  return out;
}

torch::Tensor Transformer::hidden_at(const torch::Tensor& input_ids, const torch::Tensor& valid, int64_t layer,
                                     const torch::Tensor& index) const {
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
