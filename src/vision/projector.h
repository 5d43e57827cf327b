// Projector: FLAME's MLP from the ViT width to the LLM's embedding space,
// Linear -> GELU -> Linear -> LayerNorm, applied to every token.
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace flame::vision {

class ProjectorImpl : public torch::nn::Module {
 public:
  ProjectorImpl(int64_t in_dim, int64_t hidden_dim, int64_t out_dim);
  torch::Tensor forward(const torch::Tensor& x);  // [..., in_dim] -> [..., out_dim]

  torch::nn::Linear fc1{nullptr};
  torch::nn::GELU gelu{nullptr};
  torch::nn::Linear fc2{nullptr};
  torch::nn::LayerNorm norm{nullptr};
};
TORCH_MODULE(Projector);

}  // namespace flame::vision
