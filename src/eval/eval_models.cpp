#include "eval/eval_models.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <future>
#include <unordered_set>

#include "data/image_decode.h"
#include "data/image_transform.h"
#include "eval/task_common.h"
#include "llm/load_llm.h"
#include "text/clip_tokenize.h"
#include "text/fda_encoder.h"
#include "train/checkpoint.h"
#include "util/error.h"
#include "util/file.h"
#include "util/progress.h"

namespace flame::eval {

namespace fs = std::filesystem;

std::vector<ImageInput> file_inputs(const std::vector<fs::path>& files) {
  std::vector<ImageInput> inputs;
  inputs.reserve(files.size());
  for (const auto& f : files) inputs.push_back({f.string(), [f] { return read_file(f); }});
  return inputs;
}

EvalModels::EvalModels(const EvalOptions& o, bool needs_text)
    : device_(llm::parse_device(o.device)),
      model_(train::load_trained_model(o.model, device_)),
      batch_size_(o.batch_size),
      model_path_(o.model),
      llm_path_(o.llm) {
  if (model_.is_clip()) {
    if (!o.llm.empty())
      spdlog::warn("{} is a CLIP baseline with its own text tower: --llm is not used", o.model);
    tokenizer_ = llm::Tokenizer::load(model_.text->config().tokenizer_path());
    return;
  }
  if (!needs_text) return;
  if (o.llm.empty())
    fail("{} is a FLAME model: evaluating it needs the frozen LLM it was trained against (--llm)", o.model);
  train::CheckedTextSide text_side = train::check_text_side(o.model, o.llm, o.allow_llm_mismatch);
  provenance_ = std::move(text_side.provenance);
  warnings_ = std::move(text_side.warnings);
  auto loaded = llm::load_llm(o.llm, o.dtype, o.device);
  llm_ = std::make_unique<llm::Transformer>(std::move(loaded.model));
  tokenizer_ = std::move(loaded.tokenizer);
  if (model_.image->text_dim() != llm_->config().hidden_size) {
    fail(
        "the model maps images into {} dimensions but the LLM in {} has hidden size {}: evaluate with the "
        "LLM it was trained against",
        model_.image->text_dim(), o.llm, llm_->config().hidden_size);
  }
}

EvalModels::~EvalModels() = default;

namespace {
// The feature caches' key of an image for a kind of features.
std::string cache_key(ImageFeatureKind kind, const std::string& id) {
  return kind == ImageFeatureKind::kVisual ? "visual:" + id : id;
}
}  // namespace

// Decodes and encodes `missing` in batches, on --threads decoder threads (not
// one per core: each holds an image's pixels), each taking every T-th image.
// A decoding failure is kept in failure_of_; the caller decides whether it is fatal.
void EvalModels::encode_missing(const std::vector<ImageInput>& missing, const std::string& label,
                                ImageFeatureKind kind) {
  const data::ImageTransformOptions t = image_transform();
  ProgressBar progress(label + " images", static_cast<int64_t>(missing.size()), "img");
  const size_t threads = static_cast<size_t>(std::max(1, torch::get_num_threads()));
  for (size_t begin = 0; begin < missing.size(); begin += batch_size_) {
    const size_t end = std::min(missing.size(), begin + static_cast<size_t>(batch_size_));
    std::vector<torch::Tensor> batch(end - begin);
    std::vector<std::string> failed(end - begin);
    std::vector<std::future<void>> decoders;
    for (size_t k = 0; k < std::min(threads, end - begin); ++k) {
      decoders.push_back(std::async(std::launch::async, [&, k] {
        for (size_t i = begin + k; i < end; i += threads) {
          try {
            batch[i - begin] =
                data::transform_image(data::decode_image(missing[i].read(), missing[i].id), t, 0);
          } catch (const Error& e) {
            failed[i - begin] = e.what();
          }
        }
      }));
    }
    for (auto& d : decoders) d.get();
    std::vector<torch::Tensor> decoded;
    std::vector<size_t> rows;
    for (size_t i = begin; i < end; ++i) {
      if (!failed[i - begin].empty()) {
        failure_of_[cache_key(kind, missing[i].id)] = failed[i - begin];
        continue;
      }
      decoded.push_back(batch[i - begin]);
      rows.push_back(i);
    }
    if (!decoded.empty()) {
      const torch::Tensor features = encode_pixels(torch::stack(decoded), kind, /*normalize=*/true);
      for (size_t r = 0; r < rows.size(); ++r)
        feature_of_[cache_key(kind, missing[rows[r]].id)] = features[static_cast<int64_t>(r)];
    }
    progress.advance(static_cast<int64_t>(end - begin));
  }
  progress.finish();
}

data::ImageTransformOptions EvalModels::image_transform() const {
  data::ImageTransformOptions t;
  t.size = model_.image->config().image_size;
  t.train = false;
  return t;
}

torch::Tensor EvalModels::encode_pixels(const torch::Tensor& pixels, ImageFeatureKind kind, bool normalize) {
  const int64_t S = model_.image->config().image_size;
  if (!pixels.defined() || pixels.dim() != 4 || pixels.size(1) != 3 || pixels.size(2) != S ||
      pixels.size(3) != S)
    fail("images must be a [B, 3, {}, {}] tensor (the model's image size, as its preprocess gives), got {}",
         S, S, pixels.defined() ? c10::str(pixels.sizes()) : "none");
  if (!torch::isFloatingType(pixels.scalar_type()))
    fail("images must be a floating-point tensor (preprocessed pixels), got dtype {}",
         c10::toString(pixels.scalar_type()));
  torch::NoGradGuard no_grad;
  const torch::Tensor input = pixels.to(device_, torch::kFloat32);
  if (!torch::isfinite(input).all().item<bool>()) fail("images hold NaN or infinite values");
  const torch::Tensor pooled = kind == ImageFeatureKind::kVisual ? model_.image->visual_features(input)
                                                                 : model_.image->encode(input).pooled;
  const torch::Tensor features = pooled.to(torch::kFloat32);
  return (normalize ? l2_normalize(features) : features).cpu();
}

torch::Tensor EvalModels::image_features(const std::vector<ImageInput>& images, const std::string& label,
                                         std::vector<std::pair<size_t, std::string>>* undecodable,
                                         ImageFeatureKind kind) {
  std::vector<ImageInput> missing;
  std::unordered_set<std::string> queued;
  for (const auto& image : images) {
    const std::string key = cache_key(kind, image.id);
    if (!feature_of_.count(key) && !failure_of_.count(key) && queued.insert(key).second)
      missing.push_back(image);
  }
  encode_missing(missing, label, kind);
  std::vector<torch::Tensor> out;
  out.reserve(images.size());
  for (size_t i = 0; i < images.size(); ++i) {
    const std::string key = cache_key(kind, images[i].id);
    const auto failure = failure_of_.find(key);
    if (failure == failure_of_.end()) {
      out.push_back(feature_of_.at(key));
      continue;
    }
    if (undecodable == nullptr) fail("{}", failure->second);  // the decoder's message names the image
    undecodable->emplace_back(i, failure->second);
    out.push_back(torch::Tensor());
  }
  // Zero rows for the undecodable ones, shaped as the others.
  const auto shape = std::find_if(out.begin(), out.end(), [](const torch::Tensor& f) { return f.defined(); });
  if (shape == out.end()) return torch::zeros({static_cast<int64_t>(out.size()), 0});
  for (auto& f : out)
    if (!f.defined()) f = torch::zeros_like(*shape);
  return torch::stack(out);
}

torch::Tensor EvalModels::text_features(const std::vector<std::string>& texts, const std::string& role,
                                        int64_t* truncated, bool unit_facets) {
  if (model_.is_clip()) return clip_text_features(texts, truncated);
  const std::string prompt_set = train::prompt_set_for_role(provenance_, role);
  const text::PromptSet prompts = text::load_prompt_set(prompt_set);
  if (const text::StoreIdentity* trained = train::store_for_prompts(provenance_, prompt_set))
    note_prompt_difference(*trained, prompts);
  text::FacetEncoderOptions options = encoder_options(prompt_set);
  options.normalize = unit_facets;
  const text::FacetEncoder encoder(*llm_, *tokenizer_, prompts, options);
  return encoder.encode_texts(texts).cpu();
}

text::FacetEncoderOptions EvalModels::encoder_options(const std::string& prompt_set) const {
  text::FacetEncoderOptions o;
  o.normalize = true;
  if (const text::StoreIdentity* trained = train::store_for_prompts(provenance_, prompt_set)) {
    o.layer = trained->layer;  // the layer and positions training's stores were made with
    o.facet_positions = llm::parse_facet_positions(trained->facet_positions, "the checkpoint's text_stores");
    // No --layer is given to eval: a bad layer is the checkpoint's record, named as such.
    const int64_t L = llm_->num_layers();
    if (o.layer > L || o.layer < -(L + 1))
      fail(
          "the checkpoint {} records that its '{}' store was made from hidden layer {}, which the LLM in {} "
          "({} layers: 0..{} or -{}..-1) does not have; evaluate with the LLM it was trained against",
          model_path_, prompt_set, o.layer, llm_path_, L, L, L + 1);
  }
  return o;
}

nlohmann::json EvalModels::text_encoding(const std::string& role) const {
  const std::string prompt_set = train::prompt_set_for_role(provenance_, role);
  const text::FacetEncoderOptions o = encoder_options(prompt_set);
  return {{"prompt_set", prompt_set},
          {"layer", llm::hidden_state_index(o.layer, llm_->num_layers())},  // as FacetEncoder numbers it
          {"facet_positions", llm::to_string(o.facet_positions)}};
}

// Batches of similar length: the tower stops at a batch's longest caption.
torch::Tensor EvalModels::clip_text_features(const std::vector<std::string>& texts, int64_t* truncated) {
  torch::NoGradGuard no_grad;
  const text::ClipTokens tokens =
      text::clip_tokenize(*tokenizer_, texts, model_.text->config().context_length);
  const int64_t cut = tokens.truncated;
  const torch::Tensor order = std::get<1>(tokens.eot_index.sort(c10::optional<bool>(true), /*dim=*/0));
  torch::Tensor features;
  for (int64_t begin = 0; begin < order.size(0); begin += 256) {
    const torch::Tensor rows = order.slice(0, begin, begin + 256);
    const torch::Tensor f = l2_normalize(model_
                                             .text(tokens.ids.index_select(0, rows).to(device_),
                                                   tokens.eot_index.index_select(0, rows).to(device_))
                                             .to(torch::kFloat32))
                                .cpu();
    if (!features.defined()) features = torch::empty({order.size(0), f.size(1)}, f.options());
    features.index_copy_(0, rows, f);
  }
  if (truncated != nullptr) *truncated = cut;
  return features.unsqueeze(1);
}

// A prompt set of the same name but other content than training's (edited
// since): worth a warning, once.
void EvalModels::note_prompt_difference(const text::StoreIdentity& trained, const text::PromptSet& prompts) {
  if (trained.prompt_set_name != prompts.name || trained.prompt_set_sha256 == prompts.sha256) return;
  const std::string warning =
      fmt::format("prompt set '{}' differs from the one the model was trained with (sha256 {} now, {} then)",
                  prompts.name, prompts.sha256.substr(0, 12), trained.prompt_set_sha256.substr(0, 12));
  const std::lock_guard<std::mutex> lock(warnings_mutex_);
  if (std::find(warnings_.begin(), warnings_.end(), warning) != warnings_.end()) return;
  warnings_.push_back(warning);
  spdlog::warn("{}", warning);
}

torch::Tensor zero_shot_classifier(EvalModels& m, const std::vector<std::string>& class_names,
                                   const std::vector<std::string>& templates) {
  std::vector<std::string> prompts;
  for (const auto& c : class_names)
    for (const auto& t : templates) prompts.push_back(fill_template(t, c));
  const auto C = static_cast<int64_t>(class_names.size()), T = static_cast<int64_t>(templates.size());
  const torch::Tensor text = m.text_features(prompts, "raw").select(1, 0).view({C, T, -1});
  return l2_normalize(l2_normalize(text).mean(1));
}

}  // namespace flame::eval
