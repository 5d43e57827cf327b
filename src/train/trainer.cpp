#include "train/trainer.h"

#include <ATen/autocast_mode.h>
#include <spdlog/spdlog.h>
#include <torch/version.h>

#include <chrono>
#include <cmath>

#include "data/caption_table.h"
#include "data/image_source.h"
#include "data/train_loader.h"
#include "llm/tokenizer.h"
#include "text/clip_text_config.h"
#include "text/clip_tokenize.h"
#include "text/joined_stores.h"
#include "train/checkpoint.h"
#include "train/distributed.h"
#include "train/loss.h"
#include "train/lr_schedule.h"
#include "train/trained_model.h"
#include "util/error.h"
#include "util/file.h"
#include "util/progress.h"
#include "vision/image_encoder.h"
#include "vision/vit_config.h"

namespace flame::train {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// bf16 autocast for the forward pass: matmuls and convolutions in bf16, the
// rest (norms, softmax, the loss) in fp32, as torch.autocast does.
class AutocastScope {
 public:
  AutocastScope(bool enabled, const torch::Device& device) : enabled_(enabled), cuda_(device.is_cuda()) {
    if (!enabled_) return;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    // 2.4+ keys autocast by device type; the per-backend setters are deprecated.
    const auto type = cuda_ ? at::kCUDA : at::kCPU;
    at::autocast::set_autocast_dtype(type, torch::kBFloat16);
    at::autocast::set_autocast_enabled(type, true);
#else
    if (cuda_) {
      at::autocast::set_autocast_gpu_dtype(torch::kBFloat16);
      at::autocast::set_enabled(true);
    } else {
      at::autocast::set_autocast_cpu_dtype(torch::kBFloat16);
      at::autocast::set_cpu_enabled(true);
    }
#endif
  }
  ~AutocastScope() {
    if (!enabled_) return;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    at::autocast::set_autocast_enabled(cuda_ ? at::kCUDA : at::kCPU, false);
#else
    if (cuda_)
      at::autocast::set_enabled(false);
    else
      at::autocast::set_cpu_enabled(false);
#endif
    at::autocast::clear_cache();
  }

 private:
  bool enabled_, cuda_;
};

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

nlohmann::json TrainSummary::to_json() const {
  return {{"first_step", first_step},
          {"steps", steps},
          {"final_loss", final_loss},
          {"images_per_s", images_per_second},
          {"data_wait_fraction", data_wait_fraction},
          {"skipped_images", skipped_images},
          {"images_without_embedding", images_without_embedding},
          {"truncated_captions", truncated_captions},
          {"last_checkpoint", last_checkpoint.string()}};
}

TrainSummary run_training(const TrainOptions& o, bool resume, const TrainHooks& hooks) {
  const torch::Device device(o.device);
  Distributed dist = Distributed::init(dist_env_from_environment(), device);
  validate(o, dist.world_size());
  const bool main = dist.is_main();
  const fs::path run_dir = o.out;
  if (main) fs::create_directories(run_dir);

  // Data. FLAME: the stores fix the text side (K facets of dim D). CLIP: one
  // caption per key, tokenized per batch for the trained text tower.
  const bool clip = o.text_tower == TextTower::kClip;
  std::shared_ptr<const text::JoinedStores> stores;
  std::shared_ptr<const data::CaptionTable> captions;
  std::shared_ptr<const data::PairedTexts> texts;
  text::ClipTextConfig clip_config;
  std::unique_ptr<llm::Tokenizer> tokenizer;
  if (clip) {
    clip_config = text::load_clip_text_config(o.clip_text);
    tokenizer = llm::Tokenizer::load(clip_config.tokenizer_path());
    data::CaptionSourceOptions caption_options;
    caption_options.tsv_text_column = o.caption_field;
    caption_options.tsv_join = o.caption_join;
    captions = std::make_shared<const data::CaptionTable>(
        data::CaptionTable::read(o.captions, caption_options, o.caption_field));
    texts = captions;
  } else {
    stores = std::make_shared<const text::JoinedStores>(
        text::JoinedStores::open(std::vector<fs::path>(o.text_stores.begin(), o.text_stores.end())));
    texts = stores;
  }
  data::ImageSourceOptions source_options;
  source_options.image_dir = o.image_dir;
  source_options.split_file = o.split_file;
  auto images = std::make_shared<const data::ImageSource>(data::ImageSource::open(o.images, source_options));

  // Model: the same seed on every rank gives the same initial parameters;
  // broadcasting them from rank 0 makes that explicit.
  const vision::VitConfig vit = vision::load_vit_config(o.model);
  torch::manual_seed(o.seed);
  TrainedModel model = clip ? make_clip_model(vit, clip_config, tokenizer->vocab_size())
                            : make_flame_model(vit, stores->dim());
  model.root->to(device);
  vision::ImageEncoder& encoder = model.image;
  {
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> params = model.root->parameters();
    dist.broadcast_(params);
  }
  // Patch dropout draws from the torch RNG: each rank its own stream.
  torch::manual_seed(o.seed + 1000003ULL * (dist.rank() + 1));

  std::vector<torch::optim::OptimizerParamGroup> groups;
  const auto adam = [&](double weight_decay) {
    return std::make_unique<torch::optim::AdamWOptions>(
        torch::optim::AdamWOptions(o.lr).betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(weight_decay));
  };
  groups.emplace_back(model.decay_parameters(), adam(o.weight_decay));
  groups.emplace_back(model.no_decay_parameters(), adam(0.0));
  torch::optim::AdamW optimizer(groups, torch::optim::AdamWOptions(o.lr));

  // Resume: weights, moments, RNG, and where each rank's loader stood.
  int64_t step = 0;
  data::LoaderState loader_state;
  const auto latest = resume ? latest_checkpoint(run_dir) : std::nullopt;
  if (latest) {
    const CheckpointContents saved = read_checkpoint_contents(*latest);
    const nlohmann::json identity = resume_identity(o);
    if (saved.config.at("train_identity") != identity) {
      fail("cannot resume {}: the run was started with other options ({})", latest->string(),
           first_difference(saved.config.at("train_identity"), identity));
    }
    if (saved.state.at("world_size").get<int>() != dist.world_size()) {
      fail("cannot resume {}: it was written by {} ranks, this run has {}", latest->string(),
           saved.state.at("world_size").get<int>(), dist.world_size());
    }
    step = saved.state.at("step").get<int64_t>();
    data::from_json(saved.state.at("loader").at(dist.rank()), loader_state);
    load_checkpoint(*latest, *model.root, &optimizer, /*restore_rng=*/dist.world_size() == 1);
    if (dist.world_size() > 1) torch::manual_seed(o.seed + 1000003ULL * (dist.rank() + 1) + 7919ULL * step);
    if (main) spdlog::info("resuming from {} (step {})", latest->string(), step);
  } else if (resume && main) {
    spdlog::info("no checkpoint in {}: starting a new run", run_dir.string());
  }
  if (step >= o.steps) fail("the run in {} has already done {} of {} steps", run_dir.string(), step, o.steps);

  const int64_t micro_batch = o.batch_size / dist.world_size() / o.accum_steps;
  data::LoaderOptions loader_options;
  loader_options.batch_size = micro_batch;
  loader_options.num_workers = o.workers;
  loader_options.prefetch_batches = o.prefetch_batches;
  loader_options.seed = o.seed;
  loader_options.transform.size = vit.image_size;
  loader_options.transform.train = true;
  loader_options.rank = dist.rank();
  loader_options.world_size = dist.world_size();
  loader_options.max_skip_fraction = o.max_skip_fraction;
  data::TrainLoader loader(images, texts, loader_options, loader_state);
  // (the loader logs images without a text embedding, with examples)

  nlohmann::json train_json;
  to_json(train_json, o);
  nlohmann::json config = model_config_json(model);
  config["facets"] = clip ? std::vector<std::string>{"caption"} : stores->facets();
  config["train"] = train_json;
  config["train_identity"] = resume_identity(o);
  TrainSummary summary;
  summary.first_step = step;
  summary.images_without_embedding = loader.skips().without_embedding;
  if (latest) summary.last_checkpoint = *latest;
  auto save = [&](int64_t at_step) {
    const data::LoaderState s = loader.state();
    const std::vector<int64_t> states = dist.all_gather_int64({s.epoch, s.position, s.skipped_images});
    if (main) {
      const nlohmann::json state = {
          {"step", at_step}, {"world_size", dist.world_size()}, {"loader", loader_states_json(states)}};
      summary.last_checkpoint =
          save_checkpoint(run_dir, at_step, *model.root, optimizer, {config, state}, o.keep_checkpoints);
    }
    dist.barrier();
  };

  std::unique_ptr<JsonlWriter> log;
  if (main) log = std::make_unique<JsonlWriter>(run_dir / "train-log.jsonl");
  std::unique_ptr<ProgressBar> progress;
  if (main) {
    progress = std::make_unique<ProgressBar>("train", o.steps, "step");
    progress->set_extra_unit("img");
    progress->set_initial(step);
  }
  const bool bf16 = o.precision == Precision::kBf16;
  double images_done = 0, busy_seconds = 0, wait_seconds = 0;
  int64_t truncated_captions = 0;  // CLIP: this rank's captions cut to the text tower's context
  model.root->train();
  while (step < o.steps) {
    if (hooks.before_step) hooks.before_step(step, encoder);
    const auto t0 = Clock::now();
    const double lr = cosine_lr(step, o.steps, o.warmup_steps, o.lr, o.min_lr);
    for (auto& group : optimizer.param_groups())
      static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
    optimizer.zero_grad();

    double step_loss = 0, step_wait = 0;
    int64_t epoch = 0;
    for (int64_t micro = 0; micro < o.accum_steps; ++micro) {
      data::Batch batch = loader.next();
      step_wait += batch.wait_seconds;
      epoch = batch.epoch;
      torch::Tensor image, text;
      {
        AutocastScope autocast(bf16, device);
        image = encoder->encode(batch.images.to(device)).pooled;
        if (clip) {
          const text::ClipTokens tokens = text::clip_tokenize(*tokenizer, captions->captions(batch.text_rows),
                                                              clip_config.context_length);
          truncated_captions += tokens.truncated;
          text =
              model.text(tokens.ids.to(device), tokens.eot_index.to(device)).unsqueeze(1);  // [b, K = 1, D]
        }
      }
      if (!clip) text = batch.texts.to(device);
      const auto unit = torch::nn::functional::NormalizeFuncOptions().dim(-1);
      image = torch::nn::functional::normalize(image.to(torch::kFloat32), unit);
      text = torch::nn::functional::normalize(text.to(torch::kFloat32), unit);
      const torch::Tensor all_images = dist.gather_rows(image);
      const torch::Tensor all_texts = dist.gather_rows(text);
      const torch::Tensor loss =
          o.loss == LossKind::kSigmoid
              ? multi_positive_sigmoid(all_images, all_texts, encoder->logit_scale_exp(), encoder->logit_bias)
              : multi_positive_infonce(all_images, all_texts, encoder->logit_scale_exp());
      const double value = loss.item<double>();
      if (!std::isfinite(value)) {
        // "nan", not "-nan": the sign of a NaN is meaningless and varies by platform.
        fail(
            "the loss is {} at step {} (micro-batch {}, first key '{}'): stopping; the last good checkpoint "
            "is {}",
            std::isnan(value) ? "nan" : (value > 0 ? "inf" : "-inf"), step + 1, micro, batch.keys.front(),
            summary.last_checkpoint.empty() ? "none" : summary.last_checkpoint.string());
      }
      (loss / static_cast<double>(o.accum_steps)).backward();
      step_loss += value / o.accum_steps;
    }

    // Every rank computed the whole loss, so the parameters that enter it
    // directly (temperature, bias) have the full gradient on each rank: their
    // share of the sum is 1/W. The others get gradient only through this
    // rank's images, and the sum over ranks is the exact gradient.
    if (dist.world_size() > 1) {
      torch::NoGradGuard no_grad;
      for (const torch::Tensor& p : {encoder->logit_scale, encoder->logit_bias}) {
        if (p.grad().defined()) p.grad().div_(dist.world_size());
      }
    }
    std::vector<torch::Tensor> grads;
    for (const auto& p : model.root->parameters()) grads.push_back(p.grad());
    dist.all_reduce_sum_(grads);
    const double grad_norm =
        torch::nn::utils::clip_grad_norm_(model.root->parameters(), o.grad_clip > 0 ? o.grad_clip : 1e30);
    if (!std::isfinite(grad_norm)) {
      fail("the gradient norm is {} at step {}: stopping; the last good checkpoint is {}",
           std::isnan(grad_norm) ? "nan" : "inf", step + 1,
           summary.last_checkpoint.empty() ? "none" : summary.last_checkpoint.string());
    }
    optimizer.step();
    encoder->clamp_logit_scale_();
    ++step;

    const double seconds = seconds_since(t0);
    const double global_images = static_cast<double>(o.batch_size);
    images_done += global_images;
    busy_seconds += seconds;
    wait_seconds += step_wait;
    StepLog entry;
    entry.step = step;
    entry.epoch = epoch;
    entry.loss = step_loss;
    entry.lr = lr;
    entry.logit_scale = encoder->logit_scale_exp().item<double>();
    entry.grad_norm = grad_norm;
    entry.images_per_second = global_images / seconds;
    entry.data_wait_fraction = dist.all_reduce_max(step_wait) / seconds;
    entry.skipped_images =
        static_cast<int64_t>(dist.all_reduce_sum(static_cast<double>(loader.state().skipped_images)));
    summary.final_loss = step_loss;
    if (main) {
      log->write(entry.to_json());
      progress->advance(1, static_cast<int64_t>(global_images));
    }
    if (hooks.on_step) hooks.on_step(entry);
    if (hooks.stop_after_step >= 0 && step >= hooks.stop_after_step) {
      summary.steps = step;
      return summary;  // as if killed: no checkpoint beyond the last periodic one
    }
    if (step % o.save_every == 0 || step == o.steps) save(step);
  }
  if (progress) progress->finish();

  summary.steps = step;
  summary.images_per_second = images_done / std::max(1e-9, busy_seconds);
  summary.data_wait_fraction = wait_seconds / std::max(1e-9, busy_seconds);
  summary.skipped_images =
      static_cast<int64_t>(dist.all_reduce_sum(static_cast<double>(loader.state().skipped_images)));
  // Counted as the batches are tokenized (no pass over the whole caption set
  // at start-up): CLIP cuts long captions, and comparisons should say so.
  summary.truncated_captions =
      static_cast<int64_t>(dist.all_reduce_sum(static_cast<double>(truncated_captions)));
  if (main && clip) {
    const int64_t trained_on = (step - summary.first_step) * o.batch_size;
    spdlog::info("{} of the {} captions trained on ({:.1f}%) were cut to the text tower's {} tokens",
                 summary.truncated_captions, trained_on,
                 100.0 * static_cast<double>(summary.truncated_captions) / static_cast<double>(trained_on),
                 clip_config.context_length);
  }
  if (main) {
    write_json_file_atomic(run_dir / "summary.json", summary.to_json());
    spdlog::info("trained {} steps: final loss {:.4f}, {:.1f} images/s, data wait {:.1f}%, {} images skipped",
                 step, summary.final_loss, summary.images_per_second, 100 * summary.data_wait_fraction,
                 summary.skipped_images);
  }
  return summary;
}

}  // namespace flame::train
