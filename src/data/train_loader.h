// The training data loader: images joined by key with their texts (precomputed
// text embeddings for FLAME, captions for the CLIP baseline: data/paired_texts.h),
// shuffled per epoch, split across ranks, decoded and augmented
// by worker threads ahead of the trainer.
//
// Everything a batch holds is a pure function of (seed, epoch, item): the
// order of epoch e is a seeded shuffle, and each image's augmentation is seeded
// by (seed, epoch, item). So batches do not depend on the number of workers,
// and a run resumed from state() continues with exactly the batches the
// interrupted run would have produced.
#pragma once

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "data/image_source.h"
#include "data/image_transform.h"
#include "data/paired_texts.h"

namespace flame::data {

struct LoaderOptions {
  int64_t batch_size = 0;  // per rank
  int num_workers = 2;     // 0: decode in the caller's thread
  int prefetch_batches = 2;
  uint64_t seed = 0;
  ImageTransformOptions transform;
  int rank = 0, world_size = 1;
  // Unreadable images are skipped, but more than this fraction of the items
  // seen (counted over at least one epoch's worth) means broken data: throw.
  double max_skip_fraction = 0.01;
  // Positives per image per batch: a random subset of the K embeddings of
  // each image (the method's released training draws 6 of 11), drawn from
  // the seed, the epoch and the item, so a resumed run draws the same. 0 or
  // >= K: all K.
  int64_t positives_per_item = 0;
  // Batches in page-locked memory, so the copy to a GPU can be asynchronous
  // (non_blocking) and overlap the step; CUDA builds only.
  bool pin_memory = false;
};

// Where a rank's stream stands. Rank r's stream in epoch e is positions
// r, r+W, r+2W, ... of the epoch's shuffled order, stream_length() of them.
struct LoaderState {
  int64_t epoch = 0;
  int64_t position = 0;        // items of this rank's stream consumed in this epoch
  int64_t skipped_images = 0;  // unreadable images skipped since training began
};

void to_json(nlohmann::json& out, const LoaderState& state);
// Throws flame::Error naming the field when one is missing or invalid.
void from_json(const nlohmann::json& in, LoaderState& state);

struct Batch {
  std::vector<std::string> keys;
  torch::Tensor images;            // [B, 3, S, S] float32, CLIP-normalised
  std::vector<int64_t> text_rows;  // each image's row in the PairedTexts
  torch::Tensor texts;      // PairedTexts::batch_texts(text_rows): [B, K, D] float32 embeddings, or undefined
  int64_t epoch = 0;        // the epoch of the batch's first item (a batch may run into the next)
  double wait_seconds = 0;  // how long next() waited for images
};

struct SkipReport {
  inline static constexpr size_t kMaxExamples = 20;
  int64_t usable = 0;             // images with a text embedding
  int64_t without_embedding = 0;  // images whose key is in no store row: left out
  std::vector<std::string> without_embedding_examples;
  int64_t bad_images = 0;                       // unreadable images skipped by this loader
  std::vector<std::string> bad_image_examples;  // "KEY: reason"
};

class TrainLoader {
 public:
  // Throws flame::Error when no image has an embedding, when there are fewer
  // usable items than ranks or a rank's stream is shorter than a batch, or
  // when the options or `start` are invalid.
  TrainLoader(std::shared_ptr<const ImageSource> images, std::shared_ptr<const PairedTexts> texts,
              LoaderOptions options, LoaderState start = {});
  ~TrainLoader();  // stops and joins the workers, also mid-epoch
  TrainLoader(const TrainLoader&) = delete;
  TrainLoader& operator=(const TrainLoader&) = delete;

  // The next batch_size items of this rank's stream whose images decode;
  // runs into the next epoch when the stream ends. Throws flame::Error (naming
  // the last bad key) when skipped images pass max_skip_fraction.
  Batch next();

  // The state after the last batch returned.
  LoaderState state() const { return state_; }
  int64_t steps_per_epoch() const { return stream_length_ / options_.batch_size; }
  int64_t stream_length() const { return stream_length_; }  // items per rank per epoch
  const SkipReport& skips() const { return report_; }
  // Usable items: the keys, in image-source order, that the shuffle permutes.
  int64_t num_items() const { return static_cast<int64_t>(record_of_.size()); }
  const std::string& item_key(int64_t item) const;

 private:
  struct Work {
    int64_t epoch = 0, position = 0, item = 0;
  };
  struct Result {
    Work work;
    torch::Tensor image;  // undefined when the image could not be read
    std::string error;
  };

  std::vector<int64_t> epoch_order(int64_t epoch) const;
  Work claim_locked();                     // the next item of the stream (mutex_ held)
  Result process(const Work& work) const;  // read, decode, augment: a pure function
  Result take();                           // the result for the consumer's next item, in order
  void worker_loop();
  void stop_workers();  // idempotent

  std::shared_ptr<const ImageSource> images_;
  std::shared_ptr<const PairedTexts> texts_;
  LoaderOptions options_;
  std::vector<int64_t> record_of_;  // item -> image record
  std::vector<int64_t> row_of_;     // item -> row of the stores
  int64_t stream_length_ = 0;
  int64_t window_ = 0;  // items workers may run ahead of the consumer
  LoaderState state_;
  SkipReport report_;

  // Shared with the workers, under mutex_.
  mutable std::mutex mutex_;
  std::condition_variable work_cv_, ready_cv_;
  bool stopping_ = false;
  int64_t next_sequence_ = 0;      // the next item to hand to a worker, counted from the start
  int64_t consumed_sequence_ = 0;  // the next item the consumer takes
  Work claim_;                     // stream position of next_sequence_
  int64_t order_epoch_ = -1;
  std::vector<int64_t> order_;  // epoch_order(order_epoch_)
  std::map<int64_t, Result> results_;
  std::vector<std::thread> workers_;
};

}  // namespace flame::data
