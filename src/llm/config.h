// LlmConfig: the fields of a Hugging Face config.json that the forward pass
// needs, for Llama (incl. SmolLM), Mistral and Qwen2 decoder-only models.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace flame::llm {

enum class Architecture { Llama, Mistral, Qwen2 };

// Rotary-embedding frequency scaling ("rope_scaling" in config.json).
struct RopeScaling {
  enum class Type { None, Linear, Llama3 };
  Type type = Type::None;
  double factor = 1.0;
  // llama3 only:
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

struct LlmConfig {
  Architecture architecture = Architecture::Llama;
  std::string architecture_name;  // e.g. "LlamaForCausalLM", as in the file
  std::string model_type;         // "llama", "mistral", "qwen2"
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;  // given, or hidden_size / num_attention_heads
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  int64_t max_position_embeddings = 0;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // biases on q, k, v (always on for Qwen2)
  bool attention_output_bias = false;  // bias on o_proj (Llama attention_bias)
  bool mlp_bias = false;
  std::optional<int64_t> sliding_window;  // Mistral; noted, see transformer.h
  std::optional<int64_t> bos_token_id;
  std::vector<int64_t> eos_token_ids;
  std::string torch_dtype;  // as stored, informational

  // Number of parameters of the model these shapes describe.
  int64_t parameter_count() const;
};

// Parses a config.json value; `source` names the file in error messages.
LlmConfig parse_llm_config(const nlohmann::json& json, const std::string& source);

// Reads DIR/config.json (or the file itself if a file path is given).
LlmConfig load_llm_config(const std::filesystem::path& path);

std::string to_string(Architecture architecture);

}  // namespace flame::llm
