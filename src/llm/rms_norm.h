// RMSNorm as Hugging Face computes it for Llama/Mistral/Qwen2: normalise in
// fp32, round to the input dtype, then multiply by the weight in that dtype.
#pragma once

#include <torch/torch.h>

namespace flame::llm {

// x: [..., hidden]; weight: [hidden] in x's dtype. On the CPU a single-pass
// kernel (one allocation, each row read twice while in cache); elsewhere the
// same arithmetic with tensor ops.
torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps);

}  // namespace flame::llm
