#include "text/shard_pipeline.h"

#include <chrono>

namespace flame::text {

ShardPipeline::ShardPipeline(Encode encode, Write write, bool overlap)
    : encode_(std::move(encode)), write_(std::move(write)) {
  if (overlap) worker_ = std::thread([this] { run(); });
}

torch::Tensor ShardPipeline::timed_encode(ShardWork& work) {
  if (work.resumed) return {};
  const auto start = std::chrono::steady_clock::now();
  torch::Tensor embeddings = encode_(work);
  work.model_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  model_seconds_ += work.model_seconds;
  return embeddings;
}

ShardPipeline::~ShardPipeline() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    closing_ = true;
  }
  changed_.notify_all();
  if (worker_.joinable()) worker_.join();
}

void ShardPipeline::rethrow_error() {
  if (error_) std::rethrow_exception(error_);
}

void ShardPipeline::push(ShardWork work) {
  if (!worker_.joinable()) {  // no overlap
    write_(work, timed_encode(work));
    return;
  }
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [&] { return !waiting_ || error_; });
  rethrow_error();
  waiting_ = std::move(work);
  changed_.notify_all();
}

void ShardPipeline::finish() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    closing_ = true;
  }
  changed_.notify_all();
  if (worker_.joinable()) worker_.join();
  rethrow_error();
}

void ShardPipeline::run() {
  std::future<void> writing;  // the previous shard, written while this one computes
  try {
    while (true) {
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait(lock, [&] { return waiting_ || closing_; });
      if (!waiting_) break;
      auto work = std::make_shared<ShardWork>(std::move(*waiting_));
      waiting_.reset();
      lock.unlock();
      changed_.notify_all();

      const torch::Tensor embeddings = timed_encode(*work);
      if (writing.valid()) writing.get();  // in order, and its error first
      writing = std::async(std::launch::async, [this, work, embeddings] { write_(*work, embeddings); });
    }
    if (writing.valid()) writing.get();
  } catch (...) {
    std::lock_guard<std::mutex> lock(mutex_);
    error_ = std::current_exception();
    changed_.notify_all();
  }
}

}  // namespace flame::text
