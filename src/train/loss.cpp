#include "train/loss.h"

#include "util/error.h"

namespace flame::train {

namespace {

namespace F = torch::nn::functional;

void check_shapes(const torch::Tensor& image, const torch::Tensor& text, const char* loss) {
  if (image.dim() != 2 || text.dim() != 3 || text.size(0) != image.size(0) || text.size(2) != image.size(1)) {
    fail("{}: expected image [N, D] and text [N, K, D], got {} and {}", loss, c10::str(image.sizes()),
         c10::str(text.sizes()));
  }
  if (image.size(0) == 0 || text.size(1) == 0) fail("{}: empty batch", loss);
}

void check_scalar(const torch::Tensor& t, const char* what, const char* loss) {
  if (!t.defined() || t.numel() != 1) fail("{}: {} must be a scalar tensor", loss, what);
}

// z[i, j, k] = <image_i, text_jk> in fp32: [N, N, K].
torch::Tensor similarities(const torch::Tensor& image, const torch::Tensor& text) {
  const int64_t n = text.size(0), k = text.size(1), d = text.size(2);
  const torch::Tensor x = image.to(torch::kFloat);
  const torch::Tensor t = text.to(torch::kFloat).reshape({n * k, d});
  return torch::matmul(x, t.t()).view({n, n, k});
}

}  // namespace

torch::Tensor multi_positive_infonce(const torch::Tensor& image, const torch::Tensor& text,
                                     const torch::Tensor& scale) {
  check_shapes(image, text, "multi_positive_infonce");
  check_scalar(scale, "scale", "multi_positive_infonce");
  const int64_t n = text.size(0), k = text.size(1);
  const torch::Tensor logits = similarities(image, text) * scale.to(torch::kFloat).reshape({});  // [i, j, k]
  const torch::Tensor targets = torch::arange(n, logits.options().dtype(torch::kLong));
  // Rows (j, k) over images i; target j.
  const torch::Tensor t2i = logits.permute({1, 2, 0}).reshape({n * k, n});
  const torch::Tensor loss_t2i = F::cross_entropy(t2i, targets.repeat_interleave(k));
  // Rows (k, i) over the texts j of facet k; target i.
  const torch::Tensor i2t = logits.permute({2, 0, 1}).reshape({k * n, n});
  const torch::Tensor loss_i2t = F::cross_entropy(i2t, targets.repeat({k}));
  return (loss_t2i + loss_i2t) * 0.5;
}

torch::Tensor multi_positive_sigmoid(const torch::Tensor& image, const torch::Tensor& text,
                                     const torch::Tensor& scale, const torch::Tensor& bias) {
  check_shapes(image, text, "multi_positive_sigmoid");
  check_scalar(scale, "scale", "multi_positive_sigmoid");
  check_scalar(bias, "bias", "multi_positive_sigmoid");
  const int64_t n = text.size(0), k = text.size(1);
  const torch::Tensor logits =
      similarities(image, text) * scale.to(torch::kFloat).reshape({}) + bias.to(torch::kFloat).reshape({});
  // y_ij = 2 [i == j] - 1, broadcast over the facets.
  const torch::Tensor labels = (2 * torch::eye(n, logits.options()) - 1).unsqueeze(-1);
  return -F::logsigmoid(labels * logits).sum() / static_cast<double>(n * k);
}

}  // namespace flame::train
