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

#include "eval/results_file.h"

namespace flame::eval {

struct EvalOptions {
  std::string model;  // checkpoint directory, or a run directory (its latest)
  std::string llm;    // the frozen LLM a FLAME model was trained against (CLIP, or linear probe only: unused)
  std::vector<std::string> benchmarks;  // names in configs/benchmarks/, JSON files, or clip-benchmark:ROOT
  // For clip-benchmark:ROOT benchmarks: zeroshot_classification,
  // zeroshot_retrieval and/or linear_probe (empty: the dataset's own kind).
  std::vector<std::string> clip_benchmark_tasks;
  std::vector<std::string> tasks;  // task names to run (empty: all of the benchmarks')
  std::string data_root;  // replaces {data}; empty: <shared>/data ($FLAME_SHARED_DIR, else ../shared)
  // At most this many images per task (0: all); classification tasks spread
  // them over the classes (class_quotas), a linear probe takes at most this
  // many train and this many test images.
  int64_t limit = 0;
  std::string dtype = "bf16";  // LLM compute dtype
  std::string device = "cpu";
  int64_t batch_size = 64;  // images per encoder pass
  // Results JSON, written atomically after each task ("complete": false until
  // the last); empty: none.
  std::string out;
  // Keep the results at `out` of the tasks an earlier, interrupted run finished
  // (with the same checkpoint content, LLM, data root, limit and dtype) and run
  // the rest. Finished results of tasks this run does not ask for stay in the
  // file (a results file is the union). A file without the checkpoint's
  // content identity (older flame) is not trusted: every task is recomputed.
  bool resume = false;
  // A FLAME checkpoint records the LLM its stores came from; another --llm is
  // refused unless this is set (then the results carry a warning).
  bool allow_llm_mismatch = false;
  // Called with the final results before they are written to `out` (the CLI
  // prints the table here): a failing write still shows them.
  std::function<void(const nlohmann::json&)> before_final_write;
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

// The content identity of a checkpoint directory: {"config_sha256",
// "weights_sha256"} of its config.json and model.safetensors. A copy has the
// same identity; a retrained checkpoint at the same path another.
nlohmann::json checkpoint_content_identity(const std::filesystem::path& checkpoint);

// The results as Markdown tables (retrieval; classification).
std::string results_markdown(const nlohmann::json& results);

}  // namespace flame::eval
