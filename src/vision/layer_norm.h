// LayerNorm computed in fp32 whatever the input dtype, the result cast back
// (OpenCLIP's LayerNorm): under bf16 autocast the input comes from a bf16
// matmul while the norm's parameters stay fp32, which torch 1.13's CPU
// layer_norm does not accept mixed; fp32 statistics are also more accurate.
#pragma once

#include <torch/torch.h>

namespace flame::vision {

inline torch::Tensor layer_norm_fp32(torch::nn::LayerNorm norm, const torch::Tensor& x) {  // a holder: shared, cheap to copy
  if (x.scalar_type() == norm->weight.scalar_type()) return norm(x);
  return norm(x.to(norm->weight.scalar_type())).to(x.scalar_type());
}

}  // namespace flame::vision
