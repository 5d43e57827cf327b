#include "vision/vit.h"

#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include <torch/version.h>

#include "util/error.h"
#include "vision/layer_norm.h"

namespace flame::vision {

namespace F = torch::nn::functional;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

torch::Tensor drop_patches(const torch::Tensor& tokens, double prob) {
  if (!(prob >= 0.0 && prob < 1.0)) fail("patch dropout must be in [0, 1), got {}", prob);
  if (prob == 0.0) return tokens;
  const int64_t batch = tokens.size(0);
  const int64_t patches = tokens.size(1) - 1;
  const int64_t width = tokens.size(2);
  const int64_t keep =
      std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(patches) * (1.0 - prob)));
  // The top `keep` of i.i.d. normal scores is a uniform random subset (OpenCLIP's draw).
  const torch::Tensor scores = torch::randn({batch, patches}, tokens.options().dtype(torch::kFloat));
  const torch::Tensor kept = std::get<0>(std::get<1>(scores.topk(keep, -1)).sort(-1)) + 1;
  const torch::Tensor rows = tokens.gather(1, kept.unsqueeze(-1).expand({batch, keep, width}));
  return torch::cat({tokens.slice(1, 0, 1), rows}, 1);
}

AttentionImpl::AttentionImpl(int64_t width, int64_t heads) : heads_(heads) {
  in_proj_weight = register_parameter("in_proj_weight", torch::empty({3 * width, width}));
  in_proj_bias = register_parameter("in_proj_bias", torch::zeros({3 * width}));
  out_proj = register_module("out_proj", torch::nn::Linear(width, width));
}

torch::Tensor causal_mask(int64_t tokens, const torch::Device& device) {
  return torch::full({tokens, tokens}, -std::numeric_limits<float>::infinity(),
                     torch::TensorOptions().dtype(torch::kFloat).device(device))
      .triu(1);
}

torch::Tensor explicit_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                 const torch::Tensor& attn_mask) {
  // As batched [B*H, T, Dh] products (nn.MultiheadAttention's layout): bmm
  // reads k^T through its strides, where a 4-D matmul would copy it.
  const auto sizes = q.sizes();
  const int64_t rows = sizes[0] * sizes[1], tokens = sizes[2], dim = sizes[3];
  const double scale = 1.0 / std::sqrt(static_cast<double>(dim));
  const torch::Tensor q3 = (q * scale).reshape({rows, tokens, dim});
  torch::Tensor scores = torch::bmm(q3, k.reshape({rows, tokens, dim}).transpose(1, 2));
  torch::Tensor probs;
  if (attn_mask.defined()) {
    // The fp32 mask promotes bf16 scores to fp32, so -inf stays -inf; the
    // softmax then runs in fp32 and its result is cast back.
    probs = torch::softmax(scores + attn_mask, -1, torch::kFloat).to(q.scalar_type());
  } else {
    // A bf16 softmax accumulates in fp32 and rounds once, as the cast of an
    // fp32 softmax would (nn.MultiheadAttention under autocast does the same).
    probs = torch::softmax(scores, -1);
  }
  return torch::bmm(probs, v.reshape({rows, tokens, dim})).view(sizes);
}

torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        const torch::Tensor& attn_mask) {
  // Flash / memory-efficient kernels: no [T, T] scores in memory. The CPU keeps
  // the explicit path (its bf16 softmax rounding is the one tested).
  if (q.is_cuda()) {
    const c10::optional<torch::Tensor> mask =
        attn_mask.defined() ? c10::optional<torch::Tensor>(attn_mask.to(q.scalar_type())) : c10::nullopt;
    return at::scaled_dot_product_attention(q, k, v, mask);
  }
  return explicit_attention(q, k, v, attn_mask);
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& attn_mask) {
  const int64_t batch = x.size(0), tokens = x.size(1), width = x.size(2);
  const int64_t head_dim = width / heads_;
  // [B, T, 3W] -> [3, B, H, T, Dh]
  // One copy into [3, B, H, T, Dh], so q, k and v are contiguous heads.
  const torch::Tensor qkv = F::linear(x, in_proj_weight, in_proj_bias)
                                .view({batch, tokens, 3, heads_, head_dim})
                                .permute({2, 0, 3, 1, 4})
                                .contiguous();
  // unbind, not qkv[0..2]: three selects would each send back a zero-filled
  // [3, B, H, T, Dh] gradient, summed twice per block.
  const std::vector<torch::Tensor> heads = qkv.unbind(0);
  const torch::Tensor out = attention(heads[0], heads[1], heads[2], attn_mask);  // [B, H, T, Dh]
  return out_proj(out.transpose(1, 2).reshape({batch, tokens, width}));
}

MlpImpl::MlpImpl(int64_t width, int64_t hidden) {
  c_fc = register_module("c_fc", torch::nn::Linear(width, hidden));
  gelu = register_module("gelu", torch::nn::GELU());
  c_proj = register_module("c_proj", torch::nn::Linear(hidden, width));
}

torch::Tensor MlpImpl::forward(const torch::Tensor& x) {
  return c_proj(gelu(c_fc(x)));
}

ResidualAttentionBlockImpl::ResidualAttentionBlockImpl(int64_t width, int64_t heads, int64_t mlp_width) {
  ln_1 = register_module("ln_1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({width})));
  attn = register_module("attn", Attention(width, heads));
  ln_2 = register_module("ln_2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({width})));
  mlp = register_module("mlp", Mlp(width, mlp_width));
}

torch::Tensor ResidualAttentionBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& attn_mask) {
  const torch::Tensor h = x + attn(layer_norm_fp32(ln_1, x), attn_mask);
  return h + mlp(layer_norm_fp32(ln_2, h));
}

namespace {

// Keeps the block alive inside the autograd graph (saved_data holds IValues).
struct BlockHolder : torch::CustomClassHolder {
  explicit BlockHolder(std::shared_ptr<ResidualAttentionBlockImpl> b) : block(std::move(b)) {}
  std::shared_ptr<ResidualAttentionBlockImpl> block;
};

// Gradient checkpointing as torch.utils.checkpoint (reentrant variant): the
// block's parameters are inputs of the node so their gradients flow through it.
class CheckpointFunction : public torch::autograd::Function<CheckpointFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, torch::TensorList params,
                               const c10::intrusive_ptr<BlockHolder>& holder) {
    ctx->save_for_backward({x});
    ctx->saved_data["block"] = c10::IValue::make_capsule(holder);
    torch::NoGradGuard no_grad;
    return holder->block->forward(x);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const torch::Tensor saved = ctx->get_saved_variables()[0];
    const auto capsule = ctx->saved_data["block"].toCapsule();
    const auto& block = static_cast<BlockHolder*>(capsule.get())->block;
    const std::vector<torch::Tensor> params = block->parameters();

    torch::Tensor x = saved.detach().requires_grad_(true);
    std::vector<torch::Tensor> inputs{x};
    std::vector<size_t> where;  // index in params of inputs[1 + j]
    for (size_t i = 0; i < params.size(); ++i) {
      if (params[i].requires_grad()) {
        inputs.push_back(params[i]);
        where.push_back(i);
      }
    }
    torch::Tensor out;
    {
      torch::AutoGradMode enable_grad(true);
      out = block->forward(x);
    }
    const variable_list grads =
        torch::autograd::grad({out}, inputs, {grad_outputs[0]}, /*retain_graph=*/false,
                              /*create_graph=*/false, /*allow_unused=*/true);
    // One gradient per forward input: x, each parameter, and none for the holder.
    variable_list result(params.size() + 2);
    result[0] = grads[0];
    for (size_t j = 0; j < where.size(); ++j) result[1 + where[j]] = grads[1 + j];
    return result;
  }
};

}  // namespace

torch::Tensor checkpointed_block(const ResidualAttentionBlock& block, const torch::Tensor& x) {
  const std::vector<torch::Tensor> params = block->parameters();
  return CheckpointFunction::apply(x, torch::TensorList(params),
                                   c10::make_intrusive<BlockHolder>(block.ptr()));
}

VisionTransformerImpl::VisionTransformerImpl(const VitConfig& config) : config_(config) {
  const int64_t width = config.width;
  conv1 = register_module(
      "conv1",
      torch::nn::Conv2d(
          torch::nn::Conv2dOptions(3, width, config.patch_size).stride(config.patch_size).bias(false)));
  class_embedding = register_parameter("class_embedding", torch::empty({width}));
  positional_embedding =
      register_parameter("positional_embedding", torch::empty({config.num_patches() + 1, width}));
  ln_pre = register_module("ln_pre", torch::nn::LayerNorm(torch::nn::LayerNormOptions({width})));
  transformer = register_module("transformer", std::make_shared<torch::nn::Module>("Transformer"));
  resblocks = transformer->register_module("resblocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < config.layers; ++i) {
    resblocks->push_back(ResidualAttentionBlock(width, config.heads, config.mlp_width()));
  }
  ln_post = register_module("ln_post", torch::nn::LayerNorm(torch::nn::LayerNormOptions({width})));

  torch::NoGradGuard no_grad;
  const double scale = std::pow(static_cast<double>(width), -0.5);
  class_embedding.normal_(0.0, scale);
  positional_embedding.normal_(0.0, scale);
  init_residual_blocks(resblocks, width);
}

void init_residual_blocks(torch::nn::ModuleList& blocks, int64_t width) {
  torch::NoGradGuard no_grad;
  const double attn_std = std::pow(static_cast<double>(width), -0.5);
  const double proj_std = attn_std * std::pow(2.0 * static_cast<double>(blocks->size()), -0.5);
  const double fc_std = std::pow(2.0 * static_cast<double>(width), -0.5);
  for (size_t i = 0; i < blocks->size(); ++i) {
    const auto block = blocks->ptr<ResidualAttentionBlockImpl>(i);
    block->attn->in_proj_weight.normal_(0.0, attn_std);
    block->attn->out_proj->weight.normal_(0.0, proj_std);
    block->attn->out_proj->bias.zero_();
    block->mlp->c_fc->weight.normal_(0.0, fc_std);
    block->mlp->c_proj->weight.normal_(0.0, proj_std);
  }
}

int64_t VisionTransformerImpl::parameter_count() const {
  int64_t n = 0;
  for (const auto& p : parameters()) n += p.numel();
  return n;
}

torch::Tensor VisionTransformerImpl::forward(const torch::Tensor& images) {
  const int64_t size = config_.image_size;
  if (images.dim() != 4 || images.size(1) != 3 || images.size(2) != size || images.size(3) != size) {
    fail("{}: expected images [B, 3, {}, {}], got {}", config_.name, size, size, c10::str(images.sizes()));
  }
  const torch::Tensor x = conv1(images.to(conv1->weight.scalar_type()));  // [B, W, g, g]
  const int64_t batch = x.size(0), width = x.size(1);
  const torch::Tensor patches = x.flatten(2).transpose(1, 2);  // [B, N, W]
  const torch::Tensor cls = class_embedding.to(x.scalar_type()).view({1, 1, width}).expand({batch, 1, width});
  torch::Tensor h = torch::cat({cls, patches}, 1) + positional_embedding.to(x.scalar_type());
  if (is_training() && config_.patch_dropout > 0.0) h = drop_patches(h, config_.patch_dropout);
  h = layer_norm_fp32(ln_pre, h);
  const bool checkpoint = config_.grad_checkpointing && is_training() && torch::GradMode::is_enabled();
  for (size_t i = 0; i < resblocks->size(); ++i) {
    ResidualAttentionBlock block(resblocks->ptr<ResidualAttentionBlockImpl>(i));
    h = checkpoint ? checkpointed_block(block, h) : block(h);
  }
  return config_.ln_post ? layer_norm_fp32(ln_post, h) : h;
}

}  // namespace flame::vision
