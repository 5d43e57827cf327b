// The options of `flame eval` (and of a model loaded as eval loads it:
// eval_models.h, the Python module). Apart from evaluate.h so the models and
// tasks below the dispatcher need not include it.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
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

}  // namespace flame::eval
