#include "train/train_options.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <filesystem>
#include <limits>

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

void to_json(nlohmann::json& out, const TrainOptions& o) {
  out = {{"model", o.model},
         {"images", o.images},
         {"image_dir", o.image_dir},
         {"split_file", o.split_file},
         {"text_tower", to_string(o.text_tower)},
         {"text_stores", o.text_stores},
         {"clip_text", o.clip_text},
         {"captions", o.captions},
         {"caption_field", o.caption_field},
         {"caption_join", o.caption_join},
         {"out", o.out},
         {"loss", to_string(o.loss)},
         {"batch_size", o.batch_size},
         {"accum_steps", o.accum_steps},
         {"steps", o.steps},
         {"epochs", o.epochs},
         {"positives_per_step", o.positives_per_step},
         {"lr", o.lr},
         {"min_lr", o.min_lr},
         {"warmup_steps", o.warmup_steps},
         {"weight_decay", o.weight_decay},
         {"beta1", o.beta1},
         {"beta2", o.beta2},
         {"eps", o.eps},
         {"grad_clip", o.grad_clip},
         {"precision", to_string(o.precision)},
         {"grad_checkpointing", o.grad_checkpointing},
         {"save_every", o.save_every},
         {"keep_checkpoints", o.keep_checkpoints},
         {"seed", o.seed},
         {"workers", o.workers},
         {"prefetch_batches", o.prefetch_batches},
         {"max_skip_fraction", o.max_skip_fraction},
         {"device", o.device}};
}

void from_json(const nlohmann::json& in, TrainOptions& o) {
  if (!in.is_object()) fail("train options: expected a JSON object");
  nlohmann::json known;
  to_json(known, TrainOptions{});
  for (const auto& [key, value] : in.items()) {
    if (!known.contains(key)) fail("train options: unknown field '{}'", key);
  }
  read_field(in, "model", o.model);
  read_field(in, "images", o.images);
  read_field(in, "image_dir", o.image_dir);
  read_field(in, "split_file", o.split_file);
  read_choice(in, "text_tower", o.text_tower);
  read_field(in, "text_stores", o.text_stores);
  read_field(in, "clip_text", o.clip_text);
  read_field(in, "captions", o.captions);
  read_field(in, "caption_field", o.caption_field);
  read_field(in, "caption_join", o.caption_join);
  read_field(in, "out", o.out);
  read_choice(in, "loss", o.loss);
  read_field(in, "batch_size", o.batch_size);
  read_field(in, "accum_steps", o.accum_steps);
  read_field(in, "steps", o.steps);
  read_field(in, "epochs", o.epochs);
  read_field(in, "positives_per_step", o.positives_per_step);
  read_field(in, "lr", o.lr);
  read_field(in, "min_lr", o.min_lr);
  read_field(in, "warmup_steps", o.warmup_steps);
  read_field(in, "weight_decay", o.weight_decay);
  read_field(in, "beta1", o.beta1);
  read_field(in, "beta2", o.beta2);
  read_field(in, "eps", o.eps);
  read_field(in, "grad_clip", o.grad_clip);
  read_choice(in, "precision", o.precision);
  read_field(in, "grad_checkpointing", o.grad_checkpointing);
  read_field(in, "save_every", o.save_every);
  read_field(in, "keep_checkpoints", o.keep_checkpoints);
  read_field(in, "seed", o.seed);
  read_field(in, "workers", o.workers);
  read_field(in, "prefetch_batches", o.prefetch_batches);
  read_field(in, "max_skip_fraction", o.max_skip_fraction);
  read_field(in, "device", o.device);
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
  nlohmann::json j;
  to_json(j, o);
  for (const char* free : {"steps", "epochs", "save_every", "keep_checkpoints", "workers", "prefetch_batches",
                           "out", "device", "grad_checkpointing"}) {
    j.erase(free);
  }
  // Fields added later are left out at their defaults, so runs checkpointed
  // before they existed still resume.
  if (o.positives_per_step == 0) j.erase("positives_per_step");
  // Only the text side's own fields; a FLAME run's identity is the one runs
  // had before the CLIP baseline existed, so their checkpoints still resume.
  if (o.text_tower == TextTower::kLlm) {
    for (const char* clip_only : {"text_tower", "clip_text", "captions", "caption_field", "caption_join"})
      j.erase(clip_only);
  } else {
    j.erase("text_stores");
  }
  return j;
}

}  // namespace flame::train
