// Transformer: the frozen decoder-only LLM (Llama, SmolLM, Mistral, Qwen2) of
// a Hugging Face checkpoint, run forward only. It returns hidden states of
// chosen layers at chosen token positions, optionally logits and a KV cache.
//
// Hidden states are numbered as Hugging Face's output_hidden_states: 0 = the
// token embeddings, i = the output of decoder layer i (1-based), and
// L = num_hidden_layers = the output of the final norm. Only the layers needed
// for the requested outputs are run.
//
// Batches are right-padded ([B, T] ids + a [B, T] valid mask). A pass can
// continue a KvCache (read-only): each row continues one row of the cache,
// and several rows may share one cache row (facet continuations).
// See batch.h for the two facet-decoupled attention layouts.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "llm/config.h"
#include "llm/kv_cache.h"
#include "llm/rope.h"

namespace flame::llm {

class WeightSource;

struct TransformerOptions {
  torch::ScalarType dtype = torch::kBFloat16;  // compute dtype: bf16, f16 or f32
  torch::Device device = torch::kCPU;
  // gate/up stored next to each other in the file are always used as one
  // matrix (a view). When the weights are converted or moved anyway (another
  // dtype or device), q/k/v and gate/up are also concatenated at load, which
  // costs no extra copy. Weights in the compute dtype on the CPU are never
  // copied: a fused q/k/v matmul measured no faster here (oneDNN bf16).
  bool fuse_projections = true;
  // Keep freed activation memory in the process for the next pass
  // (retain_freed_memory in allocator.h: process-wide, glibc malloc).
  bool retain_freed_memory = true;
};

struct ForwardInput {
  torch::Tensor input_ids;        // [B, T] integer token ids (padding: any valid id)
  torch::Tensor valid;            // [B, T] bool, false = padding; undefined = all tokens real
  torch::Tensor positions;        // [B, T] int64; undefined = the row's past next_positions() + 0..T-1
  torch::Tensor attention_mask;   // [B, T, P + T] bool, true = may attend; undefined = causal.
                                  // Padding keys and the sliding window are masked in addition.
  const KvCache* past = nullptr;  // read-only; P = past->length()
  // Which cache row each row continues. By default row b -> b / rows_per_past:
  // rows_per_past consecutive rows share one cache row without copies (FDA: a
  // caption's K facets), so B = rows_per_past x the cache's rows (1: b -> b).
  // Or past_rows: [B] int64 cache row of each row, any mapping (copies the
  // selected rows; rows_per_past stays 1).
  int64_t rows_per_past = 1;
  torch::Tensor past_rows;
};

// Wall seconds per stage ("linear", "attention", "norm", "rope", ...),
// accumulated over passes; for benchmarks (exact on the CPU only).
struct StageTimes {
  std::map<std::string, double> seconds;
};

struct ForwardRequest {
  std::vector<int64_t> hidden_layers;  // HF numbering, 0..L
  torch::Tensor gather;                // [B, G] int64 token indices to return; undefined = all T
  bool logits = false;                 // LM head at the gathered positions (float32)
  bool cache = false;                  // return past + these tokens as a new KvCache
  int64_t cache_layers = 0;            // with nothing else asked: layers to run (0 = all)
  StageTimes* timings = nullptr;       // when set, stages are timed into it
};

struct ForwardOutput {
  std::vector<torch::Tensor>
      hidden;            // per requested layer: [B, G, hidden] (or [B, T, hidden]), compute dtype
  torch::Tensor logits;  // [B, G, vocab] float32 when asked
  KvCache cache;         // when asked: layers run so far, rows as the input's
};

struct LayerWeights {
  torch::Tensor input_norm;     // [hidden]
  torch::Tensor qkv, qkv_bias;  // fused [(Hq + 2 Hkv) D, hidden] (bias optional)
  torch::Tensor q, k, v;        // unfused projections (fuse_projections = false)
  torch::Tensor q_bias, k_bias, v_bias;
  torch::Tensor o, o_bias;              // [hidden, Hq D]
  torch::Tensor post_norm;              // [hidden]
  torch::Tensor gate_up, gate_up_bias;  // fused [2 I, hidden]
  torch::Tensor gate, up, gate_bias, up_bias;
  torch::Tensor down, down_bias;  // [hidden, I]
};

// The hidden_states index `layer` names, as Hugging Face and Python number
// them (0 = embeddings, i = after decoder layer i, L = after the final norm;
// negative counts from the end: -1 = L, -2 = L-1). One rule for every command
// that takes --layer; outside -(L+1)..L throws flame::Error naming the range.
int64_t hidden_state_index(int64_t layer, int64_t num_layers);

class Transformer {
 public:
  // Loads and validates every expected tensor (name and shape); weights are
  // frozen, and zero-copy views of the file where dtype and device allow.
  // `path`: a Hugging Face checkpoint folder or a .gguf file (dequantised).
  static Transformer load(const std::filesystem::path& path, const TransformerOptions& options = {});
  static Transformer load(const WeightSource& weights, const LlmConfig& config,
                          const TransformerOptions& options = {});

  ForwardOutput forward(const ForwardInput& input, const ForwardRequest& request) const;

  // Convenience: hidden state of `layer` at one index per row ([B] or [B, 1]
  // int64 gather) -> [B, hidden].
  torch::Tensor hidden_at(const torch::Tensor& input_ids, const torch::Tensor& valid, int64_t layer,
                          const torch::Tensor& index) const;

  // The output head alone: final RMSNorm (unless apply_final_norm is false)
  // then the LM head (tied or not). hidden [..., hidden_size] in any dtype on
  // any device -> logits [..., vocab] float32 on the model's device. Used to
  // read vectors from outside the LLM (projected image patches) as words.
  torch::Tensor output_head(const torch::Tensor& hidden, bool apply_final_norm = true) const;

  const LlmConfig& config() const { return config_; }
  const TransformerOptions& options() const { return options_; }
  int64_t num_layers() const { return config_.num_hidden_layers; }
  const std::vector<LayerWeights>& layers() const { return layers_; }
  const torch::Tensor& embed_tokens() const { return embed_; }
  const torch::Tensor& lm_head() const { return lm_head_; }

 private:
  Transformer() = default;

  LlmConfig config_;
  TransformerOptions options_;
  torch::Tensor embed_;  // [vocab, hidden]
  std::vector<LayerWeights> layers_;
  torch::Tensor final_norm_;
  torch::Tensor lm_head_;  // [vocab, hidden], = embed_ when tied
  RotaryEmbedding rope_;
};

}  // namespace flame::llm
