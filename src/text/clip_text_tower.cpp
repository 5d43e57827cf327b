#include "text/clip_text_tower.h"

#include <cmath>

#include "util/error.h"
#include "vision/layer_norm.h"
#include "vision/vit.h"

namespace flame::text {

using vision::ResidualAttentionBlock;
using vision::ResidualAttentionBlockImpl;

ClipTextTowerImpl::ClipTextTowerImpl(const ClipTextConfig& config, int64_t vocab_size)
    : config_(config), vocab_size_(vocab_size) {
  if (vocab_size < 1) fail("{}: vocab_size must be positive, got {}", config.name, vocab_size);
  const int64_t width = config.width;
  token_embedding = register_module("token_embedding", torch::nn::Embedding(vocab_size, width));
  positional_embedding =
      register_parameter("positional_embedding", torch::empty({config.context_length, width}));
  transformer = register_module("transformer", std::make_shared<torch::nn::Module>("Transformer"));
  resblocks = transformer->register_module("resblocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < config.layers; ++i) {
    resblocks->push_back(ResidualAttentionBlock(width, config.heads, config.mlp_width()));
  }
  ln_final = register_module("ln_final", torch::nn::LayerNorm(torch::nn::LayerNormOptions({width})));
  text_projection = register_parameter("text_projection", torch::empty({width, config.embed_dim}));

  torch::NoGradGuard no_grad;
  token_embedding->weight.normal_(0.0, 0.02);
  positional_embedding.normal_(0.0, 0.01);
  vision::init_residual_blocks(resblocks, width);
  text_projection.normal_(0.0, std::pow(static_cast<double>(width), -0.5));
}

int64_t ClipTextTowerImpl::parameter_count() const {
  int64_t n = 0;
  for (const auto& p : parameters()) n += p.numel();
  return n;
}

torch::Tensor ClipTextTowerImpl::hidden_states(const torch::Tensor& ids) {
  if (ids.dim() != 2 || ids.size(1) < 1 || ids.size(1) > config_.context_length ||
      !c10::isIntegralType(ids.scalar_type(), /*includeBool=*/false)) {
    fail("{}: expected integer token ids [N, T] with 1 <= T <= {}, got {} {}", config_.name,
         config_.context_length, c10::toString(ids.scalar_type()), c10::str(ids.sizes()));
  }
  const int64_t tokens = ids.size(1);
  torch::Tensor x = token_embedding(ids.to(torch::kLong));  // [N, T, W]
  x = x + positional_embedding.slice(0, 0, tokens).to(x.scalar_type());
  const torch::Tensor mask = vision::causal_mask(tokens, x.device());
  for (size_t i = 0; i < resblocks->size(); ++i) {
    x = resblocks->ptr<ResidualAttentionBlockImpl>(i)->forward(x, mask);
  }
  return vision::layer_norm_fp32(ln_final, x);
}

torch::Tensor ClipTextTowerImpl::forward(const torch::Tensor& ids, const torch::Tensor& eot_index) {
  if (eot_index.dim() != 1 || ids.dim() != 2 || eot_index.size(0) != ids.size(0)) {
    fail("{}: expected eot_index [N] for ids [N, T], got {} for {}", config_.name,
         c10::str(eot_index.sizes()), c10::str(ids.sizes()));
  }
  const torch::Tensor where = eot_index.to(ids.device(), torch::kLong);
  if (where.numel() > 0 && (where.min().item<int64_t>() < 0 || where.max().item<int64_t>() >= ids.size(1))) {
    fail("{}: eot_index must lie in [0, {}), got values in [{}, {}]", config_.name, ids.size(1),
         where.min().item<int64_t>(), where.max().item<int64_t>());
  }
  // Causal: no position after the last EOT can change an EOT's state, so the
  // pass stops there (short captions padded to 77 tokens cost their length).
  const int64_t used = where.numel() > 0 ? where.max().item<int64_t>() + 1 : ids.size(1);
  const torch::Tensor h = hidden_states(ids.slice(1, 0, used));
  const torch::Tensor rows = torch::arange(h.size(0), where.options());
  const torch::Tensor pooled = h.index({rows, where});  // [N, W]
  return torch::matmul(pooled, text_projection.to(pooled.scalar_type()));
}

}  // namespace flame::text
