// `flame eval`: a trained image encoder against the frozen LLM's text
// features, on the tasks of benchmark files (configs/benchmarks/*.json):
//   retrieval    images x captions, Recall@1/5/10 both ways; mode "short": one
//                prompt per caption (the `raw` set), mode "long": the `long`
//                set's K facets, similarity = mean cosine over the facets
//   zero-shot    ROOT/<class>/*.jpg, class names x templates through the `raw`
//                set, templates averaged; top-1 / top-5, per class
//   linear-probe frozen image features, logistic regression (linear_probe.h)
//   clip-benchmark  a CLIP_benchmark WebDataset export (clip_benchmark_tasks.h),
//                also reachable as --benchmark clip-benchmark:ROOT [--task ...]
// Text features go through the same FDA encoder as training's embeddings. A
// CLIP baseline checkpoint (train --text-tower clip) runs every task with its
// own text tower instead: one feature per text, cut to its 77-token context
// (long retrieval: the joined captions, truncated, as CLIP would), no --llm.
#pragma once

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "eval/eval_options.h"
#include "eval/results_file.h"

namespace flame::eval {

// --benchmark clip-benchmark:ROOT names a CLIP_benchmark export directly.
inline constexpr const char* kClipBenchmarkPrefix = "clip-benchmark:";

// Runs the tasks; returns {"config": ..., "tasks": [{"name", "type", ...numbers}],
// "warnings": [...]}. A FLAME model's texts are encoded as its training stores
// were (their layer, per prompt set; train/text_provenance.h).
// Throws flame::Error naming the file or task on bad input.
nlohmann::json run_evaluation(const EvalOptions& options);

// The content identity of a checkpoint directory: {"config_sha256",
// "weights_sha256"} of its config.json and model.safetensors. A copy has the
// same identity; a retrained checkpoint at the same path another.
nlohmann::json checkpoint_content_identity(const std::filesystem::path& checkpoint);

// The results as Markdown tables (retrieval; classification).
std::string results_markdown(const nlohmann::json& results);

}  // namespace flame::eval
