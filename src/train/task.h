// TrainTask: what the training loop (trainer.cpp) asks of the model it trains,
// so that the loop never asks which one it has (OpenCLIP's "task"). A task
// owns the text side of a run and the loss of a micro-batch:
//   FLAME (text tower llm): the embedding stores, joined by key, are the text
//     side; the loader reads each image's K facet embeddings, [b, K, D]. The
//     model is the image encoder with the MLP projector into the LLM's space.
//   CLIP baseline (text tower clip): one caption per image, tokenized per batch
//     for a text tower trained together with the image encoder (linear
//     projection), [b, 1, D]. It counts the captions cut to the tower's context
//     and says so at the end of the run.
// For both, a micro-batch's loss is: image and text features (bf16 autocast
// when asked), L2-normalised, gathered over the ranks, multi-positive InfoNCE
// or sigmoid over the whole batch (train/loss.h).
#pragma once

#include <nlohmann/json.hpp>

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "data/paired_texts.h"
#include "data/train_loader.h"
#include "train/train_options.h"
#include "train/train_summary.h"
#include "train/trained_model.h"
#include "util/distributed.h"
#include "vision/vit_config.h"

namespace flame::train {

// The field of a "text_stores" entry (train/text_provenance.h) that records
// what the store holds (its shards' vector checksums and its keys, hashed),
// so a resumed run can tell a store embedded again at the same path from the
// one it trained on. Absent for stores older than the shard checksums.
inline constexpr const char* kStoreContentField = "content_sha256";

// One AdamW parameter group.
struct ParameterGroup {
  std::string name;  // "decay" or "no_decay"
  std::vector<torch::Tensor> parameters;
  double weight_decay = 0;
};

class TrainTask {
 public:
  explicit TrainTask(const TrainOptions& options);
  virtual ~TrainTask() = default;
  TrainTask(const TrainTask&) = delete;
  TrainTask& operator=(const TrainTask&) = delete;

  // What the loader pairs each image with, by key.
  virtual std::shared_ptr<const data::PairedTexts> paired_texts() const = 0;
  // config.json's "facets": the names of an image's K texts.
  virtual std::vector<std::string> facets() const = 0;
  // What the checkpoints record of the text side (train/text_provenance.h):
  // the joined stores' identities and content hashes (kStoreContentField)
  // (FLAME); null for a text tower trained here.
  virtual nlohmann::json text_provenance() const { return nullptr; }
  // The trained module, initialised from the torch RNG (the caller seeds it).
  virtual TrainedModel make_model(const vision::VitConfig& vit) const = 0;
  // End of the run, after summary.steps is set: the task's fields of the
  // summary, summed over the ranks, and its log line. Every rank calls it.
  virtual void finish(TrainSummary& /*summary*/, Distributed& /*dist*/) const {}

  // The loss of one micro-batch over the whole batch (all ranks); gradients
  // reach this rank's rows only.
  torch::Tensor loss(TrainedModel& model, const data::Batch& batch, Distributed& dist);
  // The AdamW groups, over every trained parameter: weight matrices take
  // weight decay, the rest not (vision::weight_decay_group).
  std::vector<ParameterGroup> parameter_groups(const TrainedModel& model) const;
  // The parameters the loss reads directly (temperature, bias): every rank
  // computes the whole loss, so each holds their full gradient.
  std::vector<torch::Tensor> loss_parameters(const TrainedModel& model) const;

 protected:
  // [b, K, D] text features of `batch` on device(), in any dtype; called under
  // the forward's autocast, after the image tower.
  virtual torch::Tensor text_features(TrainedModel& model, const data::Batch& batch) = 0;
  const TrainOptions& options() const { return options_; }
  const torch::Device& device() const { return device_; }

 private:
  const TrainOptions options_;
  const torch::Device device_;
};

// The task of options.text_tower, with its text side loaded (stores, or
// captions and the text tower's tokenizer). Throws flame::Error on bad input.
std::unique_ptr<TrainTask> make_task(const TrainOptions& options);

}  // namespace flame::train
