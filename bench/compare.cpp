// FLAME against the CLIP baseline on the same data (the method's comparison):
// the same image tower, images, captions, steps, batch, learning rate,
// precision and seed; only the text side differs.
//   FLAME: the frozen LLM embeds every Flickr8k description once with the raw,
//          short and long prompt sets (FDA; 1 + 3 + 7 positives per image),
//          then the image encoder (ViT + MLP projector) trains against them.
//   CLIP:  an image tower (ViT + linear projection) and a text tower trained
//          from scratch on the same descriptions, cut to 77 tokens.
// Both are evaluated by `flame eval` on flickr8k (short, long, Multi30k
// en/de/fr/cs retrieval) and cifar10 (zero-shot, linear probe). Writes
// bench/results/compare.md (+ .json) with the two rows side by side and the
// wall time of each stage.
//
//   compare [--llm HF_DIR] [--steps 600] [--batch-size 64] [--model vit-ti-8-64]
//           [--clip-text clip-text-ti] [--captions N] [--eval-limit 2000] [--seed 0]
//           [--threads 2] [--work DIR] [--no-write]
// Without --llm, a tiny random Llama-shaped LLM is generated (as `make demo`):
// no pretrained weights exist on these machines.
#include <fmt/format.h>

#include <iostream>
#include <sstream>

#include "bench_util.h"
#include "eval/evaluate.h"
#include "llm/config.h"
#include "llm/tokenizer.h"
#include "text/clip_text_config.h"
#include "text/embed_job.h"
#include "train/trained_model.h"
#include "train/trainer.h"
#include "util/file.h"
#include "vision/vit_config.h"

using namespace flame;
using namespace flame::bench;
using nlohmann::json;

namespace {

int64_t parameter_count(const torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters()) n += p.numel();
  return n;
}

// R@1 of a retrieval task "I→T / T→I" in percent.
std::string recall_cell(const json& task) {
  return fmt::format("{:.1f} / {:.1f}", 100 * task["image_to_text"]["R@1"].get<double>(),
                     100 * task["text_to_image"]["R@1"].get<double>());
}

const json& task_named(const json& results, const std::string& name) {
  for (const auto& t : results["tasks"]) {
    if (t["name"] == name) return t;
  }
  fail("no task '{}' in the evaluation results", name);
}

}  // namespace

int main(int argc, char** argv) try {
  const Args a = parse_args(
      argc, argv,
      "compare [--llm HF_DIR] [--steps 600] [--batch-size 64] [--model vit-ti-8-64] [--clip-text "
      "clip-text-ti] [--captions N] [--eval-limit 2000] [--seed 0] [--threads 2] [--work DIR] [--no-write]",
      {"llm", "steps", "batch-size", "model", "clip-text", "captions", "eval-limit", "seed", "threads",
       "work"});
  const int64_t steps = a.num("steps", 600), batch = a.num("batch-size", 64),
                eval_limit = a.num("eval-limit", 2000);
  const int64_t captions_limit = a.num("captions", 0);
  const uint64_t seed = static_cast<uint64_t>(a.num("seed", 0));
  const int64_t threads = a.num("threads", 2);  // as `flame --threads`: torch's default is 1 here
  torch::set_num_threads(static_cast<int>(threads));
  const std::string model = a.get("model", "vit-ti-8-64"), clip_text = a.get("clip-text", "clip-text-ti");
  const fs::path work = a.get("work", (fs::temp_directory_path() / "flame-bench-compare").string());
  const fs::path data = fs::path(FLAME_SHARED_DIR) / "data";
  const std::string captions = (data / "flickr8k" / "captions.tsv").string();
  fs::create_directories(work);
  const std::string load_start = load_average();
  const auto t_all = Clock::now();

  fs::path llm_dir = a.get("llm");
  if (llm_dir.empty()) {
    llm_dir = work / "tiny-llm";
    if (!fs::exists(llm_dir / "config.json")) {
      llm::RandomCheckpointOptions o;  // as `make demo`
      o.preset = "tiny";
      o.arch = "llama";
      o.seed = 0;
      o.dtype = "f32";
      o.tokenizer_dir = fs::path(FLAME_SHARED_DIR) / "tokenizers" / "smollm";
      llm::make_random_checkpoint(o, llm_dir);
    }
  }
  const llm::LlmConfig llm_config = llm::load_llm_config(llm_dir);

  // FLAME, offline: the frozen LLM embeds every description once.
  const auto t_embed = Clock::now();
  std::vector<std::string> stores;
  for (const std::string prompts : {"raw", "short", "long"}) {
    text::EmbedJobOptions o;
    o.llm_dir = llm_dir;
    o.prompts = prompts;
    o.inputs = {captions};
    o.source.tsv_join = true;
    o.limit = captions_limit;
    o.out = work / ("embeddings-" + prompts);
    fs::remove_all(o.out);
    text::run_embed_job(o);
    stores.push_back(o.out.string());
  }
  const double embed_seconds = seconds_since(t_embed);

  // One set of training options; the text side is the only difference.
  train::TrainOptions base;
  base.model = model;
  base.images = captions;
  base.image_dir = (data / "flickr8k" / "images").string();
  base.split_file = (data / "flickr8k" / "splits" / "train.txt").string();
  base.steps = steps;
  base.batch_size = batch;
  base.warmup_steps = 20;
  base.lr = 1e-3;
  base.precision = train::Precision::kBf16;
  base.save_every = steps;
  base.seed = seed;
  train::TrainOptions flame = base, clip = base;
  flame.text_stores = stores;
  flame.out = (work / "run-flame").string();
  clip.text_tower = train::TextTower::kClip;
  clip.clip_text = clip_text;
  clip.captions = {captions};
  clip.caption_join = true;  // the descriptions FLAME embedded
  clip.out = (work / "run-clip").string();

  struct Row {
    std::string name, text_side;
    int64_t trained_parameters = 0;
    double offline_seconds = 0, train_seconds = 0, eval_seconds = 0, final_loss = 0;
    json results;
  };
  std::vector<Row> rows;
  const vision::VitConfig vit = vision::load_vit_config(model);
  const text::ClipTextConfig clip_config = text::load_clip_text_config(clip_text);
  for (const train::TrainOptions* o : {&flame, &clip}) {
    Row row;
    const bool is_clip = o->text_tower == train::TextTower::kClip;
    row.name = is_clip ? "CLIP baseline" : "FLAME";
    row.text_side = is_clip ? fmt::format("{} trained ({} tokens)", clip_text, clip_config.context_length)
                            : fmt::format("frozen LLM {} (hidden {}), K = 1 + 3 + 7",
                                          llm_dir.filename().string(), llm_config.hidden_size);
    row.trained_parameters = parameter_count(
        *(is_clip ? train::make_clip_model(vit, clip_config,
                                           llm::Tokenizer::load(clip_config.tokenizer_path())->vocab_size())
                  : train::make_flame_model(vit, llm_config.hidden_size))
             .root);
    row.offline_seconds = is_clip ? 0 : embed_seconds;
    fs::remove_all(o->out);
    const auto t_train = Clock::now();
    row.final_loss = train::run_training(*o, false).final_loss;
    row.train_seconds = seconds_since(t_train);

    eval::EvalOptions e;
    e.model = o->out;
    if (!is_clip) e.llm = llm_dir.string();
    e.benchmarks = {"flickr8k", "cifar10"};
    e.data_root = data.string();
    e.limit = eval_limit;
    e.out = (fs::path(o->out) / "eval.json").string();
    const auto t_eval = Clock::now();
    row.results = eval::run_evaluation(e);
    row.eval_seconds = seconds_since(t_eval);
    rows.push_back(std::move(row));
  }

  std::ostringstream md;
  md << "# FLAME vs the CLIP baseline on the same data\n\n"
     << "Generated by `bench/compare.cpp`.\n\n"
     << fmt::format("- Machine: {}. Load average (1/5/15 min) at start {}, at end {}; wall time {:.0f} s.\n",
                    machine_line(), load_start, load_average(), seconds_since(t_all))
     << fmt::format(
            "- Command: `build/bench/compare --steps {} --batch-size {} --model {} --clip-text {} "
            "--eval-limit {} --threads {}{}{}`.\n",
            steps, batch, model, clip_text, eval_limit, threads,
            captions_limit > 0 ? fmt::format(" --captions {}", captions_limit) : "",
            a.get("llm").empty() ? "" : " --llm " + a.get("llm"))
     << fmt::format(
            "- Both runs: image tower {} ({} px), Flickr8k train split, the five captions of each image "
            "joined into one description, {} steps of batch {}, lr 1e-3 with 20 warm-up steps and a cosine, "
            "AdamW, bf16 autocast, seed {}, InfoNCE (multi-positive for FLAME, K = 1 for CLIP). FLAME's "
            "image tower ends in the MLP projector into the LLM's space; CLIP's in a linear projection.\n",
            model, vit.image_size, steps, batch, seed)
     << "- Evaluation: `flame eval --benchmark flickr8k --benchmark cifar10` with "
     << fmt::format(
            "--limit {}: at most {} images per task (the Flickr8k test split has 1000; CIFAR-10 tasks take "
            "{} per class).\n",
            eval_limit, eval_limit, eval_limit / 10)
     << "  Long retrieval: FLAME uses the mean cosine over the 7 long-prompt facets; CLIP uses the "
        "description cut "
        "to 77 tokens.\n";
  if (a.get("llm").empty()) {
    md << "- **The LLM is a tiny random model** (no pretrained weights can be downloaded here). FLAME's "
          "premise is a "
          "pretrained LLM's knowledge; with random weights its text features carry little meaning, so these "
          "numbers "
          "compare the two pipelines' mechanics and cost, not the method's quality. Run with `--llm` on a "
          "real "
          "checkpoint for the method's comparison.\n";
  }
  md << "\n## Retrieval, R@1 (image→text / text→image, %)\n\n"
     << "| model | text side | Flickr8k short | Flickr8k long | Multi30k en | de | fr | cs |\n"
     << "|---|---|---:|---:|---:|---:|---:|---:|\n";
  for (const auto& r : rows) {
    md << fmt::format(
        "| {} | {} | {} | {} | {} | {} | {} | {} |\n", r.name, r.text_side,
        recall_cell(task_named(r.results, "flickr8k-short")),
        recall_cell(task_named(r.results, "flickr8k-long")),
        recall_cell(task_named(r.results, "multi30k-en")), recall_cell(task_named(r.results, "multi30k-de")),
        recall_cell(task_named(r.results, "multi30k-fr")), recall_cell(task_named(r.results, "multi30k-cs")));
  }
  md << "\n## Classification (CIFAR-10, %) and cost\n\n"
     << "| model | zero-shot top-1 | top-5 | linear probe top-1 | trained parameters | final loss | offline "
        "embedding s | training s | total s | eval s |\n"
     << "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  json out = json::array();
  for (const auto& r : rows) {
    const json& zs = task_named(r.results, "cifar10-zero-shot");
    const json& probe = task_named(r.results, "cifar10-linear-probe");
    md << fmt::format(
        "| {} | {:.1f} | {:.1f} | {:.1f} | {:.2f} M | {:.3f} | {:.0f} | {:.0f} | {:.0f} | {:.0f} |\n", r.name,
        100 * zs["top1"].get<double>(), 100 * zs["top5"].get<double>(), 100 * probe["top1"].get<double>(),
        r.trained_parameters / 1e6, r.final_loss, r.offline_seconds, r.train_seconds,
        r.offline_seconds + r.train_seconds, r.eval_seconds);
    out.push_back({{"name", r.name},
                   {"text_side", r.text_side},
                   {"trained_parameters", r.trained_parameters},
                   {"final_loss", r.final_loss},
                   {"offline_seconds", r.offline_seconds},
                   {"train_seconds", r.train_seconds},
                   {"eval_seconds", r.eval_seconds},
                   {"results", r.results}});
  }
  md << "\nTotal = offline embedding + training: the wall time from captions to a trained model. FLAME's "
        "embedding "
        "is done once per data set and LLM and reused by every later run; CLIP's text tower is trained in "
        "every "
        "run. Each run's full evaluation is in `eval.json` of its run directory (and in compare.json).\n";
  std::cout << "\n" << md.str();
  if (!a.flag("no-write")) {
    const fs::path dir = FLAME_BENCH_RESULTS_DIR;
    write_file_atomic(dir / "compare.md", md.str());
    write_json_file_atomic(dir / "compare.json", out);
    fmt::print("wrote {}\n", (dir / "compare.md").string());
  }
  return 0;
} catch (const std::exception& e) {
  fmt::print(stderr, "compare: {}\n", e.what());
  return 1;
}
