// The multi-positive losses against direct loop formulations (values and
// gradients), against the standard CLIP and SigLIP formulas for K = 1, and
// their fp32 computation for bf16 inputs.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <utility>
#include <vector>

#include "train/loss.h"
#include "util/error.h"

namespace flame::train {
namespace {

namespace F = torch::nn::functional;

struct Inputs {
  torch::Tensor image;  // [N, D] leaf, L2-normalised
  torch::Tensor text;   // [N, K, D] leaf, L2-normalised
  torch::Tensor scale;  // scalar leaf
  torch::Tensor bias;   // scalar leaf
};

Inputs random_inputs(int64_t n, int64_t k, int64_t d, uint64_t seed) {
  torch::manual_seed(seed);
  Inputs in;
  in.image = F::normalize(torch::randn({n, d}), F::NormalizeFuncOptions().dim(-1)).requires_grad_(true);
  in.text = F::normalize(torch::randn({n, k, d}), F::NormalizeFuncOptions().dim(-1)).requires_grad_(true);
  in.scale = torch::full({}, 3.0 + static_cast<double>(seed % 5)).requires_grad_(true);
  in.bias = torch::full({}, -1.5).requires_grad_(true);
  return in;
}

// z[i][j][k] = scale * <image_i, text_jk>, one scalar at a time, in double.
std::vector<std::vector<std::vector<torch::Tensor>>> loop_logits(const Inputs& in) {
  const torch::Tensor x = in.image.to(torch::kDouble);
  const torch::Tensor t = in.text.to(torch::kDouble);
  const torch::Tensor s = in.scale.to(torch::kDouble);
  const int64_t n = t.size(0), k = t.size(1), d = t.size(2);
  std::vector<std::vector<std::vector<torch::Tensor>>> z(n, std::vector<std::vector<torch::Tensor>>(n));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      for (int64_t f = 0; f < k; ++f) {
        torch::Tensor dot = torch::zeros({}, torch::kDouble);
        for (int64_t e = 0; e < d; ++e) dot = dot + x[i][e] * t[j][f][e];
        z[i][j].push_back(s * dot);
      }
    }
  }
  return z;
}

torch::Tensor loop_infonce(const Inputs& in) {
  const auto z = loop_logits(in);
  const int64_t n = in.text.size(0), k = in.text.size(1);
  torch::Tensor t2i = torch::zeros({}, torch::kDouble);
  torch::Tensor i2t = torch::zeros({}, torch::kDouble);
  for (int64_t f = 0; f < k; ++f) {
    for (int64_t a = 0; a < n; ++a) {
      // Text (a, f) against every image i; image a against every text (j, f).
      torch::Tensor sum_images = torch::zeros({}, torch::kDouble);
      torch::Tensor sum_texts = torch::zeros({}, torch::kDouble);
      for (int64_t b = 0; b < n; ++b) {
        sum_images = sum_images + torch::exp(z[b][a][f]);
        sum_texts = sum_texts + torch::exp(z[a][b][f]);
      }
      t2i = t2i + torch::log(sum_images) - z[a][a][f];
      i2t = i2t + torch::log(sum_texts) - z[a][a][f];
    }
  }
  return (t2i + i2t) / static_cast<double>(2 * n * k);
}

torch::Tensor loop_sigmoid(const Inputs& in) {
  const auto z = loop_logits(in);
  const torch::Tensor b = in.bias.to(torch::kDouble);
  const int64_t n = in.text.size(0), k = in.text.size(1);
  torch::Tensor sum = torch::zeros({}, torch::kDouble);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      const double label = i == j ? 1.0 : -1.0;
      for (int64_t f = 0; f < k; ++f) {
        // -log sigmoid(y z) = log(1 + exp(-y z))
        sum = sum + torch::log(1.0 + torch::exp(-label * (z[i][j][f] + b)));
      }
    }
  }
  return sum / static_cast<double>(n * k);
}

std::vector<torch::Tensor> grads_of(const torch::Tensor& loss, const Inputs& in) {
  return torch::autograd::grad({loss}, {in.image, in.text, in.scale, in.bias}, {}, false, false,
                               /*allow_unused=*/true);
}

void expect_same(const torch::Tensor& loss, const torch::Tensor& reference, const Inputs& in,
                 bool uses_bias) {
  EXPECT_EQ(loss.scalar_type(), torch::kFloat);
  EXPECT_EQ(loss.dim(), 0);
  EXPECT_NEAR(loss.item<double>(), reference.item<double>(), 1e-5 * (1.0 + reference.item<double>()));
  const auto got = grads_of(loss, in);
  const auto want = grads_of(reference, in);
  const char* names[] = {"image", "text", "scale", "bias"};
  for (size_t g = 0; g < 4; ++g) {
    if (g == 3 && !uses_bias) {
      EXPECT_FALSE(got[g].defined());
      continue;
    }
    ASSERT_TRUE(got[g].defined()) << names[g];
    EXPECT_TRUE(torch::allclose(got[g], want[g].to(torch::kFloat), 1e-4, 1e-6)) << names[g] << "\n"
                                                                                << got[g] << "\n"
                                                                                << want[g];
  }
}

const std::vector<std::pair<int64_t, int64_t>> kShapes = {{1, 1}, {2, 1}, {3, 2}, {5, 3}, {4, 5}};

TEST(Loss, InfoNceMatchesLoops) {
  uint64_t seed = 1;
  for (const auto& [n, k] : kShapes) {
    SCOPED_TRACE(testing::Message() << "N=" << n << " K=" << k);
    const Inputs in = random_inputs(n, k, 6, seed++);
    expect_same(multi_positive_infonce(in.image, in.text, in.scale), loop_infonce(in), in, false);
  }
}

TEST(Loss, SigmoidMatchesLoops) {
  uint64_t seed = 10;
  for (const auto& [n, k] : kShapes) {
    SCOPED_TRACE(testing::Message() << "N=" << n << " K=" << k);
    const Inputs in = random_inputs(n, k, 6, seed++);
    expect_same(multi_positive_sigmoid(in.image, in.text, in.scale, in.bias), loop_sigmoid(in), in, true);
  }
}

TEST(Loss, OneFacetIsClip) {
  const Inputs in = random_inputs(6, 1, 8, 21);
  const torch::Tensor logits = in.scale * torch::matmul(in.image, in.text.select(1, 0).t());
  const torch::Tensor labels = torch::arange(6);
  const torch::Tensor clip = (F::cross_entropy(logits, labels) + F::cross_entropy(logits.t(), labels)) / 2;
  EXPECT_NEAR(multi_positive_infonce(in.image, in.text, in.scale).item<double>(), clip.item<double>(), 1e-6);
  // K facets = the mean of K per-facet CLIP losses.
  const Inputs many = random_inputs(5, 3, 8, 22);
  double mean = 0;
  for (int64_t f = 0; f < 3; ++f) {
    mean += multi_positive_infonce(many.image, many.text.slice(1, f, f + 1), many.scale).item<double>() / 3;
  }
  EXPECT_NEAR(multi_positive_infonce(many.image, many.text, many.scale).item<double>(), mean, 1e-5);
}

TEST(Loss, OneFacetIsSigLip) {
  const Inputs in = random_inputs(6, 1, 8, 23);
  const torch::Tensor logits = in.scale * torch::matmul(in.image, in.text.select(1, 0).t()) + in.bias;
  const torch::Tensor labels = 2 * torch::eye(6) - 1;
  const torch::Tensor siglip = -F::logsigmoid(labels * logits).sum() / 6;
  EXPECT_NEAR(multi_positive_sigmoid(in.image, in.text, in.scale, in.bias).item<double>(),
              siglip.item<double>(), 1e-6);
  const Inputs many = random_inputs(5, 4, 8, 24);
  double mean = 0;
  for (int64_t f = 0; f < 4; ++f) {
    mean += multi_positive_sigmoid(many.image, many.text.slice(1, f, f + 1), many.scale, many.bias)
                .item<double>() /
            4;
  }
  EXPECT_NEAR(multi_positive_sigmoid(many.image, many.text, many.scale, many.bias).item<double>(), mean,
              1e-5);
}

TEST(Loss, Bf16InputsAreComputedInFp32) {
  const Inputs in = random_inputs(8, 3, 32, 31);
  const torch::Tensor image = in.image.detach().to(torch::kBFloat16).requires_grad_(true);
  const torch::Tensor text = in.text.detach().to(torch::kBFloat16).requires_grad_(true);
  const torch::Tensor scale = torch::full({}, 20.0);  // a trained-CLIP-like temperature
  const torch::Tensor bias = torch::full({}, -5.0);
  const torch::Tensor image32 = image.detach().to(torch::kFloat);
  const torch::Tensor text32 = text.detach().to(torch::kFloat);

  const torch::Tensor nce = multi_positive_infonce(image, text, scale);
  const torch::Tensor sig = multi_positive_sigmoid(image, text, scale, bias);
  EXPECT_EQ(nce.scalar_type(), torch::kFloat);
  EXPECT_EQ(sig.scalar_type(), torch::kFloat);
  // The same numbers as the fp32 loss of the same (rounded) values...
  EXPECT_NEAR(nce.item<double>(), multi_positive_infonce(image32, text32, scale).item<double>(), 1e-6);
  EXPECT_NEAR(sig.item<double>(), multi_positive_sigmoid(image32, text32, scale, bias).item<double>(), 1e-6);
  // ...and close to the fp32 loss of the unrounded inputs.
  const double nce32 = multi_positive_infonce(in.image, in.text, scale).item<double>();
  const double sig32 = multi_positive_sigmoid(in.image, in.text, scale, bias).item<double>();
  EXPECT_NEAR(nce.item<double>(), nce32, 0.02 * nce32);
  EXPECT_NEAR(sig.item<double>(), sig32, 0.02 * sig32);
  // Gradients come back in the inputs' dtype.
  nce.backward();
  EXPECT_EQ(image.grad().scalar_type(), torch::kBFloat16);
  EXPECT_EQ(text.grad().scalar_type(), torch::kBFloat16);
}

TEST(Loss, RejectsBadShapes) {
  const torch::Tensor image = torch::randn({4, 8});
  const torch::Tensor scale = torch::full({}, 10.0);
  EXPECT_THROW(multi_positive_infonce(image, torch::randn({4, 8}), scale), Error);
  EXPECT_THROW(multi_positive_infonce(image, torch::randn({3, 2, 8}), scale), Error);
  EXPECT_THROW(multi_positive_infonce(image, torch::randn({4, 2, 7}), scale), Error);
  EXPECT_THROW(multi_positive_infonce(image, torch::randn({4, 2, 8}), torch::ones({2})), Error);
  EXPECT_THROW(multi_positive_sigmoid(image, torch::randn({4, 2, 8}), scale, torch::Tensor()), Error);
  EXPECT_NO_THROW(multi_positive_sigmoid(image, torch::randn({4, 2, 8}), torch::ones({1}), torch::ones({1})));
}

}  // namespace
}  // namespace flame::train
