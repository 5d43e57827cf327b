#include "llm/gguf_model.h"

#include <fmt/format.h>

#include <fstream>

#include "llm/ggml_quants.h"
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

// Hugging Face's name for a GGUF tensor name; empty for names flame does not use.
std::string hf_name(const std::string& gguf) {
  static const std::map<std::string, std::string> kGlobal = {
      {"token_embd.weight", "model.embed_tokens.weight"},
      {"output_norm.weight", "model.norm.weight"},
      {"output.weight", "lm_head.weight"}};
  static const std::map<std::string, std::string> kLayer = {
      {"attn_norm", "input_layernorm"},    {"attn_q", "self_attn.q_proj"},
      {"attn_k", "self_attn.k_proj"},      {"attn_v", "self_attn.v_proj"},
      {"attn_output", "self_attn.o_proj"}, {"ffn_norm", "post_attention_layernorm"},
      {"ffn_gate", "mlp.gate_proj"},       {"ffn_up", "mlp.up_proj"},
      {"ffn_down", "mlp.down_proj"}};
  if (const auto it = kGlobal.find(gguf); it != kGlobal.end()) return it->second;
  // blk.N.PART.{weight,bias}
  if (gguf.rfind("blk.", 0) != 0) return {};
  const size_t layer_end = gguf.find('.', 4), suffix = gguf.rfind('.');
  if (layer_end == std::string::npos || suffix <= layer_end) return {};
  const auto it = kLayer.find(gguf.substr(layer_end + 1, suffix - layer_end - 1));
  if (it == kLayer.end()) return {};
  return fmt::format("model.layers.{}.{}{}", gguf.substr(4, layer_end - 4), it->second, gguf.substr(suffix));
}

// Bytes of a tensor's data, after checking its type and that it lies in the file.
uint64_t checked_bytes(const GgufFile& f, const GgufTensorInfo& t, uint64_t file_size) {
  const auto block = ggml_block(t.ggml_type);
  if (!block) {
    fail("{}: tensor '{}' is GGML {}, which flame does not read (it reads {})", f.source, t.name,
         ggml_type_name(t.ggml_type), ggml_supported_types());
  }
  // Every value takes at least 4 bits: more values than 2 per byte of the file is corrupt (and would
  // overflow).
  uint64_t values = 1;
  for (const uint64_t d : t.shape) {
    if (d == 0 || d > 2 * file_size / values) {
      fail("{}: tensor '{}' has a dimension of {}, impossible in a file of {} bytes", f.source, t.name, d,
           file_size);
    }
    values *= d;
  }
  if (t.shape.empty() || t.shape[0] % static_cast<uint64_t>(block->values) != 0) {
    fail("{}: tensor '{}' ({}) has rows of {} values, not a multiple of its block of {}", f.source, t.name,
         ggml_type_name(t.ggml_type), t.shape.empty() ? 0 : t.shape[0], block->values);
  }
  const uint64_t bytes = values / static_cast<uint64_t>(block->values) * static_cast<uint64_t>(block->bytes);
  if (f.data_offset + t.offset > file_size || bytes > file_size - f.data_offset - t.offset) {
    fail("{}: tensor '{}' ({} bytes at {}) runs past the end of the file ({} bytes): truncated?", f.source,
         t.name, bytes, f.data_offset + t.offset, file_size);
  }
  return bytes;
}

// llama.cpp's permute undone: per head, rows [D/2, 2] -> [2, D/2].
torch::Tensor unpermute_rows(const torch::Tensor& t, int64_t heads) {
  const int64_t rows = t.size(0);
  std::vector<int64_t> split = {heads, rows / heads / 2, 2};
  std::vector<int64_t> rest(t.sizes().begin() + 1, t.sizes().end());
  split.insert(split.end(), rest.begin(), rest.end());
  return t.reshape(split).transpose(1, 2).reshape(t.sizes()).contiguous();
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

GgufWeights::GgufWeights(const std::filesystem::path& path) : map_(path) {
  file_ = parse_gguf(map_.data(), map_.size(), path.string());
  config_ = gguf_llm_config(file_);
  permuted_qk_ = architecture_of(file_).permuted_qk;
  for (const auto& t : file_.tensors) {
    const std::string name = hf_name(t.name);
    if (name.empty()) continue;
    checked_bytes(file_, t, map_.size());
    by_hf_name_[name] = &t;
  }
}

torch::Tensor dequantize_gguf_tensor(const GgufFile& file, const MappedFile& map, const GgufTensorInfo& t) {
  checked_bytes(file, t, map.size());
  torch::Tensor out = torch::empty(t.sizes(), torch::kFloat32);
  dequantize_ggml(t.ggml_type, map.data() + file.data_offset + t.offset, out.data_ptr<float>(), out.numel());
  return out;
}

torch::Tensor GgufWeights::get(const std::string& name, torch::ScalarType dtype, const torch::Device& device,
                               const std::vector<int64_t>& expected_shape) const {
  const auto it = by_hf_name_.find(name);
  if (it == by_hf_name_.end())
    fail("{}: no tensor for '{}' (GGUF names: blk.N.attn_q.weight, ...)", file_.source, name);
  const std::vector<int64_t> shape = it->second->sizes();
  if (!expected_shape.empty() && shape != expected_shape) {
    fail("{}: tensor '{}' ({}) has shape [{}], expected [{}]", file_.source, it->second->name, name,
         fmt::join(shape, ", "), fmt::join(expected_shape, ", "));
  }
  torch::Tensor t = dequantize_gguf_tensor(file_, map_, *it->second);
  if (permuted_qk_) {
    const bool q = name.find("self_attn.q_proj.") != std::string::npos;
    const bool k = name.find("self_attn.k_proj.") != std::string::npos;
    if (q || k) t = unpermute_rows(t, q ? config_.num_attention_heads : config_.num_key_value_heads);
  }
  if (!torch::isfinite(t).all().item<bool>()) {
    fail("{}: tensor '{}' holds NaN or inf values", file_.source, it->second->name);
  }
  return t.to(device, dtype);
}

}  // namespace flame::llm
