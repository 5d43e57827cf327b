// Data-parallel communication (training; the parts of a scale-out embed job),
// on top of LibTorch's c10d: a
// TCPStore for the rendezvous and a Gloo process group (NCCL on CUDA builds that
// have it). One process per rank, started by torchrun or scripts/launch, which
// describe the job in environment variables (docs/distributed.md).
//
// With world_size 1 there is no process group at all and every collective is the
// identity, so the trainer calls them unconditionally.
#pragma once

#include <torch/torch.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace flame {

// Where this process sits in the job: torchrun's RANK, WORLD_SIZE, LOCAL_RANK,
// MASTER_ADDR and MASTER_PORT.
struct DistEnv {
  int rank = 0, world_size = 1, local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
};

// Reads the job from the environment: none of the five variables set means a
// single process (the defaults above); some but not all set, or a bad value,
// throws flame::Error naming the variable.
DistEnv dist_env_from_environment();

// The same from explicit name -> value pairs (absent key = unset variable).
DistEnv dist_env_from_variables(const std::map<std::string, std::string>& variables);

// The process group of one training job. Every collective must be called by all
// ranks in the same order with matching arguments; failures (timeouts, a peer
// that died, mismatched shapes) throw flame::Error naming the rank and the
// operation. Results are deterministic and identical on all ranks.
class Distributed {
 public:
  // Joins the job: rank 0 serves a TCPStore at master_addr:master_port and all
  // ranks build the process group through it. `timeout` bounds the rendezvous
  // and every collective. `device` is where the trainer's tensors live; the
  // collectives take and return tensors on any device.
  static Distributed init(const DistEnv& env, torch::Device device = torch::kCPU,
                          std::chrono::seconds timeout = std::chrono::seconds(300));

  Distributed(Distributed&&) noexcept;
  Distributed& operator=(Distributed&&) noexcept;
  Distributed(const Distributed&) = delete;
  Distributed& operator=(const Distributed&) = delete;
  ~Distributed();

  int rank() const { return rank_; }
  int world_size() const { return world_size_; }
  int local_rank() const { return local_rank_; }
  bool is_main() const { return rank_ == 0; }
  // "gloo", "nccl", or "none" for a single process.
  const std::string& backend() const { return backend_; }

  // All ranks' `local` (same shape and dtype everywhere, at least 1-d)
  // concatenated on dim 0 in rank order. This rank's slice IS `local`, so
  // autograd flows to the local rows only; the other ranks' rows are constants
  // (OpenCLIP's gather_features with gather_with_grad=False).
  torch::Tensor gather_rows(const torch::Tensor& local);

  // Sums each tensor over the ranks, in place. Undefined tensors (parameters
  // without a gradient) are skipped; every rank must pass the same layout.
  // One collective per reduction dtype: bf16/fp16 are summed in fp32 and
  // rounded once.
  void all_reduce_sum_(const std::vector<torch::Tensor>& tensors);

  // Overwrites every defined tensor with root's, in place (one collective).
  void broadcast_(const std::vector<torch::Tensor>& tensors, int root = 0);

  // All ranks' values (same length everywhere) concatenated in rank order.
  std::vector<int64_t> all_gather_int64(const std::vector<int64_t>& values);

  double all_reduce_max(double value);
  double all_reduce_sum(double value);
  void barrier();

 private:
  struct Group;  // the c10d objects, kept out of this header

  Distributed() = default;
  void check_same_on_all_ranks(int64_t fingerprint, const char* op);
  std::vector<int64_t> gather_int64(const std::vector<int64_t>& values, const char* op);
  double reduce_scalar(double value, bool max, const char* op);

  int rank_ = 0, world_size_ = 1, local_rank_ = 0;
  std::string backend_ = "none";
  std::unique_ptr<Group> group_;
};

}  // namespace flame
