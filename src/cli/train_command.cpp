// flame train: the image encoder against stored facet embeddings (FLAME), or
// the CLIP baseline.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "cli/commands.h"
#include "train/trainer.h"
#include "util/error.h"
#include "util/file.h"

namespace flame::cli {

namespace {

// An option naming one value of a choice (train/train_options.h), parsed into
// `value` here, once; a bad name fails naming the option and the names allowed.
template <typename E>
CLI::Option* add_choice(CLI::App& cmd, const std::string& flag, E& value, const std::string& help) {
  return cmd
      .add_option_function<std::string>(
          flag,
          [&value, flag](const std::string& name) { value = train::parse_choice<E>(name, "train: " + flag); },
          help)
      ->default_str(train::to_string(value));
}

// A flag given NaN or inf is refused here, naming the flag (the merged
// options would only name the field).
void check_finite_flags(const CLI::App& cmd, const nlohmann::json& given);

// The TrainOptions field (train_options.h, to_json's names) a flag sets.
std::string field_of_flag(const std::string& flag) {
  std::string name = flag.substr(flag.find_first_not_of('-'));
  if (name == "texts") return "text_stores";
  if (name == "split") return "split_file";
  if (name == "prefetch") return "prefetch_batches";
  std::replace(name.begin(), name.end(), '-', '_');
  return name;
}

// The options of a run: the defaults, then the recipe's, then the config
// file's, then every flag given on the command line (even one set to its
// default value). A --steps given here replaces the recipe's epochs.
train::TrainOptions merged_options(const CLI::App& cmd, const train::TrainOptions& flags,
                                   const std::string& recipe, const std::string& config) {
  nlohmann::json merged;
  train::to_json(merged, train::TrainOptions{});
  if (!recipe.empty()) merged.update(train::read_recipe(recipe));
  if (!config.empty()) {
    const nlohmann::json file = read_json_file(config);
    train::TrainOptions check;
    try {
      train::from_json(file, check);  // names the bad field
    } catch (const Error& e) {
      fail("{}: {}", config, e.what());
    }
    merged.update(file);
  }
  nlohmann::json given;
  train::to_json(given, flags);
  check_finite_flags(cmd, given);
  for (const CLI::Option* option : cmd.get_options()) {
    const std::string field = field_of_flag(option->get_name());
    if (option->count() > 0 && given.contains(field)) merged[field] = given[field];
  }
  if (cmd.get_option("--steps")->count() > 0 && cmd.get_option("--epochs")->count() == 0)
    merged["epochs"] = 0;
  train::TrainOptions options;
  train::from_json(merged, options);
  return options;
}

void check_finite_flags(const CLI::App& cmd, const nlohmann::json& given) {
  for (const CLI::Option* option : cmd.get_options()) {
    const std::string field = field_of_flag(option->get_name());
    if (option->count() == 0 || !given.contains(field) || !given[field].is_number_float()) continue;
    const double value = given[field].get<double>();
    if (!std::isfinite(value)) fail("train: {} must be a finite number, not {}", option->get_name(), value);
  }
}

}  // namespace

void add_train_command(CLI::App& app) {
  auto o = std::make_shared<train::TrainOptions>();
  auto config = std::make_shared<std::string>();
  auto recipe = std::make_shared<std::string>();
  auto resume = std::make_shared<bool>(false);
  auto threads = std::make_shared<int>(0);
  auto print_config = std::make_shared<bool>(false);
  auto* cmd = app.add_subcommand(
      "train", "Train the image encoder on images + embedding stores (FLAME), or the CLIP baseline");
  // A recipe, then --config, then the flags given: each overrides the one before.
  cmd->add_option("--recipe", *recipe,
                  "training recipe: a preset in configs/recipes (flame-cc3m: the method's released training) "
                  "or a JSON file; flags override it");
  cmd->add_option("--config", *config,
                  "JSON file of train options (fields as in the checkpoint's config.json 'train')")
      ->check(CLI::ExistingFile);
  cmd->add_option("--model", o->model, "ViT preset (configs/models) or JSON file")->capture_default_str();
  cmd->add_option("--images", o->images,
                  "TSV with an 'image' column, or tar shards (brace patterns allowed)");
  cmd->add_option("--image-dir", o->image_dir, "TSV: folder of the images (default: images/ beside the TSV)");
  cmd->add_option("--split", o->split_file, "keep only the image names listed in this file");
  cmd->add_option("--texts", o->text_stores,
                  "embedding store(s), joined by key: their facets are the positives");
  add_choice(*cmd, "--text-tower", o->text_tower,
             "llm (FLAME: frozen LLM embeddings, --texts) or clip (baseline: "
             "a text tower trained on --captions)");
  cmd->add_option("--clip-text", o->clip_text,
                  "clip: text tower preset (configs/models/clip-text) or JSON file")
      ->capture_default_str();
  cmd->add_option("--captions", o->captions, "clip: TSV / JSONL / tar captions keyed as the images");
  cmd->add_option("--caption-field", o->caption_field, "clip: TSV column or JSONL field of the caption")
      ->capture_default_str();
  cmd->add_flag("--caption-join", o->caption_join, "clip: join TSV rows sharing a key (as embed --tsv-join)");
  cmd->add_option("--out", o->out, "run directory (checkpoints, train-log.jsonl, summary.json)");
  auto overwrite = std::make_shared<bool>(false);
  auto* resume_flag =
      cmd->add_flag("--resume", *resume, "continue from the latest checkpoint in --out, if any");
  cmd->add_flag("--overwrite", *overwrite,
                "delete the run already in --out (checkpoints, logs) and start again")
      ->excludes(resume_flag);
  cmd->add_flag("--print-config", *print_config,
                "print the options the run would use (recipe, --config and flags merged) as JSON, and exit");
  add_choice(*cmd, "--loss", o->loss, "infonce or sigmoid");
  cmd->add_option("--batch-size", o->batch_size, "global batch (all ranks and accumulation steps)")
      ->capture_default_str();
  cmd->add_option("--accum-steps", o->accum_steps, "micro-batches per optimizer step")->capture_default_str();
  cmd->add_option("--steps", o->steps, "optimizer steps")->capture_default_str();
  cmd->add_option("--epochs", o->epochs, "passes over the paired images, setting the steps (0: use --steps)")
      ->capture_default_str();
  cmd->add_option("--positives-per-step", o->positives_per_step,
                  "positives per image per step: a seeded random subset of its K embeddings (0: all K)")
      ->capture_default_str();
  cmd->add_option("--lr", o->lr, "peak learning rate")->capture_default_str();
  cmd->add_option("--min-lr", o->min_lr, "learning rate at the end of the cosine")->capture_default_str();
  cmd->add_option("--warmup-steps", o->warmup_steps, "linear warm-up steps")->capture_default_str();
  cmd->add_option("--weight-decay", o->weight_decay, "AdamW weight decay (weight matrices only)")
      ->capture_default_str();
  cmd->add_option("--beta1", o->beta1)->capture_default_str();
  cmd->add_option("--beta2", o->beta2)->capture_default_str();
  cmd->add_option("--eps", o->eps)->capture_default_str();
  cmd->add_option("--grad-clip", o->grad_clip, "max gradient norm (0 = off)")->capture_default_str();
  add_choice(*cmd, "--precision", o->precision, "fp32 or bf16 (autocast)");
  cmd->add_flag("--grad-checkpointing", o->grad_checkpointing,
                "recompute each ViT block in backward: less memory, ~1/3 more compute");
  cmd->add_option("--save-every", o->save_every, "steps between checkpoints")->capture_default_str();
  cmd->add_option("--keep-checkpoints", o->keep_checkpoints, "newest checkpoints kept")
      ->capture_default_str();
  add_seed_option(*cmd, o->seed, "seed of the initialisation, data order and augmentation");
  cmd->add_option("--workers", o->workers, "image decoding threads")->capture_default_str();
  cmd->add_option("--prefetch", o->prefetch_batches, "batches decoded ahead")->capture_default_str();
  cmd->add_option("--max-skip-fraction", o->max_skip_fraction, "unreadable images tolerated")
      ->capture_default_str();
  cmd->add_option("--device", o->device, "cpu or cuda")->capture_default_str();
  add_threads_option(*cmd, threads.get());
  cmd->callback([cmd, o, recipe, config, resume, overwrite, threads, print_config] {
    const train::TrainOptions options = merged_options(*cmd, *o, *recipe, *config);
    if (*print_config) {
      nlohmann::json json;
      train::to_json(json, options);
      fmt::print("{}\n", json.dump(2));
      return;
    }
    apply_threads(*threads);
    const train::TrainSummary summary = train::run_training(
        options, *resume ? train::RunStart::kResume
                         : (*overwrite ? train::RunStart::kOverwrite : train::RunStart::kNew));
    fmt::print("{}\n", summary.to_json().dump());
  });
}

}  // namespace flame::cli
