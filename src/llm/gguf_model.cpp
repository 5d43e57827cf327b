#include "llm/gguf_model.h"

#include <fmt/format.h>

#include "llm/ggml_quants.h"
#include "util/error.h"

namespace flame::llm {

namespace {

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

GgufWeights::GgufWeights(const std::filesystem::path& path) : map_(path) {
  file_ = parse_gguf(map_.data(), map_.size(), path.string());
  config_ = gguf_llm_config(file_);
  permuted_qk_ = gguf_permutes_qk(file_);
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
