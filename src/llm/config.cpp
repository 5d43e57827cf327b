#include "llm/config.h"

#include "llm/gguf_config.h"

#include "util/error.h"
#include "util/file.h"

namespace flame::llm {

namespace {

using nlohmann::json;

const json& require(const json& j, const char* key, const std::string& source) {
  if (!j.contains(key) || j.at(key).is_null()) {
    fail("{}: missing required field '{}'", source, key);
  }
  return j.at(key);
}

int64_t require_int(const json& j, const char* key, const std::string& source) {
  const json& v = require(j, key, source);
  if (!v.is_number_integer()) fail("{}: field '{}' must be an integer", source, key);
  const int64_t n = v.get<int64_t>();
  if (n <= 0) fail("{}: field '{}' must be positive, got {}", source, key, n);
  return n;
}

double number_or(const json& j, const char* key, double fallback, const std::string& source) {
  if (!j.contains(key) || j.at(key).is_null()) return fallback;
  if (!j.at(key).is_number()) fail("{}: field '{}' must be a number", source, key);
  return j.at(key).get<double>();
}

bool bool_or(const json& j, const char* key, bool fallback, const std::string& source) {
  if (!j.contains(key) || j.at(key).is_null()) return fallback;
  if (!j.at(key).is_boolean()) fail("{}: field '{}' must be true or false", source, key);
  return j.at(key).get<bool>();
}

RopeScaling parse_rope_scaling(const json& j, const std::string& source) {
  RopeScaling scaling;
  if (!j.contains("rope_scaling") || j.at("rope_scaling").is_null()) return scaling;
  const json& rs = j.at("rope_scaling");
  if (!rs.is_object()) fail("{}: field 'rope_scaling' must be an object or null", source);
  std::string type;
  if (rs.contains("rope_type"))
    type = rs.at("rope_type").get<std::string>();
  else if (rs.contains("type"))
    type = rs.at("type").get<std::string>();
  else
    fail("{}: rope_scaling has neither 'rope_type' nor 'type'", source);
  if (type == "default") return scaling;
  scaling.factor = number_or(rs, "factor", 1.0, source + " rope_scaling");
  if (type == "linear") {
    scaling.type = RopeScaling::Type::Linear;
  } else if (type == "llama3") {
    scaling.type = RopeScaling::Type::Llama3;
    scaling.low_freq_factor = number_or(rs, "low_freq_factor", 1.0, source);
    scaling.high_freq_factor = number_or(rs, "high_freq_factor", 4.0, source);
    scaling.original_max_position_embeddings =
        static_cast<int64_t>(number_or(rs, "original_max_position_embeddings", 8192, source));
  } else {
    fail("{}: unsupported rope_scaling type '{}' (supported: linear, llama3)", source, type);
  }
  if (scaling.factor <= 0) fail("{}: rope_scaling.factor must be positive", source);
  return scaling;
}

std::vector<int64_t> id_list(const json& j, const char* key) {
  std::vector<int64_t> ids;
  if (!j.contains(key) || j.at(key).is_null()) return ids;
  const json& v = j.at(key);
  if (v.is_array()) {
    for (const auto& x : v) ids.push_back(x.get<int64_t>());
  } else {
    ids.push_back(v.get<int64_t>());
  }
  return ids;
}

}  // namespace

std::string to_string(Architecture architecture) {
  switch (architecture) {
    case Architecture::Llama: return "llama";
    case Architecture::Mistral: return "mistral";
    case Architecture::Qwen2: return "qwen2";
  }
  return "?";
}

LlmConfig parse_llm_config(const json& j, const std::string& source) {
  if (!j.is_object()) fail("{}: expected a JSON object", source);
  LlmConfig c;
  const json& archs = require(j, "architectures", source);
  if (!archs.is_array() || archs.empty()) fail("{}: 'architectures' must be a non-empty list", source);
  c.architecture_name = archs.at(0).get<std::string>();
  if (c.architecture_name == "LlamaForCausalLM")
    c.architecture = Architecture::Llama;
  else if (c.architecture_name == "MistralForCausalLM")
    c.architecture = Architecture::Mistral;
  else if (c.architecture_name == "Qwen2ForCausalLM")
    c.architecture = Architecture::Qwen2;
  else {
    fail(
        "{}: unsupported architecture '{}' (supported: LlamaForCausalLM, MistralForCausalLM, "
        "Qwen2ForCausalLM)",
        source, c.architecture_name);
  }
  c.model_type = j.value("model_type", to_string(c.architecture));
  c.vocab_size = require_int(j, "vocab_size", source);
  c.hidden_size = require_int(j, "hidden_size", source);
  c.intermediate_size = require_int(j, "intermediate_size", source);
  c.num_hidden_layers = require_int(j, "num_hidden_layers", source);
  c.num_attention_heads = require_int(j, "num_attention_heads", source);
  c.num_key_value_heads = j.contains("num_key_value_heads") && !j["num_key_value_heads"].is_null()
                              ? require_int(j, "num_key_value_heads", source)
                              : c.num_attention_heads;
  if (j.contains("head_dim") && !j["head_dim"].is_null()) {
    c.head_dim = require_int(j, "head_dim", source);
  } else {
    if (c.hidden_size % c.num_attention_heads != 0) {
      fail("{}: hidden_size {} is not divisible by num_attention_heads {} and no head_dim is given", source,
           c.hidden_size, c.num_attention_heads);
    }
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }
  if (c.head_dim % 2 != 0) fail("{}: head_dim {} must be even for rotary embeddings", source, c.head_dim);
  if (c.num_attention_heads % c.num_key_value_heads != 0) {
    fail("{}: num_attention_heads {} is not a multiple of num_key_value_heads {}", source,
         c.num_attention_heads, c.num_key_value_heads);
  }
  c.rms_norm_eps = number_or(j, "rms_norm_eps", 1e-6, source);
  c.rope_theta = number_or(j, "rope_theta", 10000.0, source);
  c.rope_scaling = parse_rope_scaling(j, source);
  c.max_position_embeddings = require_int(j, "max_position_embeddings", source);
  c.tie_word_embeddings = bool_or(j, "tie_word_embeddings", false, source);
  if (c.architecture == Architecture::Qwen2) {
    c.attention_bias = true;  // Qwen2 always has q/k/v biases and no o_proj bias.
  } else {
    c.attention_bias = bool_or(j, "attention_bias", false, source);
    c.attention_output_bias = c.attention_bias;
  }
  c.mlp_bias = bool_or(j, "mlp_bias", false, source);
  if (j.contains("hidden_act") && j["hidden_act"] != "silu") {
    fail("{}: unsupported hidden_act '{}' (only silu)", source, j["hidden_act"].dump());
  }
  if (j.contains("sliding_window") && j["sliding_window"].is_number_integer()) {
    const bool used =
        c.architecture == Architecture::Mistral || bool_or(j, "use_sliding_window", false, source);
    if (used) c.sliding_window = j["sliding_window"].get<int64_t>();
  }
  const auto bos = id_list(j, "bos_token_id");
  if (!bos.empty()) c.bos_token_id = bos.front();
  c.eos_token_ids = id_list(j, "eos_token_id");
  c.torch_dtype = j.value("torch_dtype", std::string());
  return c;
}

LlmConfig load_llm_config(const std::filesystem::path& path) {
  if (is_gguf_file(path)) return gguf_llm_config(read_gguf(path));
  const auto file = std::filesystem::is_directory(path) ? path / "config.json" : path;
  if (!std::filesystem::exists(file)) fail("no config.json at '{}'", file.string());
  return parse_llm_config(read_json_file(file), file.string());
}

int64_t LlmConfig::parameter_count() const {
  const int64_t h = hidden_size, q = num_attention_heads * head_dim, kv = num_key_value_heads * head_dim;
  int64_t per_layer = 2 * h;                // two RMSNorms
  per_layer += h * q + 2 * h * kv + q * h;  // q, k, v, o
  if (attention_bias) per_layer += q + 2 * kv;
  if (attention_output_bias) per_layer += h;
  per_layer += 3 * h * intermediate_size;  // gate, up, down
  if (mlp_bias) per_layer += 2 * intermediate_size + h;
  int64_t total = vocab_size * h + num_hidden_layers * per_layer + h;
  if (!tie_word_embeddings) total += vocab_size * h;
  return total;
}

}  // namespace flame::llm
