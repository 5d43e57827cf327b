#include "eval/clip_benchmark_tasks.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>

#include "eval/adamw_probe.h"
#include "eval/clip_benchmark_source.h"
#include "eval/linear_probe.h"
#include "eval/metrics.h"
#include "eval/task_common.h"
#include "util/error.h"
#include "util/json_fields.h"

namespace flame::eval {

namespace fs = std::filesystem;

namespace {

std::string task_kind(const nlohmann::json& task, const std::string& dataset_type) {
  const std::string kind =
      task.value("task", dataset_type == "retrieval" ? "zeroshot_retrieval" : "zeroshot_classification");
  for (const char* known : kClipBenchmarkTasks)
    if (kind == known) return kind;
  fail(
      "task '{}': unknown CLIP_benchmark task '{}' (zeroshot_classification, zeroshot_retrieval, "
      "linear_probe)",
      task.value("name", "?"), kind);
}

// Keeps the first quotas[label] samples of each class, in order (no quotas:
// all). A label past the quotas (no classnames.txt) gets none.
void cap_per_class(std::vector<ClipBenchmarkSample>* samples, const std::vector<int64_t>& quotas) {
  if (quotas.empty() || std::all_of(quotas.begin(), quotas.end(), [](int64_t q) { return q == 0; })) return;
  std::map<int64_t, int64_t> seen;
  std::vector<ClipBenchmarkSample> kept;
  for (auto& s : *samples) {
    const auto label = static_cast<size_t>(s.label);
    if (label < quotas.size() && seen[s.label]++ < quotas[label]) kept.push_back(std::move(s));
  }
  *samples = std::move(kept);
}

// The number of classes: classnames.txt's, or past the largest label when the
// labels run beyond it (a probe needs no names).
int64_t class_count(const ClipBenchmarkInfo& info, const std::vector<const ClipBenchmarkSplit*>& splits) {
  auto count = static_cast<int64_t>(info.classnames.size());
  for (const auto* split : splits)
    for (const auto& s : split->samples) count = std::max(count, s.label + 1);
  return std::max<int64_t>(count, 1);
}

// A file the task needs that is absent or empty, named as which.
void require_list(const ClipBenchmarkInfo& info, const std::vector<std::string>& list, const char* file,
                  const std::string& task) {
  if (!list.empty()) return;
  const bool empty = std::count(info.empty_files.begin(), info.empty_files.end(), file) > 0;
  fail("task '{}': {} {} in {}", task, empty ? "an empty" : "no", file, info.root.string());
}

// The split's image features [N, D]; samples whose image does not decode are
// dropped (counted and named in split->skipped).
torch::Tensor encode_split(EvalModels& m, ClipBenchmarkSplit* split, const std::string& label,
                           ImageFeatureKind kind = ImageFeatureKind::kJoint) {
  std::vector<std::pair<size_t, std::string>> bad;
  const torch::Tensor features = m.image_features(split->image_inputs(), label, &bad, kind);
  if (bad.empty()) return features;
  std::vector<int64_t> keep;
  std::vector<ClipBenchmarkSample> kept;
  size_t b = 0;
  for (size_t i = 0; i < split->samples.size(); ++i) {
    if (b < bad.size() && bad[b].first == i) {
      split->skipped.add("undecodable image", bad[b++].second);
      continue;
    }
    keep.push_back(static_cast<int64_t>(i));
    kept.push_back(std::move(split->samples[i]));
  }
  if (kept.empty()) fail("{}: no image of the split decodes ({} skipped)", label, split->skipped.total());
  split->samples = std::move(kept);
  return features.index_select(0, torch::tensor(keep, torch::kInt64));
}

std::vector<int64_t> labels_of(const ClipBenchmarkSplit& split) {
  std::vector<int64_t> labels;
  for (const auto& s : split.samples) labels.push_back(s.label);
  return labels;
}

// CLIP_benchmark's classification metrics; acc5 only with 5 or more classes
// (it reports NaN otherwise, left out here: JSON has no NaN).
nlohmann::json classification_json(const ClassificationAccuracy& acc, const std::vector<std::string>& names,
                                   int64_t columns) {
  nlohmann::json metrics = {{"acc1", acc.top1}, {"mean_per_class_recall", acc.mean_per_class_recall}};
  nlohmann::json out = {{"top1", acc.top1}, {"mean_per_class_recall", acc.mean_per_class_recall}};
  if (std::min<int64_t>(static_cast<int64_t>(names.size()), columns) >= 5) {
    metrics["acc5"] = out["top5"] = acc.top5;
  }
  nlohmann::json per_class = nlohmann::json::object();
  for (size_t c = 0; c < acc.per_class_top1.size() && c < names.size(); ++c)
    if (acc.per_class_count[c] > 0) per_class[names[c]] = acc.per_class_top1[c];
  out["per_class_top1"] = per_class;
  out["metrics"] = metrics;
  return out;
}

nlohmann::json zero_shot_classification(EvalModels& m, const nlohmann::json& task,
                                        const ClipBenchmarkInfo& info, int64_t limit) {
  const std::string name = task.at("name");
  require_list(info, info.classnames, "classnames.txt", name);
  require_list(info, info.templates, "zeroshot_classification_templates.txt", name);
  for (const auto& t : info.templates) fill_template(t, "");  // fails before the images are encoded
  ClipBenchmarkSplit split = read_clip_benchmark_split(info, task.value("split", "test"), true);
  const auto C = static_cast<int64_t>(info.classnames.size());
  cap_per_class(&split.samples, class_quotas(limit, C));
  const torch::Tensor image = encode_split(m, &split, name);
  const torch::Tensor classes = zero_shot_classifier(m, info.classnames, info.templates);
  const ClassificationAccuracy acc =
      classification_accuracy(image.matmul(classes.t()), labels_of(split), TieRule::kFirstIndex);
  nlohmann::json out = {
      {"images", split.samples.size()}, {"classes", C}, {"templates", info.templates.size()}};
  out.update(classification_json(acc, info.classnames, C));
  out["skipped"] = split.skipped.json();
  return out;
}

nlohmann::json zero_shot_retrieval(EvalModels& m, const nlohmann::json& task, const ClipBenchmarkInfo& info,
                                   int64_t limit) {
  const std::string name = task.at("name");
  const std::string mode = task.value("mode", "short");
  if (mode != "short" && mode != "long") fail("task '{}': mode must be short or long, not '{}'", name, mode);
  ClipBenchmarkSplit split = read_clip_benchmark_split(info, task.value("split", "test"), false);
  if (limit > 0 && static_cast<int64_t>(split.samples.size()) > limit) split.samples.resize(limit);
  const torch::Tensor image = encode_split(m, &split, name);
  std::vector<std::string> texts;
  std::vector<int64_t> text_image;
  for (size_t i = 0; i < split.samples.size(); ++i) {
    for (const auto& c : split.samples[i].captions) {
      texts.push_back(c);
      text_image.push_back(static_cast<int64_t>(i));
    }
  }
  int64_t truncated = 0;
  const FacetPooling pooling = facet_pooling(task);
  const torch::Tensor text = m.text_features(texts, mode == "long" ? "long" : "raw", &truncated,
                                             pooling == FacetPooling::kMeanCosine);
  const RetrievalRecall recall = retrieval_recall(facet_similarity(image, pool_facets(text, pooling)),
                                                  text_image, {1, 5, 10}, TieRule::kFirstIndex);
  nlohmann::json out = {{"mode", mode},
                        {"images", split.samples.size()},
                        {"texts", texts.size()},
                        {"facets", text.size(1)},
                        {"facet_pooling", to_string(pooling)}};
  if (m.is_clip()) out["truncated_texts"] = truncated;
  out.update(recall_json(recall));
  // CLIP_benchmark's names: "image retrieval" is text-to-image.
  for (const auto& [k, v] : recall.text_to_image)
    out["metrics"]["image_retrieval_recall@" + std::to_string(k)] = v;
  for (const auto& [k, v] : recall.image_to_text)
    out["metrics"]["text_retrieval_recall@" + std::to_string(k)] = v;
  out["skipped"] = split.skipped.json();
  return out;
}

// Rows of `features` by index.
torch::Tensor rows(const torch::Tensor& features, const std::vector<int64_t>& index) {
  return features.index_select(0, torch::tensor(index, torch::kInt64));
}

// flame's L-BFGS probe (linear_probe.h): every 5th train sample of a class
// validates the L2 strength. Returns the test logits; fills in the split sizes.
torch::Tensor lbfgs_probe(const nlohmann::json& task, const torch::Tensor& train_x,
                          const std::vector<int64_t>& train_labels, const torch::Tensor& test_x,
                          const std::vector<int64_t>& test_labels, nlohmann::json* out) {
  std::vector<int64_t> fit, val;
  std::map<int64_t, int64_t> seen;
  for (size_t i = 0; i < train_labels.size(); ++i)
    (seen[train_labels[i]]++ % 5 == 4 ? val : fit).push_back(static_cast<int64_t>(i));
  if (val.empty())
    fail("task '{}': the linear probe needs 5 or more train samples of some class",
         task.at("name").get<std::string>());
  const torch::Tensor y = torch::tensor(train_labels, torch::kInt64);
  const LinearProbeResult r = linear_probe(rows(train_x, fit), rows(y, fit), rows(train_x, val), rows(y, val),
                                           test_x, torch::tensor(test_labels, torch::kInt64), {});
  out->update({{"train", fit.size()}, {"val", val.size()}, {"best_l2", r.best_l2}, {"val_top1", r.val_top1}});
  return test_x.to(torch::kDouble).matmul(r.weight.t()) + r.bias;
}

// CLIP_benchmark's own probe's settings (adamw_probe.h): the task's "lr",
// "epochs", "batch_size", "seed" (its defaults otherwise), read strictly
// (1.5 epochs or a seed of -1 is refused, not truncated or wrapped) before
// any image is encoded.
AdamwProbeOptions probe_options(const EvalModels& m, const nlohmann::json& task) {
  AdamwProbeOptions o;
  const std::string source = "task '" + task.value("name", std::string("?")) + "'";
  o.lr = json_finite_number(task, "lr", source, o.lr);
  if (o.lr <= 0) fail("{}: 'lr' must be positive, not {}", source, o.lr);
  o.epochs = json_int(task, "epochs", source, false, o.epochs);
  require_positive(o.epochs, "epochs", source);
  o.batch_size = json_int(task, "batch_size", source, false, o.batch_size);
  require_positive(o.batch_size, "batch_size", source);
  o.seed = json_uint(task, "seed", source, o.seed);
  o.device = m.device();
  return o;
}

// The probe on every train sample; the logits are widened to `classes`
// columns when the train split lacks the last classes.
torch::Tensor clip_benchmark_probe(const AdamwProbeOptions& o, const torch::Tensor& train_x,
                                   const std::vector<int64_t>& train_labels, const torch::Tensor& test_x,
                                   int64_t classes, nlohmann::json* out) {
  torch::Tensor logits = adamw_probe_logits(train_x, torch::tensor(train_labels, torch::kInt64), test_x, o);
  if (logits.size(1) < classes) {
    const auto pad = torch::full({logits.size(0), classes - logits.size(1)}, -INFINITY, logits.options());
    logits = torch::cat({logits, pad}, 1);
  }
  out->update({{"train", train_labels.size()},
               {"lr", o.lr},
               {"epochs", o.epochs},
               {"batch_size", o.batch_size},
               {"seed", o.seed}});
  return logits;
}

// "probe": "adamw" (CLIP_benchmark's, the default) or "lbfgs" (flame's);
// "features": "joint" (the model's image features, as CLIP_benchmark's
// encode_image; the default) or "visual" (before the projection, as the
// method's table 5).
nlohmann::json linear_probe_task(EvalModels& m, const nlohmann::json& task, const ClipBenchmarkInfo& info,
                                 int64_t limit) {
  const std::string name = task.at("name");
  const std::string probe = task.value("probe", "adamw"), features = task.value("features", "joint");
  if (probe != "adamw" && probe != "lbfgs")
    fail("task '{}': probe must be adamw or lbfgs, not '{}'", name, probe);
  if (features != "joint" && features != "visual")
    fail("task '{}': features must be joint or visual, not '{}'", name, features);
  const ImageFeatureKind kind = features == "visual" ? ImageFeatureKind::kVisual : ImageFeatureKind::kJoint;
  const AdamwProbeOptions adamw = probe_options(m, task);  // a bad setting fails before the encoding
  ClipBenchmarkSplit train = read_clip_benchmark_split(info, task.value("train_split", "train"), true);
  ClipBenchmarkSplit test = read_clip_benchmark_split(info, task.value("split", "test"), true);
  const int64_t C = class_count(info, {&train, &test});
  // --limit N: at most N train and N test images, spread over the classes.
  cap_per_class(&train.samples, class_quotas(limit, C));
  cap_per_class(&test.samples, class_quotas(limit, C));
  const torch::Tensor train_x = encode_split(m, &train, name + " train", kind);
  const torch::Tensor test_x = encode_split(m, &test, name + " test", kind);
  const std::vector<int64_t> train_labels = labels_of(train), test_labels = labels_of(test);
  nlohmann::json out = {{"images", train.samples.size() + test.samples.size()},
                        {"test", test.samples.size()},
                        {"probe", probe},
                        {"features", features},
                        {"feature_dim", train_x.size(1)}};
  const torch::Tensor logits = probe == "lbfgs"
                                   ? lbfgs_probe(task, train_x, train_labels, test_x, test_labels, &out)
                                   : clip_benchmark_probe(adamw, train_x, train_labels, test_x, C, &out);
  const ClassificationAccuracy acc = classification_accuracy(logits, test_labels, TieRule::kFirstIndex);
  out.update(classification_json(acc, info.classnames, logits.size(1)));
  out["skipped"] = train.skipped.json();
  out["skipped_test"] = test.skipped.json();
  return out;
}

}  // namespace

bool clip_benchmark_needs_text(const nlohmann::json& task) {
  return task.value("task", "") != "linear_probe";
}

nlohmann::json run_clip_benchmark(EvalModels& m, const nlohmann::json& task, const std::string& data_root,
                                  int64_t limit) {
  const ClipBenchmarkInfo info = open_clip_benchmark(task_field(task, "root", data_root));
  const std::string kind = task_kind(task, info.type);
  nlohmann::json out;
  if (kind == "zeroshot_classification")
    out = zero_shot_classification(m, task, info, limit);
  else if (kind == "zeroshot_retrieval")
    out = zero_shot_retrieval(m, task, info, limit);
  else
    out = linear_probe_task(m, task, info, limit);
  out["name"] = task.at("name");
  out["type"] = kind == "zeroshot_retrieval" ? "retrieval"
                : kind == "linear_probe"     ? "linear-probe"
                                             : "zero-shot";
  out["source"] = "clip-benchmark";
  out["dataset"] = info.name;
  out["tie_rule"] = "first index (CLIP_benchmark: torch topk/argmax)";
  return out;
}

}  // namespace flame::eval
