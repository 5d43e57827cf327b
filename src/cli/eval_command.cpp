// flame eval: zero-shot, retrieval (short, long, multilingual) and linear probe.
#include <fmt/format.h>

#include <iostream>

#include "cli/commands.h"
#include "eval/evaluate.h"

namespace flame::cli {

void add_eval_command(CLI::App& app) {
  auto o = std::make_shared<eval::EvalOptions>();
  auto threads = std::make_shared<int>(0);
  auto* cmd = app.add_subcommand("eval", "Evaluate a trained model: retrieval, zero-shot, linear probe");
  cmd->add_option("--model", o->model, "checkpoint directory or run directory (its latest checkpoint)")
      ->required();
  cmd->add_option("--llm", o->llm,
                  "the frozen LLM a FLAME model was trained against (not for CLIP baselines)");
  cmd->add_option("--benchmark", o->benchmarks,
                  "benchmark name in configs/benchmarks (flickr8k, cifar10, imagenet, paper-table1, ...), "
                  "JSON file, or clip-benchmark:ROOT (a CLIP_benchmark WebDataset export)")
      ->required();
  cmd->add_option("--task", o->clip_benchmark_tasks,
                  "for clip-benchmark:ROOT: zeroshot_classification, zeroshot_retrieval, linear_probe "
                  "(default: the dataset's own kind)")
      ->delimiter(',')
      ->check(CLI::IsMember({"zeroshot_classification", "zeroshot_retrieval", "linear_probe"}));
  cmd->add_option("--tasks", o->tasks, "run only these tasks (names from the benchmark files)")
      ->delimiter(',');
  cmd->add_option(
      "--data-root", o->data_root,
      "replaces {data} in benchmark files (default: $FLAME_SHARED_DIR/data, else ../shared/data)");
  cmd->add_option("--limit", o->limit,
                  "at most this many images per task, spread over the classes (a linear probe: this many "
                  "train and this many test images; 0: all)")
      ->capture_default_str();
  cmd->add_option("--dtype", o->dtype, "LLM compute dtype")->capture_default_str();
  cmd->add_option("--device", o->device, "cpu or cuda")->capture_default_str();
  cmd->add_option("--batch-size", o->batch_size, "images per encoder pass")->capture_default_str();
  cmd->add_option("--out", o->out,
                  "results JSON, written after each task (locked for the run: one eval per file)");
  cmd->add_flag("--resume", o->resume,
                "keep the results in --out of the tasks an interrupted run of the same checkpoint (by "
                "content) finished and run the rest; results of tasks not asked for stay in the file");
  cmd->add_flag(
      "--allow-llm-mismatch", o->allow_llm_mismatch,
      "evaluate with an --llm other than the one the model's stores were made with (a warning goes into "
      "the results)");
  add_threads_option(*cmd, threads.get());
  cmd->callback([o, threads] {
    apply_threads(*threads);
    // The table goes out before the results file is written: a full disk
    // still shows the numbers, then fails naming the file.
    o->before_final_write = [](const nlohmann::json& results) {
      std::cout << eval::results_markdown(results) << std::flush;
    };
    eval::run_evaluation(*o);
    if (!o->out.empty()) fmt::print("wrote {}\n", o->out);
  });
}

}  // namespace flame::cli
