#include "train/train_options.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <filesystem>
#include <limits>
#include <type_traits>

#include "util/config_files.h"
#include "util/error.h"
#include "util/file.h"
#include "util/json_fields.h"

namespace flame::train {

namespace {

template <typename E>
struct Named {
  const char* name;
  E value;
};
constexpr Named<TextTower> kTextTowers[] = {{"llm", TextTower::kLlm}, {"clip", TextTower::kClip}};
constexpr Named<Precision> kPrecisions[] = {{"fp32", Precision::kFp32}, {"bf16", Precision::kBf16}};
constexpr Named<LossKind> kLosses[] = {{"infonce", LossKind::kInfonce}, {"sigmoid", LossKind::kSigmoid}};

template <typename E, size_t N>
const char* name_of(const Named<E> (&names)[N], E value) {
  for (const auto& n : names) {
    if (n.value == value) return n.name;
  }
  fail("train options: no name for value {}", static_cast<int>(value));
}

template <typename E, size_t N>
E value_of(const Named<E> (&names)[N], const std::string& name, const std::string& field) {
  std::string allowed;
  for (size_t i = 0; i < N; ++i) {
    if (names[i].name == name) return names[i].value;
    allowed += (i == 0 ? "" : i + 1 == N ? " or " : ", ") + std::string(names[i].name);
  }
  fail("{} must be {}, not '{}'", field, allowed, name);
}

constexpr const char* kSource = "train options";

// Each field strictly by its type: 1.5 for a count or -1 for the seed is
// refused, not truncated or wrapped, and NaN or inf for a hyper-parameter
// (which would only show later as a NaN loss) likewise.
template <typename T>
void read_field(const nlohmann::json& in, const char* name, T& value) {
  if (!in.contains(name)) return;
  try {
    value = in.at(name).get<T>();
  } catch (const nlohmann::json::exception& e) {
    fail("train options: field '{}' has the wrong type ({})", name, in.at(name).dump());
  }
}
template <>
void read_field<int64_t>(const nlohmann::json& in, const char* name, int64_t& value) {
  value = json_int(in, name, kSource, /*required=*/false, value);
}
template <>
void read_field<uint64_t>(const nlohmann::json& in, const char* name, uint64_t& value) {
  value = json_uint(in, name, kSource, value);
}
template <>
void read_field<int>(const nlohmann::json& in, const char* name, int& value) {
  const int64_t wide = json_int(in, name, kSource, /*required=*/false, value);
  if (wide < std::numeric_limits<int>::min() || wide > std::numeric_limits<int>::max())
    fail("train options: field '{}' is out of range: {}", name, wide);
  value = static_cast<int>(wide);
}
template <>
void read_field<double>(const nlohmann::json& in, const char* name, double& value) {
  value = json_finite_number(in, name, kSource, value);
}

template <typename E>
void read_choice(const nlohmann::json& in, const char* name, E& value) {
  std::string text = to_string(value);
  read_field(in, name, text);
  value = parse_choice<E>(text, fmt::format("train options: field '{}'", name));
}

}  // namespace

const char* to_string(TextTower value) {
  return name_of(kTextTowers, value);
}
const char* to_string(Precision value) {
  return name_of(kPrecisions, value);
}
const char* to_string(LossKind value) {
  return name_of(kLosses, value);
}

template <>
TextTower parse_choice<TextTower>(const std::string& name, const std::string& field) {
  return value_of(kTextTowers, name, field);
}
template <>
Precision parse_choice<Precision>(const std::string& name, const std::string& field) {
  return value_of(kPrecisions, name, field);
}
template <>
LossKind parse_choice<LossKind>(const std::string& name, const std::string& field) {
  return value_of(kLosses, name, field);
}

const std::vector<TrainField>& train_fields() {
  using R = TrainField::Resume;
  using O = TrainOptions;
  static const std::vector<TrainField> fields = {
      {"model", "--model", "ViT preset (configs/models) or JSON file", R::kYes, &O::model},
      {"images", "--images", "TSV with an 'image' column, or tar shards (brace patterns allowed)", R::kYes,
       &O::images},
      {"image_dir", "--image-dir", "TSV: folder of the images (default: images/ beside the TSV)", R::kYes,
       &O::image_dir},
      {"split_file", "--split", "keep only the image names listed in this file", R::kYes, &O::split_file},
      {"text_stores", "--texts", "embedding store(s), joined by key: their facets are the positives",
       R::kLlmOnly, &O::text_stores},
      {"text_tower", "--text-tower",
       "llm (FLAME: frozen LLM embeddings, --texts) or clip (baseline: a text tower trained on --captions)",
       R::kClipOnly, &O::text_tower},
      {"clip_text", "--clip-text", "clip: text tower preset (configs/models/clip-text) or JSON file",
       R::kClipOnly, &O::clip_text},
      {"captions", "--captions", "clip: TSV / JSONL / tar captions keyed as the images", R::kClipOnly,
       &O::captions},
      {"caption_field", "--caption-field", "clip: TSV column or JSONL field of the caption", R::kClipOnly,
       &O::caption_field},
      {"caption_join", "--caption-join", "clip: join TSV rows sharing a key (as embed --tsv-join)",
       R::kClipOnly, &O::caption_join},
      {"out", "--out", "run directory (checkpoints, train-log.jsonl, summary.json)", R::kNo, &O::out},
      {"loss", "--loss", "infonce or sigmoid", R::kYes, &O::loss},
      {"batch_size", "--batch-size", "global batch (all ranks and accumulation steps)", R::kYes,
       &O::batch_size},
      {"accum_steps", "--accum-steps", "micro-batches per optimizer step", R::kYes, &O::accum_steps},
      {"steps", "--steps", "optimizer steps", R::kNo, &O::steps},
      {"epochs", "--epochs", "passes over the paired images, setting the steps (0: use --steps)", R::kNo,
       &O::epochs},
      {"positives_per_step", "--positives-per-step",
       "positives per image per step: a seeded random subset of its K embeddings (0: all K)",
       R::kUnlessDefault, &O::positives_per_step},
      {"lr", "--lr", "peak learning rate", R::kYes, &O::lr},
      {"min_lr", "--min-lr", "learning rate at the end of the cosine", R::kYes, &O::min_lr},
      {"warmup_steps", "--warmup-steps", "linear warm-up steps", R::kYes, &O::warmup_steps},
      {"weight_decay", "--weight-decay", "AdamW weight decay (weight matrices only)", R::kYes,
       &O::weight_decay},
      {"beta1", "--beta1", "AdamW beta1", R::kYes, &O::beta1},
      {"beta2", "--beta2", "AdamW beta2", R::kYes, &O::beta2},
      {"eps", "--eps", "AdamW epsilon", R::kYes, &O::eps},
      {"grad_clip", "--grad-clip", "max gradient norm (0 = off)", R::kYes, &O::grad_clip},
      {"precision", "--precision", "fp32 or bf16 (autocast)", R::kYes, &O::precision},
      {"grad_checkpointing", "--grad-checkpointing",
       "recompute each ViT block in backward: less memory, ~1/3 more compute", R::kNo,
       &O::grad_checkpointing},
      {"save_every", "--save-every", "steps between checkpoints", R::kNo, &O::save_every},
      {"keep_checkpoints", "--keep-checkpoints", "newest checkpoints kept", R::kNo, &O::keep_checkpoints},
      {"seed", "--seed", "seed of the initialisation, data order and augmentation", R::kYes, &O::seed},
      {"workers", "--workers", "image decoding threads", R::kNo, &O::workers},
      {"prefetch_batches", "--prefetch", "batches decoded ahead", R::kNo, &O::prefetch_batches},
      {"max_skip_fraction", "--max-skip-fraction", "unreadable images tolerated", R::kYes,
       &O::max_skip_fraction},
      {"device", "--device", "cpu or cuda", R::kNo, &O::device},
  };
  return fields;
}

namespace {

// The JSON value of a member: choices by name.
template <typename T>
nlohmann::json json_value(const T& value) {
  if constexpr (std::is_enum_v<T>) {
    return to_string(value);
  } else {
    return value;
  }
}

}  // namespace

void copy_field(const TrainField& field, const TrainOptions& from, TrainOptions& to) {
  std::visit(
      [&](auto member) {
        using T = std::decay_t<decltype(from.*member)>;
        if constexpr (std::is_same_v<T, double>) {
          if (!std::isfinite(from.*member))
            fail("train: {} must be a finite number, not {}", field.flag, from.*member);
        }
        to.*member = from.*member;
      },
      field.member);
}

void to_json(nlohmann::json& out, const TrainOptions& o) {
  out = nlohmann::json::object();
  for (const TrainField& f : train_fields())
    std::visit([&](auto member) { out[f.name] = json_value(o.*member); }, f.member);
}

void from_json(const nlohmann::json& in, TrainOptions& o) {
  if (!in.is_object()) fail("train options: expected a JSON object");
  const auto& fields = train_fields();
  for (const auto& [key, value] : in.items()) {
    if (std::none_of(fields.begin(), fields.end(), [&](const TrainField& f) { return key == f.name; }))
      fail("train options: unknown field '{}'", key);
  }
  for (const TrainField& f : fields) {
    std::visit(
        [&](auto member) {
          if constexpr (std::is_enum_v<std::decay_t<decltype(o.*member)>>) {
            read_choice(in, f.name, o.*member);
          } else {
            read_field(in, f.name, o.*member);
          }
        },
        f.member);
  }
}

nlohmann::json read_recipe(const std::string& name_or_path) {
  const std::filesystem::path path = find_preset(name_or_path, {config_dir("recipes"), "recipe", "recipe"});
  const nlohmann::json recipe = read_json_file(path);
  if (!recipe.is_object() || !recipe.contains("train") || !recipe.at("train").is_object())
    fail("recipe {}: expected an object with a \"train\" object of train options", path.string());
  TrainOptions check;
  try {
    from_json(recipe.at("train"), check);
  } catch (const Error& e) {
    fail("recipe {}: {}", path.string(), e.what());
  }
  return recipe.at("train");
}

namespace {

// Loader threads and batches decoded ahead beyond this are a typo, not a
// machine: each is a thread or a batch of decoded images in memory.
constexpr int kMaxWorkers = 1024;
constexpr int kMaxPrefetch = 1024;

// NaN or inf in a hyper-parameter would only show as a NaN loss, blamed on
// the data: refused up front, naming the flag.
void check_finite(const TrainOptions& o) {
  const std::pair<const char*, double> values[] = {{"--lr", o.lr},
                                                   {"--min-lr", o.min_lr},
                                                   {"--weight-decay", o.weight_decay},
                                                   {"--beta1", o.beta1},
                                                   {"--beta2", o.beta2},
                                                   {"--eps", o.eps},
                                                   {"--grad-clip", o.grad_clip},
                                                   {"--max-skip-fraction", o.max_skip_fraction}};
  for (const auto& [flag, value] : values) {
    if (!std::isfinite(value)) fail("train: {} must be a finite number, not {}", flag, value);
  }
}

// The counts: positive where a zero means nothing, and no product of them
// (ranks x accumulation steps) overflowing.
void check_counts(const TrainOptions& o, int world_size) {
  if (o.steps <= 0) fail("train: --steps must be positive, not {}", o.steps);
  if (o.epochs < 0) fail("train: --epochs must not be negative (0: use --steps), not {}", o.epochs);
  if (o.positives_per_step < 0)
    fail("train: --positives-per-step must not be negative (0: all), not {}", o.positives_per_step);
  if (o.accum_steps <= 0) fail("train: --accum-steps must be positive, not {}", o.accum_steps);
  if (o.batch_size <= 0 || o.accum_steps > o.batch_size / std::max(world_size, 1) ||
      o.batch_size % (o.accum_steps * world_size) != 0) {
    fail("train: --batch-size {} must be a positive multiple of ranks x accumulation steps ({} x {})",
         o.batch_size, world_size, o.accum_steps);
  }
  if (o.batch_size / (o.accum_steps * world_size) < 2)
    fail("train: a contrastive micro-batch needs at least 2 images per rank");
  if (o.warmup_steps < 0) fail("train: --warmup-steps must not be negative, not {}", o.warmup_steps);
  if (o.save_every <= 0) fail("train: --save-every must be positive, not {}", o.save_every);
  if (o.keep_checkpoints <= 0) fail("train: --keep-checkpoints must be positive, not {}", o.keep_checkpoints);
  if (o.workers < 0 || o.workers > kMaxWorkers)
    fail("train: --workers must be within [0, {}], not {}", kMaxWorkers, o.workers);
  if (o.prefetch_batches < 1 || o.prefetch_batches > kMaxPrefetch)
    fail("train: --prefetch must be within [1, {}], not {}", kMaxPrefetch, o.prefetch_batches);
}

}  // namespace

void validate(const TrainOptions& o, int world_size) {
  if (o.images.empty()) fail("train: no images given (--images)");
  if (o.text_tower == TextTower::kLlm) {
    if (o.text_stores.empty()) fail("train: no embedding store given (--texts)");
    if (!o.captions.empty())
      fail("train: --captions is for --text-tower clip; FLAME reads embedding stores (--texts)");
  } else {
    if (o.captions.empty()) fail("train: --text-tower clip needs captions (--captions)");
    if (!o.text_stores.empty()) fail("train: --texts (embedding stores) is for --text-tower llm, not clip");
  }
  if (o.out.empty()) fail("train: no run directory given (--out)");
  check_finite(o);
  check_counts(o, world_size);
  if (!(o.lr > 0)) fail("train: --lr must be positive, not {}", o.lr);
  if (o.min_lr < 0 || o.min_lr > o.lr)
    fail("train: --min-lr must be within [0, lr = {}], not {}", o.lr, o.min_lr);
  if (o.weight_decay < 0) fail("train: --weight-decay must not be negative, not {}", o.weight_decay);
  if (!(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1))
    fail("train: betas must be within [0, 1), not --beta1 {} --beta2 {}", o.beta1, o.beta2);
  if (!(o.eps > 0)) fail("train: --eps must be positive, not {}", o.eps);
  if (o.grad_clip < 0) fail("train: --grad-clip must not be negative (0 = off), not {}", o.grad_clip);
  if (!(o.max_skip_fraction >= 0 && o.max_skip_fraction < 1))
    fail("train: --max-skip-fraction must be within [0, 1), not {}", o.max_skip_fraction);
}

nlohmann::json resume_identity(const TrainOptions& o) {
  using R = TrainField::Resume;
  nlohmann::json all, identity = nlohmann::json::object();
  to_json(all, o);
  const nlohmann::json defaults = [] {
    nlohmann::json j;
    to_json(j, TrainOptions{});
    return j;
  }();
  // A FLAME run's identity is the one runs had before the CLIP baseline
  // existed, and fields added later enter only once changed, so older
  // checkpoints still resume.
  const bool clip = o.text_tower == TextTower::kClip;
  for (const TrainField& f : train_fields()) {
    const bool in = f.resume == R::kYes ||
                    (f.resume == R::kUnlessDefault && all[f.name] != defaults[f.name]) ||
                    (f.resume == R::kLlmOnly && !clip) || (f.resume == R::kClipOnly && clip);
    if (in) identity[f.name] = all[f.name];
  }
  return identity;
}

}  // namespace flame::train
