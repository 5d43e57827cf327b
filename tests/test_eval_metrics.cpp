// Retrieval recall and classification accuracy on hand-worked cases (ties
// broken pessimistically), against a sort-based reference on a large random
// matrix; the linear probe on separable and random data, and its optimum
// against an autograd gradient of the documented objective.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "eval/linear_probe.h"
#include "eval/metrics.h"
#include "util/error.h"

namespace flame::eval {
namespace {

// Runs fn and expects a flame::Error whose message contains `needle`.
void expect_error(const std::function<void()>& fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "expected an error containing '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

torch::Tensor matrix(const std::vector<std::vector<double>>& rows) {
  std::vector<torch::Tensor> out;
  for (const auto& row : rows) out.push_back(torch::tensor(row, torch::kFloat));
  return torch::stack(out);
}

// 3 images x 6 texts, captions (0, 1) of image 0, (2, 3) of image 1, (4, 5) of image 2.
//   image-to-text ranks: image 0 -> 1 (t0 on top); image 1 -> 3 (best own 0.6 behind
//   t0 0.8, t1 0.7); image 2 -> 2 (only its second caption t5 0.8 counts, behind t3 0.9).
//   text-to-image ranks: 1, 3, 1, 3, 1, 1.
TEST(EvalMetricsRetrieval, HandWorkedRanks) {
  const torch::Tensor sim = matrix({{0.9, 0.1, 0.5, 0.2, 0.3, 0.4},  //
                                    {0.8, 0.7, 0.6, 0.1, 0.2, 0.3},
                                    {0.1, 0.2, 0.3, 0.9, 0.4, 0.8}});
  const RetrievalRecall r = retrieval_recall(sim, {0, 0, 1, 1, 2, 2}, {1, 2, 3, 5});
  EXPECT_DOUBLE_EQ(r.image_to_text.at(1), 1.0 / 3);
  EXPECT_DOUBLE_EQ(r.image_to_text.at(2), 2.0 / 3);
  EXPECT_DOUBLE_EQ(r.image_to_text.at(3), 1.0);
  EXPECT_DOUBLE_EQ(r.image_to_text.at(5), 1.0);
  EXPECT_DOUBLE_EQ(r.text_to_image.at(1), 4.0 / 6);
  EXPECT_DOUBLE_EQ(r.text_to_image.at(2), 4.0 / 6);
  EXPECT_DOUBLE_EQ(r.text_to_image.at(3), 1.0);
  EXPECT_DOUBLE_EQ(r.text_to_image.at(5), 1.0);
  EXPECT_EQ(r.image_to_text.size(), 4u);
}

// Image 0's first caption ranks last of all texts, its second first: still a hit at 1.
// Captions are interleaved (text_image need not be sorted).
TEST(EvalMetricsRetrieval, SecondCaptionHit) {
  const torch::Tensor sim = matrix({{0.0, 0.5, 0.6, 0.9},  //
                                    {0.1, 0.4, 0.3, 0.2}});
  const std::vector<int64_t> text_image = {0, 1, 1, 0};
  const RetrievalRecall r = retrieval_recall(sim, text_image, {1});
  EXPECT_DOUBLE_EQ(r.image_to_text.at(1), 1.0);
  // text-to-image: t0 (image 0, 0.0 vs 0.1) misses, t1 (image 1, 0.4 vs 0.5)
  // misses, t2 (0.3 vs 0.6) misses, t3 (0.9 vs 0.2) hits.
  EXPECT_DOUBLE_EQ(r.text_to_image.at(1), 0.25);
}

// A constant matrix: every wrong candidate ties with the correct one and is put
// ahead of it. Image-to-text rank = 1 + 4 other images' texts = 5; text-to-image
// rank = 1 + 2 other images = 3.
TEST(EvalMetricsRetrieval, ConstantMatrixIsPessimistic) {
  const torch::Tensor sim = torch::full({3, 6}, 0.5);
  const RetrievalRecall r = retrieval_recall(sim, {0, 0, 1, 1, 2, 2}, {1, 2, 3, 4, 5});
  for (const int k : {1, 2, 3, 4}) EXPECT_DOUBLE_EQ(r.image_to_text.at(k), 0.0) << k;
  EXPECT_DOUBLE_EQ(r.image_to_text.at(5), 1.0);
  EXPECT_DOUBLE_EQ(r.text_to_image.at(1), 0.0);
  EXPECT_DOUBLE_EQ(r.text_to_image.at(2), 0.0);
  EXPECT_DOUBLE_EQ(r.text_to_image.at(3), 1.0);
}

// Two captions of the same image tied at the top are both correct: no penalty.
// A wrong text tied with them is (pessimistically) ahead.
TEST(EvalMetricsRetrieval, TiesAmongOwnCaptionsAreNotPenalised) {
  const torch::Tensor own_tie = matrix({{1, 1, 0, 0}, {0, 0, 1, 1}});
  EXPECT_DOUBLE_EQ(retrieval_recall(own_tie, {0, 0, 1, 1}, {1}).image_to_text.at(1), 1.0);
  const torch::Tensor wrong_tie = matrix({{1, 1, 1, 0}, {0, 0, 1, 1}});
  const RetrievalRecall r = retrieval_recall(wrong_tie, {0, 0, 1, 1}, {1, 2});
  EXPECT_DOUBLE_EQ(r.image_to_text.at(1), 0.5);
  EXPECT_DOUBLE_EQ(r.image_to_text.at(2), 1.0);
  // Text 2 (image 1) ties 1 = 1 with image 0: pessimistic miss at 1.
  EXPECT_DOUBLE_EQ(r.text_to_image.at(1), 0.75);
}

// CLIP_benchmark's rule (torch argmax / topk: the lower index first among
// equal scores), hand-worked on a constant 3 x 6 matrix with captions (0, 1),
// (2, 3), (4, 5): image-to-text, image i's first caption has the 2i texts
// before it ahead: ranks 1, 3, 5; text-to-image, a text of image i has the i
// images before it ahead: ranks 1, 1, 2, 2, 3, 3.
TEST(EvalMetricsRetrieval, FirstIndexTiesAsClipBenchmark) {
  const torch::Tensor sim = torch::full({3, 6}, 0.5);
  const RetrievalRecall r = retrieval_recall(sim, {0, 0, 1, 1, 2, 2}, {1, 2, 3, 5}, TieRule::kFirstIndex);
  EXPECT_DOUBLE_EQ(r.image_to_text.at(1), 1.0 / 3);
  EXPECT_DOUBLE_EQ(r.image_to_text.at(2), 1.0 / 3);
  EXPECT_DOUBLE_EQ(r.image_to_text.at(3), 2.0 / 3);
  EXPECT_DOUBLE_EQ(r.image_to_text.at(5), 1.0);
  EXPECT_DOUBLE_EQ(r.text_to_image.at(1), 2.0 / 6);
  EXPECT_DOUBLE_EQ(r.text_to_image.at(2), 4.0 / 6);
  EXPECT_DOUBLE_EQ(r.text_to_image.at(3), 1.0);
  // A wrong text tied with image 0's best caption but after it: no longer
  // ahead (pessimistic: 0.5). Image 1's captions t2, t3 tie at 1 and nothing
  // of a lower index scores 1 in its row. Text 2 ties image 0 (lower index): a miss.
  const torch::Tensor wrong_tie = matrix({{1, 1, 1, 0}, {0, 0, 1, 1}});
  const RetrievalRecall w = retrieval_recall(wrong_tie, {0, 0, 1, 1}, {1}, TieRule::kFirstIndex);
  EXPECT_DOUBLE_EQ(w.image_to_text.at(1), 1.0);
  EXPECT_DOUBLE_EQ(w.text_to_image.at(1), 0.75);
  // Without ties both rules agree.
  const torch::Tensor sim2 = matrix({{0.9, 0.1, 0.5, 0.2, 0.3, 0.4},  //
                                     {0.8, 0.7, 0.6, 0.1, 0.2, 0.3},
                                     {0.1, 0.2, 0.3, 0.9, 0.4, 0.8}});
  const RetrievalRecall a = retrieval_recall(sim2, {0, 0, 1, 1, 2, 2}, {1, 2, 3});
  const RetrievalRecall b = retrieval_recall(sim2, {0, 0, 1, 1, 2, 2}, {1, 2, 3}, TieRule::kFirstIndex);
  EXPECT_EQ(a.image_to_text, b.image_to_text);
  EXPECT_EQ(a.text_to_image, b.text_to_image);
}

TEST(EvalMetricsRetrieval, IdentityIsPerfect) {
  const int64_t n = 7;
  std::vector<int64_t> text_image(n);
  for (int64_t i = 0; i < n; ++i) text_image[i] = i;
  const RetrievalRecall r = retrieval_recall(torch::eye(n), text_image);
  for (const int k : {1, 5, 10}) {
    EXPECT_DOUBLE_EQ(r.image_to_text.at(k), 1.0);
    EXPECT_DOUBLE_EQ(r.text_to_image.at(k), 1.0);
  }
  std::vector<int64_t> labels(text_image);
  const ClassificationAccuracy acc = classification_accuracy(torch::eye(n), labels);
  EXPECT_DOUBLE_EQ(acc.top1, 1.0);
  EXPECT_DOUBLE_EQ(acc.top5, 1.0);
  for (int64_t c = 0; c < n; ++c) {
    EXPECT_DOUBLE_EQ(acc.per_class_top1[c], 1.0);
    EXPECT_EQ(acc.per_class_count[c], 1);
  }
}

// 1000 images x 5000 texts (5 captions each, shuffled), random scores (no
// ties), several row blocks: against ranks read off a full descending sort.
TEST(EvalMetricsRetrieval, LargeMatrixMatchesSortReference) {
  const int64_t num_images = 1000, captions = 5, num_texts = num_images * captions;
  std::vector<int64_t> text_image(num_texts);
  for (int64_t t = 0; t < num_texts; ++t) text_image[t] = (t * 7 % num_texts) / captions;  // shuffled order
  // Own captions score higher on average, so recall is neither 0 nor 1.
  const torch::Tensor own = torch::one_hot(torch::tensor(text_image), num_images).t().to(torch::kFloat);
  torch::manual_seed(3);
  const torch::Tensor sim = torch::randn({num_images, num_texts}) + 3 * own;
  const std::vector<int> ks = {1, 5, 10, 50};
  const auto start = std::chrono::steady_clock::now();
  const RetrievalRecall r = retrieval_recall(sim, text_image, ks);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // ~0.3 s on one core (block comparisons, no sort); the loose bound only catches a
  // blow-up, as tests share the cores with others (speed is measured in bench/).
  EXPECT_LT(seconds, 10.0);

  std::vector<int64_t> i2t_rank(num_images), t2i_rank(num_texts);
  const torch::Tensor by_row = torch::argsort(sim, 1, /*descending=*/true);
  const auto rows = by_row.accessor<int64_t, 2>();
  for (int64_t i = 0; i < num_images; ++i) {
    int64_t pos = 0;
    while (text_image[rows[i][pos]] != i) ++pos;
    i2t_rank[i] = pos + 1;
  }
  const torch::Tensor by_column = torch::argsort(sim, 0, /*descending=*/true);
  const auto columns = by_column.accessor<int64_t, 2>();
  for (int64_t t = 0; t < num_texts; ++t) {
    int64_t pos = 0;
    while (columns[pos][t] != text_image[t]) ++pos;
    t2i_rank[t] = pos + 1;
  }
  for (const int k : ks) {
    const double i2t = std::count_if(i2t_rank.begin(), i2t_rank.end(), [k](int64_t x) { return x <= k; });
    const double t2i = std::count_if(t2i_rank.begin(), t2i_rank.end(), [k](int64_t x) { return x <= k; });
    EXPECT_DOUBLE_EQ(r.image_to_text.at(k), i2t / num_images) << k;
    EXPECT_DOUBLE_EQ(r.text_to_image.at(k), t2i / num_texts) << k;
  }
  EXPECT_GT(r.image_to_text.at(1), 0.0);
  EXPECT_LT(r.image_to_text.at(1), 1.0);
}

TEST(EvalMetricsRetrieval, ValidatesInputs) {
  const torch::Tensor sim = torch::rand({3, 4});
  expect_error([&] { retrieval_recall(sim, {0, 1, 2}); }, "text_image has 3 entries");
  expect_error([&] { retrieval_recall(sim, {0, 1, 2, 3}); }, "text 3 has image index 3");
  expect_error([&] { retrieval_recall(sim, {0, -1, 2, 2}); }, "text 1 has image index -1");
  expect_error([&] { retrieval_recall(sim, {0, 0, 2, 2}); }, "image 1 has no text");
  expect_error([&] { retrieval_recall(sim, {0, 1, 2, 2}, {1, 0}); }, "k must be >= 1");
  expect_error([&] { retrieval_recall(torch::rand({4}), {0, 0, 0, 0}); }, "2-D");
  expect_error([&] { retrieval_recall(torch::ones({3, 4}, torch::kLong), {0, 1, 2, 2}); }, "floating point");
  torch::Tensor with_nan = sim.clone();
  with_nan[1][2] = std::nan("");
  expect_error([&] { retrieval_recall(with_nan, {0, 1, 2, 2}); }, "NaN");
}

// Rows: clear hit; true class ties for the top (pessimistic miss); true class
// second; all equal (rank 3). Class 1 has no sample.
TEST(EvalMetricsClassification, TiesAndPerClass) {
  const torch::Tensor logits = matrix({{2, 1, 0}, {1, 1, 0}, {0, 3, 1}, {5, 5, 5}});
  const ClassificationAccuracy acc = classification_accuracy(logits, {0, 0, 2, 2});
  EXPECT_DOUBLE_EQ(acc.top1, 0.25);
  EXPECT_DOUBLE_EQ(acc.top5, 1.0);  // 3 classes: top-5 is top-3
  ASSERT_EQ(acc.per_class_top1.size(), 3u);
  EXPECT_EQ(acc.per_class_count, (std::vector<int64_t>{2, 0, 2}));
  EXPECT_DOUBLE_EQ(acc.per_class_top1[0], 0.5);
  EXPECT_DOUBLE_EQ(acc.per_class_top1[1], 0.0);
  EXPECT_DOUBLE_EQ(acc.per_class_top1[2], 0.0);
}

// First-index ties (argmax): row 1 (label 0, tied with class 1) is a hit, row
// 3 (label 2, tied with 0 and 1) is not. Mean per-class recall averages the
// classes that have samples (class 1 has none): (2/2 + 0/2) / 2.
TEST(EvalMetricsClassification, FirstIndexTiesAndMeanPerClassRecall) {
  const torch::Tensor logits = matrix({{2, 1, 0}, {1, 1, 0}, {0, 3, 1}, {5, 5, 5}});
  const ClassificationAccuracy first = classification_accuracy(logits, {0, 0, 2, 2}, TieRule::kFirstIndex);
  EXPECT_DOUBLE_EQ(first.top1, 0.5);
  EXPECT_DOUBLE_EQ(first.per_class_top1[0], 1.0);
  EXPECT_DOUBLE_EQ(first.mean_per_class_recall, 0.5);
  EXPECT_DOUBLE_EQ(classification_accuracy(logits, {0, 0, 2, 2}).mean_per_class_recall, 0.25);
  // Imbalanced: three right of class 0, one wrong of class 1: top-1 3/4, balanced 1/2.
  const torch::Tensor imbalanced = matrix({{1, 0}, {1, 0}, {1, 0}, {1, 0}});
  const ClassificationAccuracy b = classification_accuracy(imbalanced, {0, 0, 0, 1}, TieRule::kFirstIndex);
  EXPECT_DOUBLE_EQ(b.top1, 0.75);
  EXPECT_DOUBLE_EQ(b.mean_per_class_recall, 0.5);
  // A constant row: argmax picks class 0, so only class-0 samples are hits.
  const ClassificationAccuracy c =
      classification_accuracy(torch::zeros({3, 4}), {0, 1, 3}, TieRule::kFirstIndex);
  EXPECT_DOUBLE_EQ(c.top1, 1.0 / 3);
  EXPECT_DOUBLE_EQ(c.top5, 1.0);
}

TEST(EvalMetricsClassification, TopFive) {
  const torch::Tensor logits = matrix({{7, 6, 5, 4, 3, 2, 1, 0},    // label 4: rank 5, hit
                                       {7, 6, 5, 4, 3, 2, 1, 0},    // label 5: rank 6, miss
                                       {1, 1, 1, 1, 1, 0, 0, 0},    // label 0: rank 5 (tied), hit
                                       {1, 1, 1, 1, 1, 1, 0, 0},    // label 2: rank 6 (tied), miss
                                       {7, 6, 5, 4, 3, 2, 1, 0}});  // label 0: rank 1
  const ClassificationAccuracy acc = classification_accuracy(logits, {4, 5, 0, 2, 0});
  EXPECT_DOUBLE_EQ(acc.top1, 0.2);
  EXPECT_DOUBLE_EQ(acc.top5, 0.6);
  EXPECT_EQ(acc.per_class_count, (std::vector<int64_t>{2, 0, 1, 0, 1, 1, 0, 0}));
  EXPECT_DOUBLE_EQ(acc.per_class_top1[0], 0.5);
}

TEST(EvalMetricsClassification, ValidatesInputs) {
  const torch::Tensor logits = torch::rand({2, 3});
  expect_error([&] { classification_accuracy(logits, {0}); }, "1 labels for 2 rows");
  expect_error([&] { classification_accuracy(logits, {0, 3}); }, "label 3 of sample 1");
  expect_error([&] { classification_accuracy(logits, {-1, 0}); }, "label -1 of sample 0");
  expect_error([&] { classification_accuracy(torch::rand({0, 3}), {}); }, "empty");
}

struct Split {
  torch::Tensor x;
  torch::Tensor y;
};

// Per class `n` 2-D points around well-separated centres (6 apart, std 1),
// mapped to a skewed scale and offset so that standardisation matters.
Split blobs(int64_t n) {
  const std::vector<std::vector<double>> centres = {{0, 0}, {6, 0}, {3, 5.2}};
  std::vector<torch::Tensor> xs;
  Split s;
  for (int64_t c = 0; c < 3; ++c)
    xs.push_back(torch::randn({n, 2}, torch::kDouble) + torch::tensor(centres[c], torch::kDouble));
  s.y = torch::arange(3).repeat_interleave(n);
  s.x = (torch::cat(xs) * torch::tensor({100.0, 0.01}, torch::kDouble) + 50).to(torch::kFloat);
  return s;
}

torch::Tensor random_labels(int64_t n, int64_t classes) {
  return torch::randint(classes, {n}, torch::kLong);
}

std::vector<int64_t> to_vector(const torch::Tensor& labels) {
  const torch::Tensor t = labels.to(torch::kLong).contiguous();
  return std::vector<int64_t>(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel());
}

TEST(LinearProbe, SeparableBlobs) {
  torch::manual_seed(11);
  const Split train = blobs(100), val = blobs(50), test = blobs(100);
  const LinearProbeOptions options;
  const LinearProbeResult r = linear_probe(train.x, train.y, val.x, val.y, test.x, test.y, options);
  EXPECT_GE(r.test_top1, 0.95);
  EXPECT_GE(r.val_top1, 0.95);
  ASSERT_EQ(r.val_top1_by_l2.size(), options.l2_grid.size());
  ASSERT_TRUE(r.val_top1_by_l2.count(r.best_l2));
  EXPECT_DOUBLE_EQ(r.val_top1_by_l2.at(r.best_l2), r.val_top1);
  // The best val accuracy; among equals, the largest l2.
  double best = 0, largest = 0;
  for (const auto& [l2, acc] : r.val_top1_by_l2) best = std::max(best, acc);
  for (const auto& [l2, acc] : r.val_top1_by_l2)
    if (acc == best) largest = std::max(largest, l2);
  EXPECT_EQ(r.best_l2, largest);
  // The returned probe works on raw features and reproduces test_top1.
  ASSERT_EQ(r.weight.sizes(), (std::vector<int64_t>{3, 2}));
  ASSERT_EQ(r.bias.sizes(), (std::vector<int64_t>{3}));
  const torch::Tensor logits = test.x.to(torch::kDouble).matmul(r.weight.t()) + r.bias;
  EXPECT_DOUBLE_EQ(classification_accuracy(logits, to_vector(test.y)).top1, r.test_top1);
}

TEST(LinearProbe, DeterministicAndScaleInvariant) {
  torch::manual_seed(12);
  const Split train = blobs(40), val = blobs(20), test = blobs(40);
  LinearProbeOptions options;
  options.l2_grid = {1e-3, 1e-1};
  const LinearProbeResult a = linear_probe(train.x, train.y, val.x, val.y, test.x, test.y, options);
  const LinearProbeResult b = linear_probe(train.x, train.y, val.x, val.y, test.x, test.y, options);
  EXPECT_TRUE(torch::equal(a.weight, b.weight));
  EXPECT_TRUE(torch::equal(a.bias, b.bias));
  EXPECT_EQ(a.val_top1_by_l2, b.val_top1_by_l2);
  // Standardised features: rescaling the inputs changes nothing but the raw weights.
  const auto rescale = [](const torch::Tensor& x) { return x * 1000 - 7; };
  const LinearProbeResult c =
      linear_probe(rescale(train.x), train.y, rescale(val.x), val.y, rescale(test.x), test.y, options);
  EXPECT_EQ(c.best_l2, a.best_l2);
  EXPECT_DOUBLE_EQ(c.test_top1, a.test_top1);
}

TEST(LinearProbe, RandomLabelsNearChance) {
  torch::manual_seed(13);
  const int64_t d = 8;
  const torch::Tensor train_x = torch::randn({300, d}), val_x = torch::randn({150, d}),
                      test_x = torch::randn({900, d});
  LinearProbeOptions options;
  options.l2_grid = {1e-4, 1e-2};
  const LinearProbeResult r = linear_probe(train_x, random_labels(300, 3), val_x, random_labels(150, 3),
                                           test_x, random_labels(900, 3), options);
  EXPECT_GT(r.test_top1, 0.23);
  EXPECT_LT(r.test_top1, 0.44);
}

// At the returned optimum the gradient of the documented objective, written out
// independently and differentiated by autograd, vanishes.
TEST(LinearProbe, OptimumHasZeroGradient) {
  torch::manual_seed(14);
  const int64_t n_train = 24, n_val = 12, d = 3, c = 3;
  const torch::Tensor train_x = torch::randn({n_train, d}, torch::kDouble),
                      val_x = torch::randn({n_val, d}, torch::kDouble);
  const torch::Tensor train_y = random_labels(n_train, c), val_y = random_labels(n_val, c);
  LinearProbeOptions options;
  options.l2_grid = {3e-2};
  options.standardize = false;
  const LinearProbeResult r = linear_probe(train_x, train_y, val_x, val_y, val_x, val_y, options);
  EXPECT_EQ(r.best_l2, 3e-2);

  // The refit is on train + val.
  const torch::Tensor x = torch::cat({train_x, val_x});
  const std::vector<int64_t> y = to_vector(torch::cat({train_y, val_y}));
  const torch::Tensor w = r.weight.clone().requires_grad_(true);
  const torch::Tensor b = r.bias.clone().requires_grad_(true);
  torch::Tensor loss = torch::zeros({}, torch::kDouble);
  for (int64_t i = 0; i < x.size(0); ++i) {
    const torch::Tensor z = torch::mv(w, x[i]) + b;
    loss = loss + (torch::logsumexp(z, 0) - z[y[i]]);
  }
  loss = loss / static_cast<double>(x.size(0)) + 0.5 * 3e-2 * (w * w).sum();
  loss.backward();
  EXPECT_LT(w.grad().abs().max().item<double>(), 1e-5);
  EXPECT_LT(b.grad().abs().max().item<double>(), 1e-5);
  EXPECT_GT(w.abs().max().item<double>(), 1e-3);  // not the trivial zero start
}

TEST(LinearProbe, ValidatesInputs) {
  const torch::Tensor x = torch::randn({4, 2});
  const torch::Tensor y = torch::tensor({0, 1, 0, 1}, torch::kLong);
  expect_error([&] { linear_probe(x, y, torch::randn({4, 3}), y, x, y); }, "val_x has 3 features");
  expect_error([&] { linear_probe(x, y.slice(0, 0, 2), x, y, x, y); }, "train_y has 2 labels");
  expect_error([&] { linear_probe(x, y, x, y, x, torch::tensor({0, -1, 0, 1})); }, "test_y[1] is negative");
  expect_error([&] { linear_probe(x, y.to(torch::kFloat), x, y, x, y); }, "1-D integer tensor");
  expect_error(
      [&] {
        linear_probe(x, y, x, y, torch::randn({0, 2}), y.slice(0, 0, 0));
      },
      "test split is empty");
  LinearProbeOptions empty_grid;
  empty_grid.l2_grid.clear();
  expect_error([&] { linear_probe(x, y, x, y, x, y, empty_grid); }, "l2_grid is empty");
}

}  // namespace
}  // namespace flame::eval
