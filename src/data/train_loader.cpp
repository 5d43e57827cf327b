#include "data/train_loader.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <numeric>

#include "data/image_decode.h"
#include "util/error.h"
#include "util/rng.h"

namespace flame::data {

namespace {

// Distinct salts keep the shuffle and the augmentation streams unrelated.
constexpr uint64_t kShuffleSalt = 0x53485546464c45ull;     // "SHUFFLE"
constexpr uint64_t kAugmentSalt = 0x4155474d454e54ull;     // "AUGMENT"
constexpr uint64_t kPositiveSalt = 0x504f534954495645ull;  // "POSITIVE"

int64_t json_integer(const nlohmann::json& in, const char* name) {
  const auto it = in.find(name);
  if (it == in.end() || !it->is_number_integer() || it->get<int64_t>() < 0) {
    fail("loader state: field '{}' is missing or not a non-negative integer", name);
  }
  return it->get<int64_t>();
}

// `count` of each row's K positives, a uniform random subset drawn from the
// row's seed (a partial Fisher-Yates with portable draws: the same subset on
// every platform), in the order drawn.
torch::Tensor select_positives(const torch::Tensor& texts, int64_t count,
                               const std::vector<uint64_t>& seeds) {
  const int64_t rows = texts.size(0), k = texts.size(1);
  torch::Tensor index = torch::empty({rows, count}, torch::kLong);
  auto out = index.accessor<int64_t, 2>();
  std::vector<int64_t> order(static_cast<size_t>(k));
  for (int64_t i = 0; i < rows; ++i) {
    std::iota(order.begin(), order.end(), 0);
    std::mt19937_64 rng(seeds[static_cast<size_t>(i)]);
    for (int64_t j = 0; j < count; ++j) {
      const int64_t pick = j + static_cast<int64_t>(random_below(rng, static_cast<uint64_t>(k - j)));
      std::swap(order[static_cast<size_t>(j)], order[static_cast<size_t>(pick)]);
      out[i][j] = order[static_cast<size_t>(j)];
    }
  }
  return texts.gather(1, index.unsqueeze(-1).expand({rows, count, texts.size(2)}));
}

}  // namespace

void to_json(nlohmann::json& out, const LoaderState& state) {
  out = {{"epoch", state.epoch}, {"position", state.position}, {"skipped_images", state.skipped_images}};
}

void from_json(const nlohmann::json& in, LoaderState& state) {
  if (!in.is_object()) fail("loader state: expected a JSON object, got {}", in.type_name());
  state.epoch = json_integer(in, "epoch");
  state.position = json_integer(in, "position");
  state.skipped_images = json_integer(in, "skipped_images");
}

TrainLoader::TrainLoader(std::shared_ptr<const ImageSource> images, std::shared_ptr<const PairedTexts> texts,
                         LoaderOptions options, LoaderState start)
    : images_(std::move(images)), texts_(std::move(texts)), options_(std::move(options)), state_(start) {
  if (!images_ || !texts_) fail("train loader: no image source or no texts given");
  const LoaderOptions& o = options_;
  if (o.batch_size < 1) fail("train loader: batch size must be at least 1, got {}", o.batch_size);
  if (o.num_workers < 0) fail("train loader: invalid number of workers {}", o.num_workers);
  if (o.world_size < 1 || o.rank < 0 || o.rank >= o.world_size) {
    fail("train loader: invalid rank {} of world size {}", o.rank, o.world_size);
  }
  if (!(o.max_skip_fraction >= 0 && o.max_skip_fraction <= 1)) {
    fail("train loader: max skip fraction must be in [0, 1], got {}", o.max_skip_fraction);
  }
  if (o.transform.size < 1) fail("train loader: invalid image size {}", o.transform.size);

  // Join by key, in image-source order.
  for (int64_t i = 0; i < images_->size(); ++i) {
    const std::string& key = images_->record(i).key;
    if (const auto row = texts_->index_of(key)) {
      record_of_.push_back(i);
      row_of_.push_back(*row);
    } else {
      if (report_.without_embedding_examples.size() < SkipReport::kMaxExamples)
        report_.without_embedding_examples.push_back(key);
      ++report_.without_embedding;
    }
  }
  report_.usable = num_items();
  if (record_of_.empty()) {
    fail(
        "train loader: none of the {} images has a text embedding or caption (image keys look like '{}', "
        "text keys like '{}')",
        images_->size(), images_->record(0).key, texts_->size() > 0 ? texts_->example_key() : "");
  }
  if (report_.without_embedding > 0) {
    spdlog::warn("{} of {} images have no text embedding or caption and are left out, e.g. '{}'",
                 report_.without_embedding, images_->size(),
                 fmt::join(report_.without_embedding_examples, "', '"));
  }
  stream_length_ = num_items() / o.world_size;
  if (stream_length_ < o.batch_size) {
    fail("train loader: {} usable images over {} ranks leave {} per rank, fewer than the batch size {}",
         num_items(), o.world_size, stream_length_, o.batch_size);
  }
  if (state_.epoch < 0 || state_.position < 0 || state_.position > stream_length_ ||
      state_.skipped_images < 0) {
    fail("train loader: cannot resume from epoch {} position {}: a rank's stream has {} items per epoch",
         state_.epoch, state_.position, stream_length_);
  }
  if (state_.position == stream_length_) state_ = {state_.epoch + 1, 0, state_.skipped_images};

  claim_ = Work{state_.epoch, state_.position, 0};
  window_ = std::max(1, o.prefetch_batches) * o.batch_size;
  try {
    for (int i = 0; i < o.num_workers; ++i) workers_.emplace_back([this] { worker_loop(); });
  } catch (...) {  // could not start a thread: stop the ones running before unwinding
    stop_workers();
    throw;
  }
}

TrainLoader::~TrainLoader() {
  stop_workers();
}

void TrainLoader::stop_workers() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  work_cv_.notify_all();
  for (auto& worker : workers_)
    if (worker.joinable()) worker.join();
}

const std::string& TrainLoader::item_key(int64_t item) const {
  if (item < 0 || item >= num_items())
    fail("train loader: item {} out of range ({} items)", item, num_items());
  return images_->record(record_of_[item]).key;
}

// Fisher-Yates with portable draws: the same order on every platform.
std::vector<int64_t> TrainLoader::epoch_order(int64_t epoch) const {
  std::vector<int64_t> order(record_of_.size());
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(mix_seed(options_.seed, kShuffleSalt, static_cast<uint64_t>(epoch)));
  for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[random_below(rng, i)]);
  return order;
}

TrainLoader::Work TrainLoader::claim_locked() {
  if (order_epoch_ != claim_.epoch) {
    order_ = epoch_order(claim_.epoch);
    order_epoch_ = claim_.epoch;
  }
  Work work = claim_;
  work.item = order_[static_cast<size_t>(options_.rank + claim_.position * options_.world_size)];
  if (++claim_.position == stream_length_) claim_ = Work{claim_.epoch + 1, 0, 0};
  ++next_sequence_;
  return work;
}

TrainLoader::Result TrainLoader::process(const Work& work) const {
  Result result{work, {}, {}};
  const int64_t record = record_of_[static_cast<size_t>(work.item)];
  try {
    const std::string bytes = images_->read_bytes(record);
    const torch::Tensor hwc = decode_image(bytes, images_->location(record));
    const uint64_t seed = mix_seed(mix_seed(options_.seed, kAugmentSalt), static_cast<uint64_t>(work.epoch),
                                   static_cast<uint64_t>(work.item));
    result.image = transform_image(hwc, options_.transform, seed);
  } catch (const std::exception& e) {
    result.error = e.what();
  } catch (...) {
    result.error = "unknown error";
  }
  return result;
}

// Workers claim items in stream order, at most window_ ahead of the consumer,
// and file results by sequence number; the consumer takes them in order.
void TrainLoader::worker_loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    work_cv_.wait(lock, [&] { return stopping_ || next_sequence_ < consumed_sequence_ + window_; });
    if (stopping_) return;
    const int64_t sequence = next_sequence_;
    const Work work = claim_locked();
    lock.unlock();
    Result result = process(work);
    lock.lock();
    results_.emplace(sequence, std::move(result));
    ready_cv_.notify_all();
  }
}

TrainLoader::Result TrainLoader::take() {
  std::unique_lock<std::mutex> lock(mutex_);
  const int64_t sequence = consumed_sequence_++;
  if (workers_.empty()) {
    const Work work = claim_locked();
    lock.unlock();
    return process(work);
  }
  work_cv_.notify_all();  // the window moved
  ready_cv_.wait(lock, [&] { return results_.count(sequence) > 0; });
  Result result = std::move(results_.at(sequence));
  results_.erase(sequence);
  return result;
}

Batch TrainLoader::next() {
  const auto started = std::chrono::steady_clock::now();
  Batch batch;
  std::vector<torch::Tensor> images;
  std::vector<int64_t> rows;
  std::vector<uint64_t> positive_seeds;  // per image: its epoch and item, so a resumed run draws the same
  while (static_cast<int64_t>(images.size()) < options_.batch_size) {
    Result result = take();
    state_.epoch = result.work.epoch;
    state_.position = result.work.position + 1;
    if (state_.position == stream_length_) state_ = {state_.epoch + 1, 0, state_.skipped_images};
    const std::string& key = item_key(result.work.item);
    if (!result.image.defined()) {
      ++state_.skipped_images;
      ++report_.bad_images;
      if (report_.bad_image_examples.size() < SkipReport::kMaxExamples)
        report_.bad_image_examples.push_back(key + ": " + result.error);
      spdlog::warn("skipping unreadable image '{}' (epoch {}): {}", key, result.work.epoch, result.error);
      // Items seen over the whole run; at least one epoch's worth, so a bad
      // image early on does not stop training.
      const int64_t seen = state_.epoch * stream_length_ + state_.position;
      const double allowed = options_.max_skip_fraction * static_cast<double>(std::max(seen, stream_length_));
      if (static_cast<double>(state_.skipped_images) > allowed) {
        fail(
            "too many unreadable images: {} skipped of {} seen (limit {}%, --max-skip-fraction {}); the last "
            "was '{}': {}",
            state_.skipped_images, seen, options_.max_skip_fraction * 100, options_.max_skip_fraction, key,
            result.error);
      }
      continue;
    }
    if (images.empty()) batch.epoch = result.work.epoch;
    batch.keys.push_back(key);
    images.push_back(std::move(result.image));
    rows.push_back(row_of_[static_cast<size_t>(result.work.item)]);
    positive_seeds.push_back(mix_seed(mix_seed(options_.seed, kPositiveSalt),
                                      static_cast<uint64_t>(result.work.epoch),
                                      static_cast<uint64_t>(result.work.item)));
  }
  batch.wait_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  batch.images = torch::stack(images);
  batch.texts = texts_->batch_texts(rows);
  if (options_.pin_memory) batch.images = batch.images.pin_memory();
  if (options_.positives_per_item > 0 && batch.texts.defined() &&
      options_.positives_per_item < batch.texts.size(1)) {
    batch.texts = select_positives(batch.texts, options_.positives_per_item, positive_seeds);
  }
  if (options_.pin_memory && batch.texts.defined()) batch.texts = batch.texts.pin_memory();
  batch.text_rows = std::move(rows);
  return batch;
}

}  // namespace flame::data
