#include "vision/projector.h"

#include "util/error.h"
#include "vision/layer_norm.h"

namespace flame::vision {

ProjectorImpl::ProjectorImpl(int64_t in_dim, int64_t hidden_dim, int64_t out_dim) {
  if (in_dim <= 0 || hidden_dim <= 0 || out_dim <= 0) {
    fail("projector dimensions must be positive, got {} -> {} -> {}", in_dim, hidden_dim, out_dim);
  }
  fc1 = register_module("fc1", torch::nn::Linear(in_dim, hidden_dim));
  gelu = register_module("gelu", torch::nn::GELU());
  fc2 = register_module("fc2", torch::nn::Linear(hidden_dim, out_dim));
  norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({out_dim})));
}

torch::Tensor ProjectorImpl::forward(const torch::Tensor& x) {
  return layer_norm_fp32(norm, fc2(gelu(fc1(x))));
}

}  // namespace flame::vision
