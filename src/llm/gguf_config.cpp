#include "llm/gguf_config.h"

#include <fmt/format.h>

#include <fstream>
#include <string>
#include <string_view>

#include "util/error.h"

namespace flame::llm {

namespace {

struct ArchitectureNames {
  const char* gguf;
  const char* hf;
  bool permuted_qk;  // llama.cpp's LlamaModel.permute applied to q/k rows
};
constexpr ArchitectureNames kArchitectures[] = {{"llama", "LlamaForCausalLM", true},
                                                {"qwen2", "Qwen2ForCausalLM", false}};

const ArchitectureNames& architecture_of(const GgufFile& f) {
  const auto arch = f.get_string("general.architecture");
  if (!arch) fail("{}: no general.architecture: not an LLM GGUF (a vocabulary-only file?)", f.source);
  for (const auto& a : kArchitectures)
    if (*arch == a.gguf) return a;
  fail("{}: general.architecture '{}' is not supported (llama, which includes Mistral and SmolLM; qwen2)",
       f.source, *arch);
}

const GgufTensorInfo* find_tensor(const GgufFile& f, const std::string& name) {
  for (const auto& t : f.tensors)
    if (t.name == name) return &t;
  return nullptr;
}

}  // namespace

bool is_gguf_file(const std::filesystem::path& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) return false;  // a checkpoint folder, whatever its name
  if (path.extension() == ".gguf") return true;
  if (!std::filesystem::is_regular_file(path, ec)) return false;
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  return in.read(magic, 4) && std::string_view(magic, 4) == "GGUF";
}

LlmConfig gguf_llm_config(const GgufFile& f) {
  const ArchitectureNames& arch = architecture_of(f);
  const std::string p = std::string(arch.gguf) + ".";
  auto integer = [&](const std::string& key) -> nlohmann::json {
    const auto v = f.get_integer(p + key);
    return v ? nlohmann::json(*v) : nlohmann::json();
  };
  auto real = [&](const std::string& key) -> nlohmann::json {
    const auto v = f.get_real(p + key);
    return v ? nlohmann::json(*v) : nlohmann::json();
  };
  if (find_tensor(f, "rope_freqs.weight") != nullptr) {
    fail("{}: rope_freqs.weight (Llama 3.1-style RoPE frequency factors) is not read by flame yet", f.source);
  }
  const GgufTensorInfo* embed = find_tensor(f, "token_embd.weight");
  if (embed == nullptr || embed->shape.size() != 2) {
    fail("{}: no 2-D tensor 'token_embd.weight': a vocabulary-only GGUF, not a model?", f.source);
  }
  nlohmann::json j = {{"architectures", {arch.hf}},
                      {"model_type", arch.gguf},
                      {"vocab_size", static_cast<int64_t>(embed->shape[1])},
                      {"hidden_size", integer("embedding_length")},
                      {"intermediate_size", integer("feed_forward_length")},
                      {"num_hidden_layers", integer("block_count")},
                      {"num_attention_heads", integer("attention.head_count")},
                      {"max_position_embeddings", integer("context_length")},
                      {"tie_word_embeddings", find_tensor(f, "output.weight") == nullptr},
                      {"torch_dtype", "gguf"}};
  if (const auto kv = integer("attention.head_count_kv"); !kv.is_null()) j["num_key_value_heads"] = kv;
  if (const auto d = integer("attention.key_length"); !d.is_null()) j["head_dim"] = d;
  if (const auto eps = real("attention.layer_norm_rms_epsilon"); !eps.is_null()) j["rms_norm_eps"] = eps;
  if (const auto theta = real("rope.freq_base"); !theta.is_null()) j["rope_theta"] = theta;
  if (const auto type = f.get_string(p + "rope.scaling.type"); type && *type != "none") {
    if (*type != "linear")
      fail("{}: {}rope.scaling.type '{}' is not supported (none, linear)", f.source, p, *type);
    j["rope_scaling"] = {{"type", "linear"}, {"factor", real("rope.scaling.factor")}};
  }
  if (const auto window = integer("attention.sliding_window"); !window.is_null()) {
    j["sliding_window"] = window;
    j["use_sliding_window"] = true;
  }
  if (arch.hf != std::string("Qwen2ForCausalLM")) {
    j["attention_bias"] = find_tensor(f, "blk.0.attn_q.bias") != nullptr;
  }
  if (const auto bos = f.get_integer("tokenizer.ggml.bos_token_id")) j["bos_token_id"] = *bos;
  if (const auto eos = f.get_integer("tokenizer.ggml.eos_token_id")) j["eos_token_id"] = *eos;
  for (const char* key : {"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                          "max_position_embeddings"}) {
    if (j[key].is_null()) fail("{}: metadata lacks the key {}{}", f.source, p, key);
  }
  return parse_llm_config(j, f.source);
}

bool gguf_permutes_qk(const GgufFile& file) {
  return architecture_of(file).permuted_qk;
}

}  // namespace flame::llm
