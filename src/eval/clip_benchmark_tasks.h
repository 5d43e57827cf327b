// `flame eval` on CLIP_benchmark's WebDataset exports (clip_benchmark_source.h):
// a task {"type": "clip-benchmark", "root": ROOT, "task": T} with T one of
//   zeroshot_classification  class names x templates ("{c}") through the `raw`
//                            prompt set, templates averaged; acc1, acc5 (5+
//                            classes), mean_per_class_recall
//   zeroshot_retrieval       each sample's captions (one per .txt line); image
//                            and text retrieval recall@1/5/10 ("mode": "long":
//                            the `long` set's K facets, mean cosine)
//   linear_probe             frozen image features of train/ (4/5 fit, 1/5
//                            validation for the L2 strength) and test/; acc1,
//                            acc5, mean_per_class_recall on test
// (absent: zeroshot_retrieval for a retrieval dataset, else
// zeroshot_classification). Metrics as CLIP_benchmark defines them, ties
// included (TieRule::kFirstIndex). "split" picks the test split (default "test").
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

#include "eval/eval_models.h"

namespace flame::eval {

// The CLIP_benchmark task kinds, for --task.
inline constexpr const char* kClipBenchmarkTasks[] = {"zeroshot_classification", "zeroshot_retrieval",
                                                      "linear_probe"};

// Whether the task encodes texts (all but the linear probe).
bool clip_benchmark_needs_text(const nlohmann::json& task);

// Runs one task; `limit` > 0 caps the images (spread over the classes for
// classification). The result has the usual keys (top1/top5 or
// image_to_text/text_to_image) plus "metrics" under CLIP_benchmark's names
// and "skipped" (malformed samples, counted and named).
nlohmann::json run_clip_benchmark(EvalModels& m, const nlohmann::json& task, const std::string& data_root,
                                  int64_t limit);

}  // namespace flame::eval
