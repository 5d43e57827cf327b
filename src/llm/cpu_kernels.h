// Fused CPU kernels for the element-wise parts of the forward pass that torch
// 1.13 runs as several slow passes: SiLU(gate) * up, and the masked softmax of
// the attention scores. AVX-512 (F + BW) with a runtime check; callers fall
// back to tensor ops when cpu_kernels_available() is false (other CPUs, CUDA).
// Arithmetic follows the tensor-op version (fp32 math, bf16 rounded to nearest
// even where the tensor ops round); exp differs from libm/Sleef by ~1 ulp.
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace flame::llm {

// True on a CPU with AVX-512 F, BW and VL, unless disabled (tests of the fallback).
bool cpu_kernels_available();
void set_cpu_kernels_enabled(bool enabled);

// silu(gate) * up for [rows, n] views with unit stride in the last dim (e.g.
// the two halves of a fused gate/up output). bf16 (silu rounded to bf16 before
// the product, as torch does) or f32. Returns a new contiguous [rows, n] tensor.
torch::Tensor silu_mul(const torch::Tensor& gate, const torch::Tensor& up);

// In place over fp32 scores [N, H, Q, S] (contiguous): softmax over S of the
// entries `allowed` permits, 0 elsewhere; a row with nothing allowed becomes
// all 0. allowed: [N, Q, S] bool with unit stride in S (shared by the H rows).
void masked_softmax_(torch::Tensor& scores, const torch::Tensor& allowed);

}  // namespace flame::llm
