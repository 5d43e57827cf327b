// Retrieval recall@k and classification accuracy from score matrices.
//
// Ties are broken pessimistically: a correct item shares its place with every
// wrong item that scores the same and is ranked behind all of them. A model that
// outputs a constant score therefore gets the worst-case recall, never a spurious
// 100%. The rank of the correct item is
//   1 + #(wrong candidates with a strictly greater score) + #(wrong candidates with an equal score).
// With a single correct candidate "wrong" means every other candidate.
//
// CLIP_benchmark (the method's published numbers) ranks with torch.argmax,
// which puts the lower index first among equal scores, and torch.topk, whose
// order among equal scores is unspecified (torch 2.11 on the CPU returned a
// higher index first: tests/python/clip_benchmark_oracle.py). The first-index
// rule below reproduces argmax; with exact ties CLIP_benchmark's recall@k and
// top-k accuracy may differ from it. Without ties all three agree (tested).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <vector>

namespace flame::eval {

// How a correct item tied with wrong ones ranks:
//   kPessimistic: behind every tied wrong item (the default, see above);
//   kFirstIndex:  behind the tied items of lower index only (torch.argmax's
//                 order, as CLIP_benchmark's argmax scores): rank = 1 + #(greater)
//                 + #(equal with a lower index).
enum class TieRule { kPessimistic, kFirstIndex };

// k -> recall@k in [0, 1], for both directions.
struct RetrievalRecall {
  std::map<int, double> image_to_text;
  std::map<int, double> text_to_image;
};

// similarity: [num_images, num_texts], floating point (higher = more similar).
// text_image[t]: the index of the image text t describes; every image needs at
// least one text (an image may have several captions).
//   text-to-image: text t is a hit at k if its image ranks within the top k images.
//   image-to-text: image i is a hit at k if ANY of its captions ranks within the
//     top k texts: its best-scoring caption is ranked against the texts of the
//     other images only (its own other captions are also correct, so they never
//     push it down). Under kFirstIndex the best caption is the lowest-index one
//     of the image's top-scoring captions (CLIP_benchmark's "any of its texts
//     in the top k" when topk breaks ties by index).
// Ranks are computed in row blocks, without a [num_images, num_texts] temporary.
RetrievalRecall retrieval_recall(const torch::Tensor& similarity, const std::vector<int64_t>& text_image,
                                 const std::vector<int>& ks = {1, 5, 10},
                                 TieRule ties = TieRule::kPessimistic);

struct ClassificationAccuracy {
  double top1 = 0;
  double top5 = 0;  // top-C when there are fewer than 5 classes (then always 1)
  // Indexed by class, size C. A class without samples has count 0 and accuracy 0
  // (not NaN, so reports stay valid JSON): read accuracies together with counts.
  std::vector<double> per_class_top1;
  std::vector<int64_t> per_class_count;
  // The mean of per_class_top1 over the classes with samples: scikit-learn's
  // balanced_accuracy_score, CLIP_benchmark's "mean_per_class_recall".
  double mean_per_class_recall = 0;
};

// logits: [N, C] floating point; labels: N class indices in [0, C).
// Pessimistic ties: a sample whose true class ties with another class for the
// highest logit is not a top-1 hit. kFirstIndex: it is when the true class
// has the lower index (argmax returns the first maximum).
ClassificationAccuracy classification_accuracy(const torch::Tensor& logits,
                                               const std::vector<int64_t>& labels,
                                               TieRule ties = TieRule::kPessimistic);

}  // namespace flame::eval
