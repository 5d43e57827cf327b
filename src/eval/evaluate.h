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
#include <string>
#include <vector>

namespace flame::eval {

struct EvalOptions {
  std::string model;  // checkpoint directory, or a run directory (its latest)
  std::string llm;    // the frozen LLM a FLAME model was trained against (CLIP, or linear probe only: unused)
  std::vector<std::string> benchmarks;  // names in configs/benchmarks/, JSON files, or clip-benchmark:ROOT
  // For clip-benchmark:ROOT benchmarks: zeroshot_classification,
  // zeroshot_retrieval and/or linear_probe (empty: the dataset's own kind).
  std::vector<std::string> clip_benchmark_tasks;
  std::vector<std::string> tasks;  // task names to run (empty: all of the benchmarks')
  std::string data_root;       // replaces {data}; empty: <shared>/data ($FLAME_SHARED_DIR, else ../shared)
  int64_t limit = 0;           // images per task (0: all); zero-shot/probe: spread over classes
  std::string dtype = "bf16";  // LLM compute dtype
  std::string device = "cpu";
  int64_t batch_size = 64;  // images per encoder pass
  // Results JSON, written atomically after each task ("complete": false until
  // the last); empty: none.
  std::string out;
  // Keep the results at `out` of the tasks an earlier, interrupted run finished
  // (with the same checkpoint, LLM, data root, limit and dtype) and run the rest.
  bool resume = false;
  // A FLAME checkpoint records the LLM its stores came from; another --llm is
  // refused unless this is set (then the results carry a warning).
  bool allow_llm_mismatch = false;
};

// --benchmark clip-benchmark:ROOT names a CLIP_benchmark export directly.
inline constexpr const char* kClipBenchmarkPrefix = "clip-benchmark:";

// Image-text similarity [N, T] of normalised image features [N, D] and text
// facets [T, K, D]: the mean cosine over the K facets (K = 1: plain cosine).
torch::Tensor facet_similarity(const torch::Tensor& image, const torch::Tensor& text);

// Runs the tasks; returns {"config": ..., "tasks": [{"name", "type", ...numbers}],
// "warnings": [...]}. A FLAME model's texts are encoded as its training stores
// were (their layer, per prompt set; train/text_provenance.h).
// Throws flame::Error naming the file or task on bad input.
nlohmann::json run_evaluation(const EvalOptions& options);

// The results as Markdown tables (retrieval; classification).
std::string results_markdown(const nlohmann::json& results);

}  // namespace flame::eval
