#include "llm/random_checkpoint.h"

#include <torch/torch.h>

#include <cmath>

#include "llm/config.h"
#include "llm/weights.h"
#include "util/config_files.h"
#include "util/error.h"
#include "util/file.h"

namespace flame::llm {

namespace {

using nlohmann::ordered_json;

// Tiny shapes for tests: each family keeps its distinguishing features
// (Qwen2: q/k/v biases, untied head; Mistral: explicit head_dim != hidden/heads).
ordered_json tiny(const std::string& arch, int64_t vocab_size) {
  if (arch == "llama") {
    return ordered_json{{"architectures", {"LlamaForCausalLM"}},
                        {"attention_bias", false},
                        {"bos_token_id", 1},
                        {"eos_token_id", 2},
                        {"hidden_act", "silu"},
                        {"hidden_size", 64},
                        {"intermediate_size", 128},
                        {"max_position_embeddings", 2048},
                        {"model_type", "llama"},
                        {"num_attention_heads", 4},
                        {"num_hidden_layers", 3},
                        {"num_key_value_heads", 2},
                        {"rms_norm_eps", 1e-05},
                        {"rope_scaling", nullptr},
                        {"rope_theta", 10000.0},
                        {"tie_word_embeddings", true},
                        {"torch_dtype", "float32"},
                        {"vocab_size", vocab_size}};
  }
  if (arch == "qwen2") {
    return ordered_json{{"architectures", {"Qwen2ForCausalLM"}},
                        {"bos_token_id", 1},
                        {"eos_token_id", 2},
                        {"hidden_act", "silu"},
                        {"hidden_size", 64},
                        {"intermediate_size", 160},
                        {"max_position_embeddings", 4096},
                        {"max_window_layers", 2},
                        {"model_type", "qwen2"},
                        {"num_attention_heads", 4},
                        {"num_hidden_layers", 2},
                        {"num_key_value_heads", 1},
                        {"rms_norm_eps", 1e-06},
                        {"rope_theta", 1000000.0},
                        {"sliding_window", 4096},
                        {"tie_word_embeddings", false},
                        {"torch_dtype", "float32"},
                        {"use_sliding_window", false},
                        {"vocab_size", vocab_size}};
  }
  if (arch == "mistral") {
    return ordered_json{{"architectures", {"MistralForCausalLM"}},
                        {"bos_token_id", 1},
                        {"eos_token_id", 2},
                        {"head_dim", 24},
                        {"hidden_act", "silu"},
                        {"hidden_size", 64},
                        {"intermediate_size", 128},
                        {"max_position_embeddings", 4096},
                        {"model_type", "mistral"},
                        {"num_attention_heads", 4},
                        {"num_hidden_layers", 2},
                        {"num_key_value_heads", 2},
                        {"rms_norm_eps", 1e-05},
                        {"rope_theta", 1000000.0},
                        {"sliding_window", nullptr},
                        {"tie_word_embeddings", false},
                        {"torch_dtype", "float32"},
                        {"vocab_size", vocab_size}};
  }
  fail("unknown --arch '{}' (use llama, qwen2 or mistral)", arch);
}

std::string torch_dtype_json_name(const std::string& dtype) {
  const auto t = parse_compute_dtype(dtype);
  if (t == torch::kBFloat16) return "bfloat16";
  if (t == torch::kFloat16) return "float16";
  return "float32";
}

// A real model's config.json: a preset in configs/llm/ (or any config.json
// path), kept field for field so the shapes are exactly the real model's.
ordered_json real_model_config(const std::string& preset, const std::string& arch,
                               int64_t tokenizer_vocab_size) {
  const std::filesystem::path path = find_preset(preset, {config_dir("llm"), "LLM config", "LLM preset"});
  ordered_json config;
  try {
    config = ordered_json::parse(read_file(path));
  } catch (const nlohmann::json::exception& e) {  // out_of_range too: a number like 1e999
    fail("{}: not valid JSON ({})", path.string(), e.what());
  }
  if (!config.is_object()) fail("{}: expected a config.json object", path.string());
  const std::string own = config.value("model_type", "");
  if (!arch.empty() && arch != own) {
    fail("preset '{}' is a {} model; --arch {} does not match (omit --arch)", preset, own, arch);
  }
  const int64_t vocab = config.value("vocab_size", int64_t{0});
  if (tokenizer_vocab_size > vocab + 1) {
    fail("the tokenizer has {} tokens, more than the preset's vocab_size {}", tokenizer_vocab_size, vocab);
  }
  return config;
}

}  // namespace

std::vector<std::string> random_checkpoint_presets() {
  std::vector<std::string> names = {"tiny"};
  for (const std::string& name : list_presets(config_dir("llm"))) names.push_back(name);
  return names;
}

int64_t tokenizer_json_vocab_size(const std::filesystem::path& tokenizer_json) {
  const auto j = read_json_file(tokenizer_json);
  int64_t max_id = -1;
  if (j.contains("model") && j["model"].contains("vocab")) {
    const auto& vocab = j["model"]["vocab"];
    if (vocab.is_object()) {
      for (const auto& [piece, id] : vocab.items()) max_id = std::max(max_id, id.get<int64_t>());
    } else if (vocab.is_array()) {  // Unigram: [[piece, score], ...]
      max_id = static_cast<int64_t>(vocab.size()) - 1;
    }
  }
  if (j.contains("added_tokens")) {
    for (const auto& t : j["added_tokens"]) max_id = std::max(max_id, t.value("id", int64_t{-1}));
  }
  if (max_id < 0) fail("{}: no vocabulary found", tokenizer_json.string());
  return max_id + 1;
}

nlohmann::ordered_json random_checkpoint_config(const RandomCheckpointOptions& o,
                                                int64_t tokenizer_vocab_size) {
  ordered_json config;
  if (o.preset == "tiny") {
    config = tiny(o.arch.empty() ? "llama" : o.arch, tokenizer_vocab_size > 0 ? tokenizer_vocab_size : 256);
  } else {
    config = real_model_config(o.preset, o.arch, tokenizer_vocab_size);
  }
  if (o.num_layers > 0) config["num_hidden_layers"] = o.num_layers;
  config["torch_dtype"] = torch_dtype_json_name(o.dtype);
  return config;  // insertion order, as Hugging Face writes it
}

void make_random_checkpoint(const RandomCheckpointOptions& o, const std::filesystem::path& out_dir) {
  int64_t tokenizer_vocab = 0;
  const auto tokenizer_json = o.tokenizer_dir / "tokenizer.json";
  if (!o.tokenizer_dir.empty()) {
    if (!std::filesystem::exists(tokenizer_json)) fail("no tokenizer.json in '{}'", o.tokenizer_dir.string());
    tokenizer_vocab = tokenizer_json_vocab_size(tokenizer_json);
  }
  const ordered_json config_json = random_checkpoint_config(o, tokenizer_vocab);
  const LlmConfig c = parse_llm_config(nlohmann::json::parse(config_json.dump()), "generated config");
  const auto dtype = parse_compute_dtype(o.dtype);

  torch::NoGradGuard no_grad;
  auto gen = at::detail::createCPUGenerator(o.seed);
  // Scaled so activations stay O(1) in every layer (random, yet well-conditioned).
  auto linear = [&](int64_t out, int64_t in) {
    return (at::randn({out, in}, gen, torch::kFloat32) / std::sqrt(static_cast<double>(in))).to(dtype);
  };
  auto norm = [&](int64_t n) { return (1.0 + 0.1 * at::randn({n}, gen, torch::kFloat32)).to(dtype); };
  auto bias = [&](int64_t n) { return (0.1 * at::randn({n}, gen, torch::kFloat32)).to(dtype); };

  const int64_t h = c.hidden_size, q = c.num_attention_heads * c.head_dim,
                kv = c.num_key_value_heads * c.head_dim;
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  tensors.emplace_back("model.embed_tokens.weight",
                       at::randn({c.vocab_size, h}, gen, torch::kFloat32).to(dtype));
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = fmt::format("model.layers.{}.", i);
    tensors.emplace_back(p + "input_layernorm.weight", norm(h));
    tensors.emplace_back(p + "self_attn.q_proj.weight", linear(q, h));
    tensors.emplace_back(p + "self_attn.k_proj.weight", linear(kv, h));
    tensors.emplace_back(p + "self_attn.v_proj.weight", linear(kv, h));
    if (c.attention_bias) {
      tensors.emplace_back(p + "self_attn.q_proj.bias", bias(q));
      tensors.emplace_back(p + "self_attn.k_proj.bias", bias(kv));
      tensors.emplace_back(p + "self_attn.v_proj.bias", bias(kv));
    }
    tensors.emplace_back(p + "self_attn.o_proj.weight", linear(h, q));
    if (c.attention_output_bias) tensors.emplace_back(p + "self_attn.o_proj.bias", bias(h));
    tensors.emplace_back(p + "post_attention_layernorm.weight", norm(h));
    tensors.emplace_back(p + "mlp.gate_proj.weight", linear(c.intermediate_size, h));
    tensors.emplace_back(p + "mlp.up_proj.weight", linear(c.intermediate_size, h));
    tensors.emplace_back(p + "mlp.down_proj.weight", linear(h, c.intermediate_size));
  }
  tensors.emplace_back("model.norm.weight", norm(h));
  if (!c.tie_word_embeddings) tensors.emplace_back("lm_head.weight", linear(c.vocab_size, h));

  std::filesystem::create_directories(out_dir);
  write_checkpoint_weights(out_dir, tensors, o.shard_bytes);
  write_file_atomic(out_dir / "config.json", config_json.dump(2) + "\n");
  if (!o.tokenizer_dir.empty()) {
    for (const char* name : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                             "vocab.json", "merges.txt", "tokenizer.model", "generation_config.json"}) {
      const auto src = o.tokenizer_dir / name;
      if (std::filesystem::exists(src)) write_file_atomic(out_dir / name, read_file(src));
    }
  }
}

}  // namespace flame::llm
