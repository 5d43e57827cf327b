#include "train/trainer.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <memory>
#include <sstream>

#include "data/image_source.h"
#include "data/train_loader.h"
#include "llm/load_llm.h"
#include "train/checkpoint.h"
#include "train/lr_schedule.h"
#include "train/task.h"
#include "train/text_provenance.h"
#include "train/trained_model.h"
#include "util/allocator.h"
#include "util/distributed.h"
#include "util/error.h"
#include "util/file.h"
#include "util/json_fields.h"
#include "util/progress.h"
#include "vision/image_encoder.h"
#include "vision/vit_config.h"

namespace flame::train {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

nlohmann::json loader_states_json(const std::vector<int64_t>& flat) {
  nlohmann::json out = nlohmann::json::array();
  for (size_t i = 0; i + 2 < flat.size(); i += 3) {
    data::LoaderState s{flat[i], flat[i + 1], flat[i + 2]};
    nlohmann::json j;
    data::to_json(j, s);
    out.push_back(j);
  }
  return out;
}

// The first field where two resume identities differ, for the error message.
std::string first_difference(const nlohmann::json& a, const nlohmann::json& b) {
  for (const auto& [key, value] : a.items()) {
    if (!b.contains(key) || b.at(key) != value) {
      return fmt::format("'{}' was {} and is now {}", key, value.dump(),
                         b.contains(key) ? b.at(key).dump() : "absent");
    }
  }
  return "the field set differs";
}

// Stops the run on a non-finite loss or gradient norm at 1-based `step`,
// naming the last good checkpoint (left intact).
[[noreturn]] void stop_non_finite(const char* what, double value, int64_t step, const std::string& detail,
                                  const fs::path& last_checkpoint) {
  // "nan", not "-nan": the sign of a NaN is meaningless and varies by platform.
  fail("{} is {} at step {}{}: stopping; the last good checkpoint is {}", what,
       std::isnan(value) ? "nan" : (value > 0 ? "inf" : "-inf"), step, detail,
       last_checkpoint.empty() ? "none" : last_checkpoint.string());
}

std::shared_ptr<const data::ImageSource> open_images(const TrainOptions& o) {
  data::ImageSourceOptions source_options;
  source_options.image_dir = o.image_dir;
  source_options.split_file = o.split_file;
  return std::make_shared<const data::ImageSource>(data::ImageSource::open(o.images, source_options));
}

// The same seed on every rank gives the same initial parameters;
// broadcasting them from rank 0 makes that explicit.
TrainedModel init_model(const TrainTask& task, const vision::VitConfig& vit, const TrainOptions& o,
                        Distributed& dist) {
  torch::manual_seed(o.seed);
  TrainedModel model = task.make_model(vit);
  model.root->to(llm::parse_device(o.device));
  {
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> params = model.root->parameters();
    dist.broadcast_(params);
  }
  // Patch dropout draws from the torch RNG: each rank its own stream.
  torch::manual_seed(o.seed + 1000003ULL * (dist.rank() + 1));
  return model;
}

torch::optim::AdamW make_optimizer(const std::vector<ParameterGroup>& groups, const TrainOptions& o) {
  std::vector<torch::optim::OptimizerParamGroup> adam_groups;
  for (const ParameterGroup& group : groups) {
    adam_groups.emplace_back(group.parameters, std::make_unique<torch::optim::AdamWOptions>(
                                                   torch::optim::AdamWOptions(o.lr)
                                                       .betas({o.beta1, o.beta2})
                                                       .eps(o.eps)
                                                       .weight_decay(group.weight_decay)));
  }
  return torch::optim::AdamW(adam_groups, torch::optim::AdamWOptions(o.lr));
}

// Where a run starts: step 0, or a checkpoint's step and this rank's loader
// position (its weights, moments and RNG already loaded).
struct Start {
  int64_t step = 0;
  data::LoaderState loader;
  fs::path checkpoint;  // empty: a new run
};

// A checkpoint not written by `flame train` (an import, or a hand-made one)
// has no training state to continue: refused naming what to do instead.
void check_resumable(const nlohmann::json& config, const fs::path& checkpoint) {
  if (config.is_object() && config.contains("train_identity") && config.at("train_identity").is_object())
    return;
  if (config.is_object() && config.contains("imported_from")) {
    fail(
        "cannot resume {}: it was made by `flame import`, so it holds a model but no training state "
        "(options, optimizer moments, data position) to continue; evaluate it with `flame eval --model`, "
        "train a new run in another --out, or pass --overwrite (not --resume) to replace it",
        checkpoint.string());
  }
  fail(
      "cannot resume {}: its config.json has no 'train_identity' object, so it was not written by "
      "`flame train`; train a new run in another --out, or pass --overwrite (not --resume) to replace it",
      checkpoint.string());
}

// The options must be the run's (resume_identity). With the stores' record
// in the checkpoint, stores are compared by what they hold
// (check_text_stores), not by path: a store moved or copied is the same store.
void check_options(const nlohmann::json& config, const TrainOptions& o, const fs::path& checkpoint) {
  nlohmann::json saved = config.at("train_identity");
  nlohmann::json now = resume_identity(o);
  if (config.contains("text_stores") && o.text_tower == TextTower::kLlm) {
    saved.erase("text_stores");
    now.erase("text_stores");
  }
  if (saved != now) {
    fail("cannot resume {}: the run was started with other options ({})", checkpoint.string(),
         first_difference(saved, now));
  }
}

// The stores given (`now`: the task's record of them, as opened) must be the
// ones the checkpoint trained on, store by store: the same identity (LLM,
// layer, prompt set, K, ...) and, where both are known, the same content.
// A checkpoint without the record (older runs) is not checked.
void check_text_stores(const nlohmann::json& config, const nlohmann::json& now, const TrainOptions& o,
                       const fs::path& checkpoint) {
  if (now.is_null() || !config.contains("text_stores")) return;
  const std::string source = (checkpoint / "config.json").string();
  const TextProvenance saved = read_text_provenance(config, source);
  if (saved.stores.size() != now.size()) {
    fail("cannot resume {}: it was trained on {} stores (--texts), this run gives {}", checkpoint.string(),
         saved.stores.size(), now.size());
  }
  for (size_t i = 0; i < now.size(); ++i) {
    const std::string& store = o.text_stores.at(i);
    const auto differences =
        text::identity_differences(saved.stores[i], text::identity_from_json(now[i], store));
    if (!differences.empty()) {
      fail("cannot resume {}: --texts {} is not the store the run trained on: {}", checkpoint.string(), store,
           text::describe_differences(differences, "the run's store", "this one"));
    }
    const nlohmann::json& recorded = config.at("text_stores").at(i);
    if (!recorded.contains(kStoreContentField) || !now[i].contains(kStoreContentField)) continue;
    if (recorded.at(kStoreContentField) != now[i].at(kStoreContentField)) {
      fail(
          "cannot resume {}: --texts {} has the settings of the store the run trained on but other "
          "contents ({} {} then, {} now): it was embedded again (other captions?) or changed; give the "
          "original store, or --overwrite to start a new run",
          checkpoint.string(), store, kStoreContentField, recorded.at(kStoreContentField).dump(),
          now[i].at(kStoreContentField).dump());
    }
  }
}

// The state.json fields a resume reads, with errors naming the file.
struct SavedState {
  int64_t step = 0;
  int64_t world_size = 0;
  data::LoaderState loader;  // this rank's
};
SavedState read_saved_state(const nlohmann::json& state, const fs::path& checkpoint,
                            const Distributed& dist) {
  const std::string source = (checkpoint / "state.json").string();
  if (!state.is_object()) fail("{}: expected a JSON object", source);
  SavedState out;
  out.step = json_int(state, "step", source, /*required=*/true, 0);
  out.world_size = json_int(state, "world_size", source, /*required=*/true, 0);
  if (out.step < 0) fail("{}: field 'step' must not be negative, got {}", source, out.step);
  if (out.world_size != dist.world_size()) {
    fail("cannot resume {}: it was written by {} ranks, this run has {}", checkpoint.string(), out.world_size,
         dist.world_size());
  }
  const auto loader = state.find("loader");
  if (loader == state.end() || !loader->is_array() || static_cast<int64_t>(loader->size()) != out.world_size)
    fail("{}: field 'loader' must be an array of {} loader states (one per rank)", source, out.world_size);
  try {
    data::from_json(loader->at(dist.rank()), out.loader);
  } catch (const Error& e) {
    fail("{}: {}", source, e.what());
  }
  return out;
}

// With `resume`, continues from the latest checkpoint in o.out, if any: it
// must come from `flame train` with the same options (resume_identity), the
// same stores (`text_stores`: the task's record) and number of ranks.
Start resume_from(const TrainOptions& o, bool resume, Distributed& dist, TrainedModel& model,
                  torch::optim::AdamW& optimizer, const nlohmann::json& text_stores) {
  Start start;
  const auto latest = resume ? latest_checkpoint(o.out) : std::nullopt;
  if (latest) {
    const CheckpointContents saved = read_checkpoint_contents(*latest);
    check_resumable(saved.config, *latest);
    check_options(saved.config, o, *latest);
    check_text_stores(saved.config, text_stores, o, *latest);
    const SavedState state = read_saved_state(saved.state, *latest, dist);
    start.step = state.step;
    start.checkpoint = *latest;
    start.loader = state.loader;
    load_checkpoint(*latest, *model.root, &optimizer, /*restore_rng=*/dist.world_size() == 1);
    if (dist.world_size() > 1)
      torch::manual_seed(o.seed + 1000003ULL * (dist.rank() + 1) + 7919ULL * start.step);
    if (dist.is_main()) spdlog::info("resuming from {} (step {})", latest->string(), start.step);
  } else if (resume && dist.is_main()) {
    spdlog::info("no checkpoint in {}: starting a new run", o.out);
  }
  return start;
}

data::LoaderOptions loader_options(const TrainOptions& o, const vision::VitConfig& vit,
                                   const Distributed& dist) {
  data::LoaderOptions l;
  l.batch_size = o.batch_size / dist.world_size() / o.accum_steps;  // a micro-batch of this rank
  l.num_workers = o.workers;
  l.prefetch_batches = o.prefetch_batches;
  l.seed = o.seed;
  l.transform.size = vit.image_size;
  l.transform.train = true;
  l.rank = dist.rank();
  l.world_size = dist.world_size();
  l.max_skip_fraction = o.max_skip_fraction;
  l.positives_per_item = o.positives_per_step;
  l.pin_memory = llm::parse_device(o.device).is_cuda();
  return l;
}

// config.json of the run's checkpoints: the model's shapes, the facets, the
// options and what a resumed run must share with this one.
nlohmann::json checkpoint_config(const TrainOptions& o, const TrainTask& task, const TrainedModel& model) {
  nlohmann::json train_json;
  to_json(train_json, o);
  nlohmann::json config = model_config_json(model);
  config["facets"] = task.facets();
  const nlohmann::json text_stores = task.text_provenance();
  if (!text_stores.is_null()) config["text_stores"] = text_stores;
  config["train"] = train_json;
  config["train_identity"] = resume_identity(o);
  return config;
}

// The parts of a run its steps and checkpoints work on.
struct Run {
  const TrainOptions& o;
  Distributed& dist;
  TrainTask& task;
  TrainedModel& model;
  torch::optim::AdamW& optimizer;
  data::TrainLoader& loader;
  const nlohmann::json config;  // config.json of its checkpoints
};

// What one optimizer step measured on this rank.
struct StepResult {
  double loss = 0;          // the mean over the micro-batches
  double wait_seconds = 0;  // waiting for the loader
  double grad_norm = 0;     // before clipping
  int64_t epoch = 0;        // of the last micro-batch
};

// Every rank computed the whole loss, so the parameters that enter it
// directly (temperature, bias) have the full gradient on each rank: their
// share of the sum is 1/W. The others get gradient only through this rank's
// images, and the sum over ranks is the exact gradient.
void all_reduce_gradients(Run& run) {
  if (run.dist.world_size() > 1) {
    torch::NoGradGuard no_grad;
    for (const torch::Tensor& p : run.task.loss_parameters(run.model)) {
      if (p.grad().defined()) p.grad().div_(run.dist.world_size());
    }
  }
  std::vector<torch::Tensor> grads;
  for (const auto& p : run.model.root->parameters()) grads.push_back(p.grad());
  run.dist.all_reduce_sum_(grads);
}

// The global L2 norm of the gradients (returned), which are scaled down to
// `max_norm` when above it (0: no clipping), as torch.nn.utils.clip_grad_norm_
// computes it: one norm per gradient, the norm of those.
double clip_gradients(const std::vector<torch::Tensor>& parameters, double max_norm) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> grads, norms;
  for (const torch::Tensor& p : parameters) {
    if (!p.grad().defined()) continue;
    grads.push_back(p.grad());
    norms.push_back(p.grad().norm());
  }
  if (grads.empty()) return 0;
  const double total = torch::stack(norms).norm().item<double>();
  const double scale = max_norm / (total + 1e-6);
  if (max_norm > 0 && scale < 1) {
    for (torch::Tensor& g : grads) g.mul_(scale);
  }
  return total;
}

// Optimizer step `step` (0-based) at learning rate `lr`: accum_steps
// micro-batches forward and backward, the gradients summed over the ranks and
// clipped, AdamW, the logit scale clamped. Stops on a non-finite loss or
// gradient norm, naming `last_checkpoint`.
StepResult train_step(Run& run, int64_t step, double lr, const fs::path& last_checkpoint) {
  for (auto& group : run.optimizer.param_groups())
    static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
  // Gradients dropped, not zeroed (Python's zero_grad(set_to_none=True)):
  // the first backward then stores its gradient instead of adding it to zeros.
  for (torch::Tensor& p : run.model.root->parameters()) p.mutable_grad() = torch::Tensor();
  StepResult r;
  const int64_t accum_steps = run.o.accum_steps;
  for (int64_t micro = 0; micro < accum_steps; ++micro) {
    const data::Batch batch = run.loader.next();
    r.wait_seconds += batch.wait_seconds;
    r.epoch = batch.epoch;
    const torch::Tensor loss = run.task.loss(run.model, batch, run.dist);
    const double value = loss.item<double>();
    if (!std::isfinite(value)) {
      stop_non_finite("the loss", value, step + 1,
                      fmt::format(" (micro-batch {}, first key '{}'; likely causes: a learning rate too high "
                                  "for this model (lr {:g} at this step, grad clip {:g}), or a corrupt input "
                                  "in this batch)",
                                  micro, batch.keys.front(), lr, run.o.grad_clip),
                      last_checkpoint);
    }
    (loss / static_cast<double>(accum_steps)).backward();
    r.loss += value / accum_steps;
  }
  all_reduce_gradients(run);
  r.grad_norm = clip_gradients(run.model.root->parameters(), run.o.grad_clip);
  if (!std::isfinite(r.grad_norm))
    stop_non_finite("the gradient norm", r.grad_norm, step + 1, "", last_checkpoint);
  run.optimizer.step();
  run.model.image->clamp_logit_scale_();
  return r;
}

// Skipped images over all ranks (a collective).
int64_t skipped_images(Run& run) {
  return static_cast<int64_t>(
      run.dist.all_reduce_sum(static_cast<double>(run.loader.state().skipped_images)));
}

// The log line of the step that ended at `step` (1-based) after `seconds`;
// every rank calls it (collectives).
StepLog step_log(Run& run, int64_t step, double lr, const StepResult& r, double seconds) {
  StepLog entry;
  entry.step = step;
  entry.epoch = r.epoch;
  entry.loss = r.loss;
  entry.lr = lr;
  entry.logit_scale = run.model.image->logit_scale_exp().item<double>();
  entry.grad_norm = r.grad_norm;
  entry.images_per_second = static_cast<double>(run.o.batch_size) / seconds;
  entry.data_wait_fraction = run.dist.all_reduce_max(r.wait_seconds) / seconds;
  entry.skipped_images = skipped_images(run);
  return entry;
}

// A checkpoint after `step`: rank 0 writes it with every rank's loader state
// (and names it in the summary); all ranks wait for it.
void save(Run& run, int64_t step, TrainSummary& summary) {
  const data::LoaderState s = run.loader.state();
  const std::vector<int64_t> states = run.dist.all_gather_int64({s.epoch, s.position, s.skipped_images});
  if (run.dist.is_main()) {
    const nlohmann::json state = {
        {"step", step}, {"world_size", run.dist.world_size()}, {"loader", loader_states_json(states)}};
    summary.last_checkpoint = save_checkpoint(run.o.out, step, *run.model.root, run.optimizer,
                                              {run.config, state}, run.o.keep_checkpoints);
  }
  run.dist.barrier();
}

// The lines of a train-log.jsonl, each with its step (-1 for a line that is
// no log entry, e.g. one cut by a kill). None when there is no log.
std::vector<std::pair<std::string, int64_t>> log_lines(const fs::path& log) {
  std::vector<std::pair<std::string, int64_t>> lines;
  if (!fs::exists(log)) return lines;
  std::istringstream in(read_file(log));
  for (std::string line; std::getline(in, line);) {
    const nlohmann::json entry = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    const bool logged = entry.is_object() && entry.contains("step") && entry.at("step").is_number_integer();
    lines.emplace_back(line, logged ? entry.at("step").get<int64_t>() : -1);
  }
  return lines;
}

// A resumed run continues after `step`: log lines of later steps (written
// before the run was stopped, then superseded) are dropped, as is a line cut
// by a kill.
void cut_log_to(const fs::path& log, int64_t step) {
  std::string kept;
  int64_t dropped = 0;
  for (const auto& [line, line_step] : log_lines(log)) {
    if (line_step >= 0 && line_step <= step) {
      kept += line + "\n";
    } else {
      ++dropped;
    }
  }
  if (dropped == 0) return;
  write_file_atomic(log, kept);
  spdlog::info("{}: dropped {} lines of steps after {}, which this run repeats", log.string(), dropped, step);
}

// What rank 0 shows of the steps: train-log.jsonl and the progress bar.
class StepOutput {
 public:
  StepOutput(const TrainOptions& o, bool main, int64_t first_step) {
    if (!main) return;
    cut_log_to(fs::path(o.out) / "train-log.jsonl", first_step);
    log_ = std::make_unique<JsonlWriter>(fs::path(o.out) / "train-log.jsonl");
    progress_ = std::make_unique<ProgressBar>("train", o.steps, "step");
    progress_->set_extra_unit("img");
    progress_->set_initial(first_step);
  }
  void write(const StepLog& entry, int64_t images) {
    if (!log_) return;
    log_->write(entry.to_json());
    progress_->advance(1, images);
  }
  void finish() {
    if (progress_) progress_->finish();
  }

 private:
  std::unique_ptr<JsonlWriter> log_;
  std::unique_ptr<ProgressBar> progress_;
};

// Time and images over the steps of this run.
struct Throughput {
  double images = 0, busy_seconds = 0, wait_seconds = 0;
};

// The end of a run that did its last step: the summary (summed over the
// ranks, with the task's fields), summary.json and the closing line.
void finish_run(Run& run, const Throughput& t, TrainSummary& summary) {
  summary.images_per_second = t.images / std::max(1e-9, t.busy_seconds);
  summary.data_wait_fraction = t.wait_seconds / std::max(1e-9, t.busy_seconds);
  summary.skipped_images = skipped_images(run);
  run.task.finish(summary, run.dist);
  if (!run.dist.is_main()) return;
  write_json_file_atomic(fs::path(run.o.out) / "summary.json", summary.to_json());
  spdlog::info("trained {} steps: final loss {:.4f}, {:.1f} images/s, data wait {:.1f}%, {} images skipped",
               summary.steps, summary.final_loss, summary.images_per_second, 100 * summary.data_wait_fraction,
               summary.skipped_images);
}

}  // namespace

nlohmann::json StepLog::to_json() const {
  return {{"step", step},
          {"epoch", epoch},
          {"loss", loss},
          {"lr", lr},
          {"logit_scale", logit_scale},
          {"grad_norm", grad_norm},
          {"images_per_s", images_per_second},
          {"data_wait_fraction", data_wait_fraction},
          {"skipped_images", skipped_images}};
}

namespace {

// Whether `dir` holds (part of) a training run.
bool holds_run(const fs::path& dir) {
  return fs::exists(dir / "checkpoints") || fs::exists(dir / "train-log.jsonl") ||
         fs::exists(dir / "summary.json");
}

// Temp files of a checkpoint, log or summary write that was interrupted (a
// kill, a full disk): ".step-N.tmp-PID" folders and ".NAME.tmp.PID.X" files.
// Called with the folder's lock held, so no live process owns them.
void remove_interrupted_writes(const fs::path& run_dir) {
  for (const fs::path& dir : {run_dir, run_dir / "checkpoints"}) {
    if (!fs::is_directory(dir)) continue;
    for (const auto& entry : fs::directory_iterator(dir)) {
      const std::string name = entry.path().filename().string();
      if (name.rfind('.', 0) == 0 && name.find(".tmp") != std::string::npos) {
        spdlog::info("removing '{}', left by an interrupted run", entry.path().string());
        fs::remove_all(entry.path());
      }
    }
  }
}

// --overwrite, with the folder's lock held: the old run's checkpoints, log
// and summary are renamed into one temp folder (the checkpoints first), then
// deleted. Each rename is atomic, so a kill part-way leaves the old run whole
// or no checkpoint to resume (a resumed run then starts at step 0, cuts the
// old log and removes the old summary); the temp folder is removed by the
// next run on the folder (remove_interrupted_writes).
void delete_run(const fs::path& dir) {
  spdlog::warn("--overwrite: deleting the run in {}", dir.string());
  const fs::path trash = dir / fmt::format(".overwritten.tmp-{}", ::getpid());
  fs::remove_all(trash);
  fs::create_directories(trash);
  for (const char* name : {"checkpoints", "train-log.jsonl", "summary.json"}) {
    if (fs::symlink_status(dir / name).type() != fs::file_type::not_found)
      rename_durable(dir / name, trash / name);
  }
  fs::remove_all(trash);
}

// Rank 0 locks the run folder and checks it against `start`; every rank
// learns the outcome, so a refusal stops all of them at once.
std::unique_ptr<DirectoryLock> prepare_run_folder(const TrainOptions& o, RunStart start, Distributed& dist) {
  std::unique_ptr<DirectoryLock> lock;
  std::string error;
  if (dist.is_main()) {
    try {
      const fs::path dir(o.out);
      lock = std::make_unique<DirectoryLock>(dir, "the run folder");
      if (holds_run(dir) && start == RunStart::kNew) {
        fail(
            "{} already holds a run (checkpoints/, train-log.jsonl): pass --resume to continue it, or "
            "--overwrite to delete it and start again",
            o.out);
      }
      if (holds_run(dir) && start == RunStart::kOverwrite) delete_run(dir);
      remove_interrupted_writes(dir);
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  if (dist.all_reduce_max(error.empty() ? 0.0 : 1.0) > 0)
    fail("{}", error.empty() ? "rank 0 could not prepare the run folder" : error);
  return lock;
}

// A resumed run that had done all its steps. Killed while writing
// summary.json, it gets its summary now (the loss from its log); with the
// summary there, there is nothing to do.
TrainSummary finished_run(const TrainOptions& o, const Start& start, Distributed& dist) {
  const fs::path path = fs::path(o.out) / "summary.json";
  if (fs::exists(path)) fail("the run in {} has already done {} of {} steps", o.out, start.step, o.steps);
  TrainSummary summary;
  summary.first_step = summary.steps = start.step;
  summary.last_checkpoint = start.checkpoint;
  for (const auto& [line, step] : log_lines(fs::path(o.out) / "train-log.jsonl")) {
    if (step != start.step) continue;
    const nlohmann::json entry = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (entry.contains("loss") && entry.at("loss").is_number())
      summary.final_loss = entry.at("loss").get<double>();
  }
  if (dist.is_main()) {
    write_json_file_atomic(path, summary.to_json());
    spdlog::info("the run in {} had done its {} steps: wrote its missing summary.json", o.out, start.step);
  }
  return summary;
}

// With --epochs, the steps that make that many passes over the paired images.
int64_t total_steps(const TrainOptions& o, const data::TrainLoader& loader, bool main) {
  if (o.epochs == 0) return o.steps;
  const int64_t images = loader.skips().usable;
  if (images > 0 && o.epochs > (std::numeric_limits<int64_t>::max() - o.batch_size) / images)
    fail("train: --epochs {} over {} images is more steps than can be counted", o.epochs, images);
  const int64_t steps = (o.epochs * images + o.batch_size - 1) / o.batch_size;
  if (main)
    spdlog::info("{} epochs of {} images at batch {}: {} steps", o.epochs, images, o.batch_size, steps);
  return std::max<int64_t>(steps, 1);
}

// Rank 0, before the first step of this run: summary.json describes a
// finished run, so one left by an earlier run (finished with fewer steps, or
// cut by a kill during --overwrite) goes now, not when this run ends.
void start_steps(const TrainOptions& o) {
  const fs::path summary = fs::path(o.out) / "summary.json";
  if (fs::exists(summary)) {
    spdlog::info("removing {}: this run does more steps", summary.string());
    fs::remove(summary);
  }
  if (o.warmup_steps > o.steps)
    spdlog::warn("--warmup-steps {} is more than the run's {} steps: the learning rate never reaches --lr {}",
                 o.warmup_steps, o.steps, o.lr);
}

// Each image's positives per step: all K, or a subset no larger than K.
void check_positives(const TrainOptions& o, const TrainTask& task) {
  const auto k = static_cast<int64_t>(task.facets().size());
  if (o.positives_per_step > k)
    fail("train: --positives-per-step {} exceeds the {} positives per image of the text side",
         o.positives_per_step, k);
}

}  // namespace

TrainSummary run_training(const TrainOptions& options, RunStart run_start, const TrainHooks& hooks) {
  TrainOptions o = options;  // with --epochs, steps is set once the images are known
  Distributed dist = Distributed::init(dist_env_from_environment(), llm::parse_device(o.device));
  validate(o, dist.world_size());
  retain_freed_memory();  // each step's activations reuse the last step's pages
  const std::unique_ptr<DirectoryLock> lock = prepare_run_folder(o, run_start, dist);
  const bool resume = run_start == RunStart::kResume;

  // The text side first (FLAME's stores, or CLIP's captions), then the images
  // and the model the task builds.
  const std::unique_ptr<TrainTask> task = make_task(o);
  check_positives(o, *task);
  const std::shared_ptr<const data::ImageSource> images = open_images(o);
  vision::VitConfig vit = vision::load_vit_config(o.model);
  vit.grad_checkpointing = vit.grad_checkpointing || o.grad_checkpointing;
  TrainedModel model = init_model(*task, vit, o, dist);
  torch::optim::AdamW optimizer = make_optimizer(task->parameter_groups(model), o);
  const Start start = resume_from(o, resume, dist, model, optimizer, task->text_provenance());
  data::TrainLoader loader(images, task->paired_texts(), loader_options(o, vit, dist), start.loader);
  // (the loader logs images without a text embedding, with examples)
  o.steps = total_steps(o, loader, dist.is_main());
  if (start.step >= o.steps) return finished_run(o, start, dist);
  if (dist.is_main()) start_steps(o);
  Run run{o, dist, *task, model, optimizer, loader, checkpoint_config(o, *task, model)};

  TrainSummary summary;
  summary.first_step = start.step;
  summary.images_without_embedding = loader.skips().without_embedding;
  summary.last_checkpoint = start.checkpoint;
  StepOutput output(o, dist.is_main(), start.step);
  Throughput throughput;
  model.root->train();
  int64_t step = start.step;
  while (step < o.steps) {
    if (hooks.before_step) hooks.before_step(step, model.image);
    const auto t0 = Clock::now();
    const double lr = cosine_lr(step, o.steps, o.warmup_steps, o.lr, o.min_lr);
    const StepResult result = train_step(run, step, lr, summary.last_checkpoint);
    ++step;
    const double seconds = seconds_since(t0);
    throughput.images += static_cast<double>(o.batch_size);
    throughput.busy_seconds += seconds;
    throughput.wait_seconds += result.wait_seconds;
    const StepLog entry = step_log(run, step, lr, result, seconds);
    summary.final_loss = result.loss;
    output.write(entry, o.batch_size);
    if (hooks.on_step) hooks.on_step(entry);
    if (hooks.stop_after_step >= 0 && step >= hooks.stop_after_step) {
      summary.steps = step;
      return summary;  // as if killed: no checkpoint beyond the last periodic one
    }
    if (step % o.save_every == 0 || step == o.steps) save(run, step, summary);
  }
  output.finish();
  summary.steps = step;
  finish_run(run, throughput, summary);
  return summary;
}

}  // namespace flame::train
