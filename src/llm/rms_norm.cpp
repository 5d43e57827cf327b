#include "llm/rms_norm.h"

#include <ATen/Parallel.h>

#include <cmath>

namespace flame::llm {

namespace {

torch::Tensor rms_norm_ops(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  const torch::Tensor x32 = x.to(torch::kFloat32);
  const torch::Tensor inv_rms = torch::rsqrt(x32.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return weight * (x32 * inv_rms).to(x.scalar_type());
}

template <typename T>
void rms_norm_rows(const T* x, const T* weight, T* out, int64_t rows, int64_t hidden, float eps) {
  // ~32k elements per task: small batches stay on one thread.
  const int64_t grain = std::max<int64_t>(1, 32768 / hidden);
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const T* xr = x + r * hidden;
      T* yr = out + r * hidden;
      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};  // independent partial sums: no serial dependency
      int64_t i = 0;
      for (; i + 8 <= hidden; i += 8) {
        for (int j = 0; j < 8; ++j) {
          const float v = static_cast<float>(xr[i + j]);
          acc[j] += v * v;
        }
      }
      for (; i < hidden; ++i) acc[0] += static_cast<float>(xr[i]) * static_cast<float>(xr[i]);
      float sum = 0;
      for (float a : acc) sum += a;
      const float inv_rms = 1.0f / std::sqrt(sum / static_cast<float>(hidden) + eps);
      for (int64_t k = 0; k < hidden; ++k) {
        // Rounded to T before the weight multiplies it, as HF does.
        const T normed = static_cast<T>(static_cast<float>(xr[k]) * inv_rms);
        yr[k] = static_cast<T>(static_cast<float>(weight[k]) * static_cast<float>(normed));
      }
    }
  });
}

}  // namespace

torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  const auto dtype = x.scalar_type();
  const bool kernel = x.device().is_cpu() && weight.device().is_cpu() && weight.scalar_type() == dtype &&
                      weight.is_contiguous() && weight.dim() == 1 && weight.size(0) == x.size(-1) &&
                      (dtype == torch::kFloat32 || dtype == torch::kBFloat16 || dtype == torch::kFloat16);
  if (!kernel) return rms_norm_ops(x, weight, eps);
  const torch::Tensor xc = x.contiguous();
  torch::Tensor out = torch::empty_like(xc);
  const int64_t hidden = x.size(-1), rows = hidden > 0 ? xc.numel() / hidden : 0;
  AT_DISPATCH_FLOATING_TYPES_AND2(torch::kBFloat16, torch::kHalf, dtype, "rms_norm", [&] {
    rms_norm_rows<scalar_t>(xc.data_ptr<scalar_t>(), weight.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), rows,
                            hidden, static_cast<float>(eps));
  });
  return out;
}

}  // namespace flame::llm
