// The models `flame eval` scores with: the trained image encoder, and its text
// side, the frozen LLM through the FDA encoder (FLAME) or the checkpoint's own
// text tower (the CLIP baseline). Shared by every benchmark source
// (evaluate.cpp's folders and tables, clip_benchmark_tasks.cpp's WebDataset
// exports, the long-caption, multilingual and compositionality sets).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "data/image_transform.h"
#include "eval/eval_options.h"
#include "llm/tokenizer.h"
#include "llm/transformer.h"
#include "text/fda_encoder.h"
#include "text/prompts.h"
#include "train/text_provenance.h"
#include "train/trained_model.h"

namespace flame::eval {

// An image to encode: `id` names it in messages and keys the feature cache (a
// file path, or "shard.tar:member" for a tar member); `read` returns its
// encoded bytes (called on decoder threads, so it must be thread-safe).
struct ImageInput {
  std::string id;
  std::function<std::string()> read;
};

// Image files as inputs.
std::vector<ImageInput> file_inputs(const std::vector<std::filesystem::path>& files);

// Which image features: the pooled features in the text space the model was
// trained for (kJoint), or the ViT's pooled output before the projection
// (kVisual: the method's linear-probe features, encode_image(visual_only=True)).
enum class ImageFeatureKind { kJoint, kVisual };

class EvalModels {
 public:
  // `needs_text`: some task encodes texts. A FLAME model's LLM is loaded only
  // then (the linear probe needs none).
  EvalModels(const EvalOptions& o, bool needs_text);
  ~EvalModels();

  bool is_clip() const { return model_.is_clip(); }
  const torch::Device& device() const { return device_; }
  // How text_features encodes a FLAME model's texts for `role`:
  // {"prompt_set" (the set playing the role, train::prompt_set_for_role),
  // "layer" (hidden_states index), "facet_positions"}, as the checkpoint's
  // training stores were made.
  nlohmann::json text_encoding(const std::string& role) const;
  const std::vector<std::string>& warnings() const { return warnings_; }
  const train::TrainedModel& model() const { return model_; }
  // `flame eval`'s image transform for this model: resize, centre crop.
  data::ImageTransformOptions image_transform() const;
  // [B, D] float32 pooled features of preprocessed pixels [B, 3, S, S]
  // (data::transform_image's, S the model's image size), on the CPU; unit
  // rows when `normalize` (as image_features gives them). Throws
  // flame::Error naming the shape, dtype or a non-finite value.
  torch::Tensor encode_pixels(const torch::Tensor& pixels, ImageFeatureKind kind, bool normalize);

  // [N, D] normalised pooled features of the images. Features are kept per id:
  // tasks that share images (the Flickr8k tasks, a dataset's zero-shot and
  // retrieval) decode and encode each once per evaluation. Decoding runs on
  // --threads threads. An undecodable image throws, naming it, unless
  // `undecodable` is given: then its row is zero and its index (into
  // `images`) and message are appended there, for the task to count and name.
  torch::Tensor image_features(const std::vector<ImageInput>& images, const std::string& label,
                               std::vector<std::pair<size_t, std::string>>* undecodable = nullptr,
                               ImageFeatureKind kind = ImageFeatureKind::kJoint);

  // [N, K, D] normalised text features: the K facets of the prompt set
  // playing `role` ("long", "raw": flame's sets, or those the checkpoint's
  // stores name for that role, such as release-long) (FLAME), or the text
  // tower on each text cut to its context, K = 1 (CLIP; no prompt set).
  // `truncated` counts the texts CLIP cut.
  // `unit_facets` false: FLAME's facet vectors as the LLM gives them (for
  // FacetPooling::kMeanEmbedding); CLIP's are unit vectors either way.
  torch::Tensor text_features(const std::vector<std::string>& texts, const std::string& role,
                              int64_t* truncated = nullptr, bool unit_facets = true);

 private:
  void encode_missing(const std::vector<ImageInput>& missing, const std::string& label,
                      ImageFeatureKind kind);
  torch::Tensor clip_text_features(const std::vector<std::string>& texts, int64_t* truncated);
  void note_prompt_difference(const text::StoreIdentity& trained, const text::PromptSet& prompts);
  // The layer and facet positions training's store made with `prompt_set`
  // used (defaults when unknown).
  text::FacetEncoderOptions encoder_options(const std::string& prompt_set) const;

  torch::Device device_;
  train::TrainedModel model_;
  train::TextProvenance provenance_;  // FLAME: what the training stores were made with
  std::vector<std::string> warnings_;
  std::mutex warnings_mutex_;              // text_features may run on several threads (the Python module's)
  std::unique_ptr<llm::Transformer> llm_;  // FLAME only
  std::unique_ptr<llm::Tokenizer> tokenizer_;
  int64_t batch_size_;
  std::string model_path_, llm_path_;                          // for messages
  std::unordered_map<std::string, torch::Tensor> feature_of_;  // image id -> its feature [D]
  std::unordered_map<std::string, std::string> failure_of_;    // image id -> why it did not decode
};

// Zero-shot class vectors [C, D]: every class name in every template through
// the `raw` prompt set, each normalised, averaged over the templates and
// normalised again (CLIP's and CLIP_benchmark's classifier).
torch::Tensor zero_shot_classifier(EvalModels& m, const std::vector<std::string>& class_names,
                                   const std::vector<std::string>& templates);

}  // namespace flame::eval
