#include "eval/metrics.h"

#include <algorithm>
#include <limits>

#include "util/error.h"

namespace flame::eval {

namespace {

// Comparisons run on blocks of rows of at most this many scores, so the boolean
// temporaries stay small (4 MiB) whatever the matrix size.
constexpr int64_t kBlockElements = int64_t{1} << 22;

int64_t block_rows(int64_t cols) {
  return std::max<int64_t>(1, kBlockElements / std::max<int64_t>(cols, 1));
}

// The scores as float or double (bf16/half widen exactly, so ties survive),
// after checking shape, dtype and NaNs (a NaN never compares, so it would rank
// as a silent miss or hit).
torch::Tensor checked_scores(const torch::Tensor& scores, const char* what, const char* function) {
  if (!scores.defined() || scores.dim() != 2) {
    fail("{}: {} must be a 2-D tensor, got {}", function, what,
         scores.defined() ? c10::str(scores.sizes()) : std::string("an undefined tensor"));
  }
  if (!scores.is_floating_point())
    fail("{}: {} must be floating point, got {}", function, what, c10::str(scores.dtype()));
  torch::Tensor s = scores.detach();
  if (s.scalar_type() != torch::kDouble) s = s.to(torch::kFloat);
  if (torch::isnan(s).any().item<bool>()) fail("{}: {} contains NaN", function, what);
  return s.contiguous();
}

void check_ks(const std::vector<int>& ks) {
  for (const int k : ks)
    if (k < 1) fail("retrieval_recall: k must be >= 1, got {}", k);
}

std::map<int, double> recall_at(const torch::Tensor& ranks, const std::vector<int>& ks) {
  std::map<int, double> recall;
  for (const int k : ks) recall[k] = (ranks <= k).to(torch::kDouble).mean().item<double>();
  return recall;
}

// The rank of each row's correct column `own[r]` (scoring threshold[r]) among
// the row's columns, one block of rows at a time. kPessimistic:
// #{c : scores[r, c] >= threshold[r]} (the correct column is the "1 +");
// kFirstIndex: 1 + #{greater} + #{equal with c < own[r]}.
torch::Tensor rank_by_row(const torch::Tensor& scores, const torch::Tensor& threshold,
                          const torch::Tensor& own, TieRule ties) {
  const int64_t rows = scores.size(0), step = block_rows(scores.size(1));
  torch::Tensor ranks = torch::empty({rows}, threshold.options().dtype(torch::kLong));
  const torch::Tensor column = torch::arange(scores.size(1), ranks.options()).unsqueeze(0);
  for (int64_t r0 = 0; r0 < rows; r0 += step) {
    const int64_t r1 = std::min(rows, r0 + step);
    const torch::Tensor s = scores.slice(0, r0, r1), t = threshold.slice(0, r0, r1).unsqueeze(1);
    if (ties == TieRule::kPessimistic) {
      ranks.slice(0, r0, r1).copy_((s >= t).sum(1));
    } else {
      const torch::Tensor before = column < own.slice(0, r0, r1).unsqueeze(1);
      ranks.slice(0, r0, r1).copy_(((s > t) | ((s == t) & before)).sum(1) + 1);
    }
  }
  return ranks;
}

// The same down the columns: column c's correct row is own[c].
torch::Tensor rank_by_column(const torch::Tensor& scores, const torch::Tensor& threshold,
                             const torch::Tensor& own, TieRule ties) {
  const int64_t rows = scores.size(0), step = block_rows(scores.size(1));
  torch::Tensor counts = torch::zeros({scores.size(1)}, threshold.options().dtype(torch::kLong));
  const torch::Tensor t = threshold.unsqueeze(0);
  for (int64_t r0 = 0; r0 < rows; r0 += step) {
    const int64_t r1 = std::min(rows, r0 + step);
    const torch::Tensor s = scores.slice(0, r0, r1);
    if (ties == TieRule::kPessimistic) {
      counts += (s >= t).sum(0);
    } else {
      const torch::Tensor before = torch::arange(r0, r1, counts.options()).unsqueeze(1) < own.unsqueeze(0);
      counts += ((s > t) | ((s == t) & before)).sum(0);
    }
  }
  return ties == TieRule::kPessimistic ? counts : counts + 1;
}

}  // namespace

RetrievalRecall retrieval_recall(const torch::Tensor& similarity, const std::vector<int64_t>& text_image,
                                 const std::vector<int>& ks, TieRule rule) {
  const torch::Tensor sim = checked_scores(similarity, "similarity", "retrieval_recall");
  check_ks(ks);
  const int64_t num_images = sim.size(0), num_texts = sim.size(1);
  if (num_images == 0) fail("retrieval_recall: no images (similarity is {})", c10::str(sim.sizes()));
  if (static_cast<int64_t>(text_image.size()) != num_texts) {
    fail("retrieval_recall: text_image has {} entries but similarity has {} texts (columns)",
         text_image.size(), num_texts);
  }
  std::vector<int64_t> captions(num_images, 0);
  for (int64_t t = 0; t < num_texts; ++t) {
    const int64_t image = text_image[t];
    if (image < 0 || image >= num_images) {
      fail("retrieval_recall: text {} has image index {}, outside [0, {})", t, image, num_images);
    }
    ++captions[image];
  }
  for (int64_t i = 0; i < num_images; ++i)
    if (captions[i] == 0) fail("retrieval_recall: image {} has no text", i);

  const torch::Tensor image_of = torch::tensor(text_image, torch::kLong).to(sim.device());
  // own[t] = similarity of text t with its own image.
  const torch::Tensor own = sim.gather(0, image_of.unsqueeze(0)).squeeze(0);

  RetrievalRecall result;
  // Text-to-image: #images scoring >= the own one = 1 + #other images >= it.
  result.text_to_image = recall_at(rank_by_column(sim, own, image_of, rule), ks);

  // Image-to-text: rank the image's best caption. #texts >= best counts the
  // image's own captions tied with the best (the best one included); those are
  // correct, so they come off, and the best one goes back as the "1 +".
  // Per-image max over a ragged group: a plain loop over the texts (cheap next
  // to the comparisons, and no beta scatter_reduce).
  const torch::Tensor own_cpu = own.to(torch::kCPU, torch::kDouble).contiguous();
  const auto own_of = own_cpu.accessor<double, 1>();
  std::vector<double> best(num_images, -std::numeric_limits<double>::infinity());
  std::vector<int64_t> best_text(num_images, -1);  // the first of the best: texts run in index order
  for (int64_t t = 0; t < num_texts; ++t) {
    const int64_t i = text_image[t];
    if (best_text[i] < 0 || own_of[t] > best[i]) best[i] = own_of[t], best_text[i] = t;
  }
  std::vector<int64_t> own_ties(num_images, 0);
  for (int64_t t = 0; t < num_texts; ++t) own_ties[text_image[t]] += own_of[t] == best[text_image[t]] ? 1 : 0;
  const torch::Tensor best_score = torch::tensor(best, torch::kDouble).to(sim.device(), sim.scalar_type());
  const torch::Tensor first = torch::tensor(best_text, torch::kLong).to(sim.device());
  const torch::Tensor ranks = rank_by_row(sim, best_score, first, rule);
  // First-index: no caption of the image precedes its first best one, so no correction.
  if (rule == TieRule::kFirstIndex) {
    result.image_to_text = recall_at(ranks, ks);
  } else {
    result.image_to_text = recall_at(ranks - torch::tensor(own_ties, torch::kLong).to(sim.device()) + 1, ks);
  }
  return result;
}

ClassificationAccuracy classification_accuracy(const torch::Tensor& logits,
                                               const std::vector<int64_t>& labels, TieRule rule) {
  const torch::Tensor scores = checked_scores(logits, "logits", "classification_accuracy");
  const int64_t n = scores.size(0), num_classes = scores.size(1);
  if (n == 0 || num_classes == 0) fail("classification_accuracy: empty logits {}", c10::str(scores.sizes()));
  if (static_cast<int64_t>(labels.size()) != n) {
    fail("classification_accuracy: {} labels for {} rows of logits", labels.size(), n);
  }
  for (int64_t i = 0; i < n; ++i) {
    if (labels[i] < 0 || labels[i] >= num_classes) {
      fail("classification_accuracy: label {} of sample {} is outside [0, {})", labels[i], i, num_classes);
    }
  }
  const torch::Tensor label = torch::tensor(labels, torch::kLong).to(scores.device());
  const torch::Tensor truth = scores.gather(1, label.unsqueeze(1)).squeeze(1);
  const torch::Tensor rank = rank_by_row(scores, truth, label, rule);
  const torch::Tensor hit1 = (rank <= 1).to(torch::kDouble);

  ClassificationAccuracy result;
  result.top1 = hit1.mean().item<double>();
  result.top5 = (rank <= 5).to(torch::kDouble).mean().item<double>();
  const torch::Tensor count = torch::bincount(label, {}, num_classes).cpu();
  const torch::Tensor hits = torch::zeros({num_classes}, hit1.options()).index_add_(0, label, hit1).cpu();
  const auto count_of = count.accessor<int64_t, 1>();
  const auto hits_of = hits.accessor<double, 1>();
  result.per_class_count.resize(num_classes);
  result.per_class_top1.resize(num_classes);
  for (int64_t c = 0; c < num_classes; ++c) {
    result.per_class_count[c] = count_of[c];
    result.per_class_top1[c] = count_of[c] > 0 ? hits_of[c] / static_cast<double>(count_of[c]) : 0.0;
  }
  int64_t present = 0;
  for (int64_t c = 0; c < num_classes; ++c) {
    if (count_of[c] == 0) continue;
    result.mean_per_class_recall += result.per_class_top1[c];
    ++present;
  }
  result.mean_per_class_recall /= static_cast<double>(present);  // n > 0: some class has samples
  return result;
}

}  // namespace flame::eval
