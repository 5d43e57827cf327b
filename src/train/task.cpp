#include "train/task.h"

#include <spdlog/spdlog.h>

#include <filesystem>

#include "data/caption_table.h"
#include "llm/load_llm.h"
#include "llm/tokenizer.h"
#include "text/clip_text_config.h"
#include "text/clip_tokenize.h"
#include "text/joined_stores.h"
#include "text/store_content.h"
#include "train/autocast.h"
#include "train/loss.h"
#include "train/text_provenance.h"
#include "vision/image_encoder.h"

namespace flame::train {

namespace {

// The checkpoints' record of the joined stores: each one's identity and,
// where known, its content_sha256.
nlohmann::json stores_provenance(const text::JoinedStores& stores) {
  std::vector<text::StoreIdentity> identities;
  for (const text::EmbeddingStore& store : stores.stores()) identities.push_back(store.identity());
  nlohmann::json out = text_provenance_json(identities);
  for (size_t i = 0; i < stores.stores().size(); ++i) {
    const std::string content = text::store_content_sha256(stores.stores()[i]);
    if (!content.empty()) out[i][kStoreContentField] = content;
  }
  return out;
}

// FLAME: the stores fix the text side (K facets of dim D); the loader reads
// each batch's embeddings.
class FlameTask : public TrainTask {
 public:
  explicit FlameTask(const TrainOptions& o)
      : TrainTask(o),
        stores_(std::make_shared<const text::JoinedStores>(text::JoinedStores::open(
            std::vector<std::filesystem::path>(o.text_stores.begin(), o.text_stores.end())))),
        provenance_(stores_provenance(*stores_)) {}

  std::shared_ptr<const data::PairedTexts> paired_texts() const override { return stores_; }
  std::vector<std::string> facets() const override { return stores_->facets(); }
  nlohmann::json text_provenance() const override { return provenance_; }
  TrainedModel make_model(const vision::VitConfig& vit) const override {
    return make_flame_model(vit, stores_->dim());
  }

 protected:
  torch::Tensor text_features(TrainedModel&, const data::Batch& batch) override {
    return batch.texts.to(device(), /*non_blocking=*/true);  // pinned on CUDA: an asynchronous copy
  }

 private:
  std::shared_ptr<const text::JoinedStores> stores_;
  nlohmann::json provenance_;  // computed once: the content hash reads every shard's header
};

// The CLIP baseline: one caption per key, tokenized per batch for the
// trained text tower.
class ClipTask : public TrainTask {
 public:
  explicit ClipTask(const TrainOptions& o)
      : TrainTask(o),
        config_(text::load_clip_text_config(o.clip_text)),
        tokenizer_(llm::Tokenizer::load(config_.tokenizer_path())) {
    data::CaptionSourceOptions caption_options;
    caption_options.tsv_text_column = o.caption_field;
    caption_options.tsv_join = o.caption_join;
    captions_ = std::make_shared<const data::CaptionTable>(
        data::CaptionTable::read(o.captions, caption_options, o.caption_field));
  }

  std::shared_ptr<const data::PairedTexts> paired_texts() const override { return captions_; }
  std::vector<std::string> facets() const override { return {"caption"}; }
  TrainedModel make_model(const vision::VitConfig& vit) const override {
    return make_clip_model(vit, config_, tokenizer_->vocab_size());
  }

  // Counted as the batches are tokenized (no pass over the whole caption set
  // at start-up): CLIP cuts long captions, and comparisons should say so.
  void finish(TrainSummary& summary, Distributed& dist) const override {
    summary.truncated_captions =
        static_cast<int64_t>(dist.all_reduce_sum(static_cast<double>(truncated_captions_)));
    if (!dist.is_main()) return;
    const int64_t trained_on = (summary.steps - summary.first_step) * options().batch_size;
    spdlog::info("{} of the {} captions trained on ({:.1f}%) were cut to the text tower's {} tokens",
                 summary.truncated_captions, trained_on,
                 100.0 * static_cast<double>(summary.truncated_captions) / static_cast<double>(trained_on),
                 config_.context_length);
  }

 protected:
  torch::Tensor text_features(TrainedModel& model, const data::Batch& batch) override {
    const text::ClipTokens tokens =
        text::clip_tokenize(*tokenizer_, captions_->captions(batch.text_rows), config_.context_length);
    truncated_captions_ += tokens.truncated;
    return model.text(tokens.ids.to(device()), tokens.eot_index.to(device())).unsqueeze(1);  // [b, K = 1, D]
  }

 private:
  text::ClipTextConfig config_;
  std::unique_ptr<llm::Tokenizer> tokenizer_;
  std::shared_ptr<const data::CaptionTable> captions_;
  int64_t truncated_captions_ = 0;  // this rank's captions cut to the tower's context
};

}  // namespace

TrainTask::TrainTask(const TrainOptions& options)
    : options_(options), device_(llm::parse_device(options.device)) {}

torch::Tensor TrainTask::loss(TrainedModel& model, const data::Batch& batch, Distributed& dist) {
  torch::Tensor image, text;
  {
    AutocastScope autocast(options_.precision == Precision::kBf16, device_);
    image = model.image->encode(batch.images.to(device_, /*non_blocking=*/true)).pooled;
    text = text_features(model, batch);
  }
  const auto unit = torch::nn::functional::NormalizeFuncOptions().dim(-1);
  image = torch::nn::functional::normalize(image.to(torch::kFloat32), unit);
  text = torch::nn::functional::normalize(text.to(torch::kFloat32), unit);
  const torch::Tensor all_images = dist.gather_rows(image);
  const torch::Tensor all_texts = dist.gather_rows(text);
  const vision::ImageEncoder& encoder = model.image;
  return options_.loss == LossKind::kSigmoid
             ? multi_positive_sigmoid(all_images, all_texts, encoder->logit_scale_exp(), encoder->logit_bias)
             : multi_positive_infonce(all_images, all_texts, encoder->logit_scale_exp());
}

std::vector<ParameterGroup> TrainTask::parameter_groups(const TrainedModel& model) const {
  return {{"decay", model.decay_parameters(), options_.weight_decay},
          {"no_decay", model.no_decay_parameters(), 0.0}};
}

std::vector<torch::Tensor> TrainTask::loss_parameters(const TrainedModel& model) const {
  return {model.image->logit_scale, model.image->logit_bias};
}

std::unique_ptr<TrainTask> make_task(const TrainOptions& options) {
  if (options.text_tower == TextTower::kClip) return std::make_unique<ClipTask>(options);
  return std::make_unique<FlameTask>(options);
}

}  // namespace flame::train
