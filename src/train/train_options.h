// Everything a training run is configured by. Stored in every checkpoint
// (config.json, "train"), so a resumed run can check it continues the same run.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

namespace flame::train {

// The choices among named values. Parsed once from their names (the CLI, a
// JSON config, a checkpoint's config.json), which are also what to_json stores.
enum class TextTower { kLlm, kClip };        // "llm" (FLAME) or "clip" (the CLIP baseline)
enum class Precision { kFp32, kBf16 };       // "fp32" or "bf16" (autocast)
enum class LossKind { kInfonce, kSigmoid };  // "infonce" or "sigmoid"

const char* to_string(TextTower value);
const char* to_string(Precision value);
const char* to_string(LossKind value);
// The value named `name`; throws flame::Error "<field> must be llm or clip,
// not '<name>'" (the allowed names of E). `field` says where the name came
// from, e.g. "train: --text-tower" or "train options: field 'text_tower'".
template <typename E>
E parse_choice(const std::string& name, const std::string& field);
template <>
TextTower parse_choice<TextTower>(const std::string& name, const std::string& field);
template <>
Precision parse_choice<Precision>(const std::string& name, const std::string& field);
template <>
LossKind parse_choice<LossKind>(const std::string& name, const std::string& field);

struct TrainOptions {
  // Model: a preset in configs/models/ or a JSON file (vision/vit_config.h).
  std::string model = "vit-ti-8-64";
  // Images: a TSV with an `image` column (+ image_dir), or tar shards.
  std::string images;
  std::string image_dir;   // TSV only; empty: "images" beside the TSV
  std::string split_file;  // optional list of image names to keep
  // The text side. "llm" (FLAME): embedding stores joined by key, whose facets
  // are the positives of an image. "clip" (the CLIP baseline): a trainable
  // text tower (clip_text: preset in configs/models/clip-text/ or JSON file)
  // on one caption per image, read from `captions` (TSV / JSONL / tar, keyed
  // as the images) and truncated to the tower's context; caption_join joins
  // TSV rows sharing a key, as `flame embed --tsv-join`.
  TextTower text_tower = TextTower::kLlm;
  std::vector<std::string> text_stores;
  std::string clip_text = "clip-text-b";
  std::vector<std::string> captions;
  std::string caption_field = "caption";  // TSV column / JSONL field
  bool caption_join = false;
  std::string out;  // run directory: checkpoints/, train-log.jsonl, summary.json

  LossKind loss = LossKind::kInfonce;  // multi-positive InfoNCE or sigmoid
  int64_t batch_size = 32;             // global: all ranks and accumulation steps together
  int64_t accum_steps = 1;             // micro-batches per optimizer step (each its own contrastive batch)
  int64_t steps = 100;                 // optimizer steps in total
  int64_t epochs = 0;                  // > 0: steps = ceil(epochs x paired images / batch_size) instead
  int64_t positives_per_step = 0;      // > 0: a seeded random subset of each image's K positives per step
  double lr = 5e-4;
  double min_lr = 0.0;        // the cosine decays to this
  int64_t warmup_steps = 10;  // linear warm-up from 0
  double weight_decay = 0.2;  // on weight matrices only (vision::weight_decay_group)
  double beta1 = 0.9, beta2 = 0.98, eps = 1e-6;
  double grad_clip = 1.0;                  // max global L2 norm; 0 = off
  Precision precision = Precision::kFp32;  // bf16: autocast, matmuls and convs in bf16
  bool grad_checkpointing = false;  // recompute each block in backward (also on when the model says so)
  int64_t save_every = 100;         // steps between checkpoints (and at the end)
  int64_t keep_checkpoints = 2;     // newest checkpoints kept
  uint64_t seed = 0;                // initialisation, data order, augmentation, patch dropout
  int workers = 2;                  // loader threads
  int prefetch_batches = 2;
  double max_skip_fraction = 0.01;  // unreadable images tolerated before the run stops
  std::string device = "cpu";       // "cpu" or "cuda[:i]"
};

// One row per option, the one place an option is declared beside its member
// above: its JSON name (config.json's "train", --config files, recipes), its
// command-line flag and help, and whether it enters the resume identity.
// to_json / from_json, the `flame train` flags and resume_identity are all
// made from this table.
struct TrainField {
  using Member = std::variant<std::string TrainOptions::*, std::vector<std::string> TrainOptions::*,
                              bool TrainOptions::*, int TrainOptions::*, int64_t TrainOptions::*,
                              uint64_t TrainOptions::*, double TrainOptions::*, TextTower TrainOptions::*,
                              Precision TrainOptions::*, LossKind TrainOptions::*>;
  // kNo: free to change on --resume (counts, cadence, threads, paths);
  // kUnlessDefault: only once changed from its default (added after runs
  // existed); kLlmOnly / kClipOnly: only for that text tower.
  enum class Resume { kYes, kNo, kUnlessDefault, kLlmOnly, kClipOnly };
  const char* name;
  const char* flag;
  const char* help;
  Resume resume;
  Member member;
};
const std::vector<TrainField>& train_fields();

// to.*field = from.*field. A flag given NaN or inf is refused here, naming the
// flag (before any file is read).
void copy_field(const TrainField& field, const TrainOptions& from, TrainOptions& to);

void to_json(nlohmann::json& out, const TrainOptions& options);
// Throws flame::Error naming the field when one has the wrong type or an
// unknown choice; unknown fields are refused (a typo would otherwise be
// silently ignored).
void from_json(const nlohmann::json& in, TrainOptions& options);

// The "train" object of a recipe (a preset in configs/recipes or a JSON file:
// {"description", "sources", "train": {fields of TrainOptions}}), checked
// field by field; errors name the file.
nlohmann::json read_recipe(const std::string& name_or_path);

// Checks values and their combinations (batch divisible by ranks x accumulation
// steps, the text tower's inputs, ...); `world_size` ranks.
void validate(const TrainOptions& options, int world_size);

// The fields two runs must share for one to resume the other: all but the
// step count, the checkpoint cadence and the loader's thread counts.
nlohmann::json resume_identity(const TrainOptions& options);

}  // namespace flame::train
