// Overlap for the embed job: the caller reads and tokenizes shard s+1 while a
// worker thread runs the model on shard s and shard s-1 is written to disk, so
// the model waits neither for the input nor for the disk. At most one shard
// waits between the stages (memory: about three shards of captions).
#pragma once

#include <torch/torch.h>

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "text/fda_encoder.h"

namespace flame::text {

// One store shard on its way through the pipeline.
struct ShardWork {
  int64_t shard = 0;
  std::vector<std::string> keys;
  bool resumed = false;                  // already on disk: nothing to compute
  std::vector<TokenizedCaption> tokens;  // for the model
  int64_t truncated = 0;
  EncodeStats stats;         // filled by the worker
  double model_seconds = 0;  // filled by the worker
};

class ShardPipeline {
 public:
  // `encode` runs on the worker thread, `write` on the writer thread, one
  // shard at a time and in push order. Errors on either reach the caller at
  // its next push() or at finish().
  using Encode = std::function<torch::Tensor(ShardWork&)>;
  using Write = std::function<void(const ShardWork&, const torch::Tensor&)>;
  // Without `overlap`, push() encodes and writes on the caller's thread: on
  // a CPU, the model's threads already use every core, and a reading thread
  // beside them only slows them down (measured: 15-20% on 2 cores).
  ShardPipeline(Encode encode, Write write, bool overlap = true);
  ~ShardPipeline();
  ShardPipeline(const ShardPipeline&) = delete;
  ShardPipeline& operator=(const ShardPipeline&) = delete;

  // Hands a shard to the worker; blocks while the previous one still waits.
  void push(ShardWork work);
  // Waits until every shard is written; rethrows the first error.
  void finish();
  // Seconds the model computed (the worker's encode calls).
  double model_seconds() const { return model_seconds_; }

 private:
  void run();
  void rethrow_error();
  torch::Tensor timed_encode(ShardWork& work);

  Encode encode_;
  Write write_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::optional<ShardWork> waiting_;
  bool closing_ = false;
  std::exception_ptr error_;
  double model_seconds_ = 0;
  std::thread worker_;
};

}  // namespace flame::text
