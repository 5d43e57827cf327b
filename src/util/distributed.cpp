#include "util/distributed.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
// PyPI's LibTorch ships no Gloo headers (scripts/setup installs Debian's
// libgloo-dev for them): without them only NCCL (CUDA) groups can be made.
#if __has_include(<gloo/algorithm.h>)
#define FLAME_HAVE_GLOO 1
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#include <torch/version.h>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <iterator>
#include <utility>

#include "util/error.h"
#include "util/strings.h"

namespace flame {

// The Gloo and NCCL groups derive from c10d::Backend.
using GroupBase = c10d::Backend;

// ---------------------------------------------------------------- environment

namespace {

constexpr const char* kEnvNames[] = {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"};

int parse_env_int(const std::string& name, const std::string& value, long min, long max) {
  const std::string text(trim(value));
  errno = 0;
  char* end = nullptr;
  const long parsed = text.empty() ? 0 : std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno == ERANGE || parsed < min || parsed > max) {
    fail("environment variable {}='{}': expected an integer in [{}, {}]", name, value, min, max);
  }
  return static_cast<int>(parsed);
}

}  // namespace

DistEnv dist_env_from_variables(const std::map<std::string, std::string>& variables) {
  DistEnv env;
  std::vector<std::string> missing;
  for (const char* name : kEnvNames)
    if (variables.count(name) == 0) missing.push_back(name);
  if (missing.size() == std::size(kEnvNames)) return env;  // not launched as a job: one process
  if (!missing.empty()) {
    std::string list;
    for (const auto& name : missing) list += (list.empty() ? "" : ", ") + name;
    fail(
        "environment variable {} not set: a distributed launch sets all of RANK, WORLD_SIZE, LOCAL_RANK, "
        "MASTER_ADDR, MASTER_PORT (use scripts/launch or torchrun)",
        list);
  }
  env.world_size = parse_env_int("WORLD_SIZE", variables.at("WORLD_SIZE"), 1, 1 << 20);
  env.rank = parse_env_int("RANK", variables.at("RANK"), 0, env.world_size - 1);
  env.local_rank = parse_env_int("LOCAL_RANK", variables.at("LOCAL_RANK"), 0, env.world_size - 1);
  env.master_addr = std::string(trim(variables.at("MASTER_ADDR")));
  if (env.master_addr.empty())
    fail("environment variable MASTER_ADDR is empty: expected a host name or address");
  env.master_port = parse_env_int("MASTER_PORT", variables.at("MASTER_PORT"), 1, 65535);
  return env;
}

DistEnv dist_env_from_environment() {
  std::map<std::string, std::string> variables;
  for (const char* name : kEnvNames)
    if (const char* value = std::getenv(name)) variables[name] = value;
  return dist_env_from_variables(variables);
}

// ---------------------------------------------------------------- process group

struct Distributed::Group {
  // Declared before pg so that it outlives it (the group talks through it).
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<GroupBase> pg;
  // Where the collectives' buffers live: CPU for Gloo, the GPU for NCCL.
  torch::Device comm_device = torch::kCPU;
};

namespace {

std::string describe(const std::exception& e) {
  // c10 errors carry a C++ backtrace in what(): too long for a message.
  if (const auto* c10_error = dynamic_cast<const c10::Error*>(&e)) return c10_error->what_without_backtrace();
  return e.what();
}

// Starts a collective and waits for it; any failure (Gloo's timeouts and closed
// connections included) becomes a flame::Error naming the rank and operation.
template <typename Start>
void run_collective(int rank, int world_size, const char* op, Start&& start) {
  try {
    c10::intrusive_ptr<c10d::Work> work = start();
    work->wait();
  } catch (const std::exception& e) {
    fail("distributed {} failed on rank {} of {}: {}", op, rank, world_size, describe(e));
  }
}

#ifdef FLAME_HAVE_GLOO
std::shared_ptr<::gloo::transport::Device> gloo_device(const std::string& master_addr) {
  if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname != nullptr && *ifname != '\0')
    return c10d::ProcessGroupGloo::createDeviceForInterface(ifname);
  // A loopback master means all ranks are on this machine: bind to loopback
  // too, whatever the host name resolves to. Otherwise bind to the address of
  // this host's name, as torch.distributed does.
  if (starts_with(master_addr, "127.") || master_addr == "localhost" || master_addr == "::1")
    return c10d::ProcessGroupGloo::createDeviceForHostname(master_addr);
  return c10d::ProcessGroupGloo::createDefaultDevice();
}
#endif

// FNV-1a over a sequence of integers: a cheap fingerprint of a tensor list's layout.
struct Fingerprint {
  uint64_t value = 1469598103934665603ull;
  void add(int64_t x) {
    for (int i = 0; i < 8; ++i) {
      value ^= (static_cast<uint64_t>(x) >> (8 * i)) & 0xff;
      value *= 1099511628211ull;
    }
  }
};

// The dtype a tensor is summed in: low-precision floats go through fp32 (rounded
// once at the end), types Gloo cannot sum are refused.
torch::ScalarType reduction_dtype(torch::ScalarType dtype) {
  switch (dtype) {
    case torch::kFloat:
    case torch::kBFloat16:
    case torch::kHalf: return torch::kFloat;
    case torch::kDouble: return torch::kDouble;
    case torch::kChar:
    case torch::kByte:
    case torch::kShort:
    case torch::kInt: return torch::kInt;
    case torch::kLong: return torch::kLong;
    default: fail("all_reduce_sum_: cannot sum tensors of dtype {}", c10::toString(dtype));
  }
}

// The raw bytes of a tensor as a flat uint8 tensor on `device`: collectives that
// only move data (gather, broadcast) are then exact for every dtype, bf16 included.
torch::Tensor as_bytes(const torch::Tensor& t, torch::Device device) {
  return t.detach().to(device).contiguous().reshape({-1}).view(torch::kByte);
}

int64_t byte_size(const torch::Tensor& t) {
  return t.numel() * static_cast<int64_t>(t.element_size());
}

constexpr int kMaxGatherDims = 8;

}  // namespace

Distributed Distributed::init(const DistEnv& env, torch::Device device, std::chrono::seconds timeout) {
  if (env.world_size < 1 || env.rank < 0 || env.rank >= env.world_size)
    fail("distributed init: rank {} is outside a world of size {}", env.rank, env.world_size);
  if (env.master_port < 1 || env.master_port > 65535)
    fail("distributed init: master port {} is outside [1, 65535]", env.master_port);

  Distributed dist;
  dist.rank_ = env.rank;
  dist.world_size_ = env.world_size;
  dist.local_rank_ = env.local_rank;
  if (env.world_size == 1) return dist;  // single process: no store, no group

  auto group = std::make_unique<Group>();
  try {
    c10d::TCPStoreOptions store_options;
    store_options.port = static_cast<uint16_t>(env.master_port);
    store_options.isServer = env.rank == 0;
    store_options.numWorkers = static_cast<size_t>(env.world_size);
    store_options.waitWorkers = true;  // rank 0 returns once every rank has connected
    store_options.timeout = timeout;
    auto tcp_store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, store_options);
    // A prefix leaves room for other groups on the same store later.
    group->store = c10::make_intrusive<c10d::PrefixStore>("flame/", tcp_store);

#ifdef USE_C10D_NCCL
    if (device.is_cuda()) {
      auto options = c10d::ProcessGroupNCCL::Options::create();
      options->timeout = timeout;
      group->pg =
          c10::make_intrusive<c10d::ProcessGroupNCCL>(group->store, env.rank, env.world_size, options);
      group->comm_device = device;
      dist.backend_ = "nccl";
    }
#endif
    // Gloo on CPU (a LibTorch without NCCL lands here for CUDA runs too: its
    // tensors are then copied to the CPU for every collective).
    if (!group->pg) {
#ifdef FLAME_HAVE_GLOO
      auto options = c10d::ProcessGroupGloo::Options::create(timeout);
      options->devices.push_back(gloo_device(env.master_addr));
      group->pg =
          c10::make_intrusive<c10d::ProcessGroupGloo>(group->store, env.rank, env.world_size, options);
      group->comm_device = torch::kCPU;
      dist.backend_ = "gloo";
#else
      fail("this build's LibTorch has no Gloo headers: only CUDA (NCCL) runs can be distributed");
#endif
    }
  } catch (const std::exception& e) {
    fail(
        "distributed init failed on rank {} of {} (store at {}:{}, timeout {} s): {}; did all {} ranks "
        "start, and can they reach the store?",
        env.rank, env.world_size, env.master_addr, env.master_port, timeout.count(), describe(e),
        env.world_size);
  }
  dist.group_ = std::move(group);
  return dist;
}

Distributed::Distributed(Distributed&&) noexcept = default;
Distributed& Distributed::operator=(Distributed&&) noexcept = default;
Distributed::~Distributed() = default;

// ---------------------------------------------------------------- collectives

std::vector<int64_t> Distributed::gather_int64(const std::vector<int64_t>& values, const char* op) {
  if (!group_) fail("distributed {}: the process group was moved away", op);
  if (values.empty()) return {};
  const torch::Tensor input =
      torch::tensor(values, torch::TensorOptions().dtype(torch::kLong)).to(group_->comm_device);
  std::vector<std::vector<torch::Tensor>> outputs(1);
  for (int r = 0; r < world_size_; ++r) outputs[0].push_back(torch::empty_like(input));
  std::vector<torch::Tensor> inputs{input};
  run_collective(rank_, world_size_, op, [&] { return group_->pg->allgather(outputs, inputs); });
  std::vector<int64_t> result;
  result.reserve(values.size() * static_cast<size_t>(world_size_));
  for (const torch::Tensor& part : outputs[0]) {
    const torch::Tensor cpu = part.to(torch::kCPU);
    result.insert(result.end(), cpu.data_ptr<int64_t>(), cpu.data_ptr<int64_t>() + cpu.numel());
  }
  return result;
}

void Distributed::check_same_on_all_ranks(int64_t fingerprint, const char* op) {
  const std::vector<int64_t> all = gather_int64({fingerprint}, op);
  for (int r = 1; r < world_size_; ++r) {
    if (all[r] != all[0])
      fail(
          "distributed {} failed on rank {} of {}: rank {} passed a different tensor list (count, dtypes, "
          "shapes or undefined entries) than rank 0",
          op, rank_, world_size_, r);
  }
}

torch::Tensor Distributed::gather_rows(const torch::Tensor& local) {
  if (!local.defined() || local.dim() < 1)
    fail("gather_rows: expected a tensor with at least one dimension on rank {}", rank_);
  if (world_size_ == 1) return local;

  // Shapes first, so that a mismatch is an error on every rank instead of a hang
  // or garbage. Fixed length: [dtype, dim, sizes padded with -1].
  std::vector<int64_t> description(kMaxGatherDims + 2, -1);
  description[0] = static_cast<int64_t>(local.scalar_type());
  description[1] = local.dim();
  for (int64_t d = 0; d < std::min<int64_t>(local.dim(), kMaxGatherDims); ++d)
    description[d + 2] = local.size(d);
  const std::vector<int64_t> all = gather_int64(description, "gather_rows (shape check)");
  const auto describe_rank = [&](int r) {
    const int64_t* row = all.data() + static_cast<size_t>(r) * description.size();
    std::string sizes;
    for (int64_t d = 0; d < std::min<int64_t>(row[1], kMaxGatherDims); ++d)
      sizes += (d == 0 ? "" : ", ") + std::to_string(row[d + 2]);
    return fmt::format("{} [{}]", c10::toString(static_cast<torch::ScalarType>(row[0])), sizes);
  };
  for (int r = 0; r < world_size_; ++r) {
    if (!std::equal(all.begin(), all.begin() + description.size(), all.begin() + r * description.size()))
      fail(
          "distributed gather_rows failed on rank {} of {}: rank 0 has {} but rank {} has {} (all ranks must "
          "pass the same shape and dtype)",
          rank_, world_size_, describe_rank(0), r, describe_rank(r));
  }
  if (local.dim() > kMaxGatherDims)
    fail("gather_rows: at most {} dimensions, got {}", kMaxGatherDims, local.dim());

  const torch::Tensor input = as_bytes(local, group_->comm_device);
  std::vector<std::vector<torch::Tensor>> outputs(1);
  for (int r = 0; r < world_size_; ++r) outputs[0].push_back(torch::empty_like(input));
  std::vector<torch::Tensor> inputs{input};
  run_collective(rank_, world_size_, "gather_rows", [&] { return group_->pg->allgather(outputs, inputs); });

  std::vector<torch::Tensor> parts;
  for (int r = 0; r < world_size_; ++r) {
    parts.push_back(
        r == rank_ ? local : outputs[0][r].view(local.scalar_type()).view(local.sizes()).to(local.device()));
  }
  return torch::cat(parts, 0);
}

void Distributed::all_reduce_sum_(const std::vector<torch::Tensor>& tensors) {
  if (world_size_ == 1) return;
  torch::NoGradGuard no_grad;  // parameters and their gradients are leaves

  Fingerprint layout;
  layout.add(static_cast<int64_t>(tensors.size()));
  // Tensors grouped by reduction dtype, groups in order of first appearance
  // (the same on all ranks, since the layouts match).
  std::vector<std::pair<torch::ScalarType, std::vector<size_t>>> groups;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const torch::Tensor& t = tensors[i];
    layout.add(t.defined() ? t.numel() : -1);
    if (!t.defined()) continue;
    layout.add(static_cast<int64_t>(t.scalar_type()));
    const torch::ScalarType dtype = reduction_dtype(t.scalar_type());
    auto it = std::find_if(groups.begin(), groups.end(), [&](const auto& g) { return g.first == dtype; });
    if (it == groups.end()) it = groups.emplace(groups.end(), dtype, std::vector<size_t>{});
    it->second.push_back(i);
  }
  check_same_on_all_ranks(static_cast<int64_t>(layout.value), "all_reduce_sum_ (layout check)");

  for (const auto& [dtype, indices] : groups) {
    std::vector<torch::Tensor> flat;
    for (size_t i : indices) flat.push_back(tensors[i].detach().reshape({-1}).to(group_->comm_device, dtype));
    std::vector<torch::Tensor> buffer{torch::cat(flat)};
    c10d::AllreduceOptions options;
    options.reduceOp = c10d::ReduceOp::SUM;
    run_collective(rank_, world_size_, "all_reduce_sum_",
                   [&] { return group_->pg->allreduce(buffer, options); });
    int64_t offset = 0;
    for (size_t i : indices) {
      const torch::Tensor& t = tensors[i];
      t.copy_(buffer[0].slice(0, offset, offset + t.numel()).view(t.sizes()));
      offset += t.numel();
    }
  }
}

void Distributed::broadcast_(const std::vector<torch::Tensor>& tensors, int root) {
  if (root < 0 || root >= world_size_)
    fail("broadcast_: root {} is outside a world of size {}", root, world_size_);
  if (world_size_ == 1) return;
  torch::NoGradGuard no_grad;

  // All tensors travel as bytes in one buffer; each starts at a multiple of 16
  // bytes so that its slice can be viewed back as its own dtype.
  Fingerprint layout;
  layout.add(static_cast<int64_t>(tensors.size()));
  layout.add(root);
  std::vector<int64_t> offsets(tensors.size(), -1);
  int64_t total = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const torch::Tensor& t = tensors[i];
    layout.add(t.defined() ? t.numel() : -1);
    if (!t.defined()) continue;
    layout.add(static_cast<int64_t>(t.scalar_type()));
    offsets[i] = total;
    total += (byte_size(t) + 15) / 16 * 16;
  }
  check_same_on_all_ranks(static_cast<int64_t>(layout.value), "broadcast_ (layout check)");
  if (total == 0) return;

  std::vector<torch::Tensor> buffer{
      torch::empty({total}, torch::TensorOptions().dtype(torch::kByte).device(group_->comm_device))};
  if (rank_ == root) {
    for (size_t i = 0; i < tensors.size(); ++i)
      if (offsets[i] >= 0)
        buffer[0]
            .slice(0, offsets[i], offsets[i] + byte_size(tensors[i]))
            .copy_(as_bytes(tensors[i], group_->comm_device));
  }
  c10d::BroadcastOptions options;
  options.rootRank = root;
  run_collective(rank_, world_size_, "broadcast_", [&] { return group_->pg->broadcast(buffer, options); });
  if (rank_ == root) return;
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (offsets[i] < 0) continue;
    const torch::Tensor& t = tensors[i];
    t.copy_(buffer[0].slice(0, offsets[i], offsets[i] + byte_size(t)).view(t.scalar_type()).view(t.sizes()));
  }
}

std::vector<int64_t> Distributed::all_gather_int64(const std::vector<int64_t>& values) {
  if (world_size_ == 1) return values;
  const std::vector<int64_t> lengths =
      gather_int64({static_cast<int64_t>(values.size())}, "all_gather_int64 (length check)");
  for (int r = 1; r < world_size_; ++r) {
    if (lengths[r] != lengths[0])
      fail(
          "distributed all_gather_int64 failed on rank {} of {}: rank 0 passed {} values but rank {} passed "
          "{}",
          rank_, world_size_, lengths[0], r, lengths[r]);
  }
  return gather_int64(values, "all_gather_int64");
}

double Distributed::reduce_scalar(double value, bool max, const char* op) {
  if (world_size_ == 1) return value;
  if (!group_) fail("distributed {}: the process group was moved away", op);
  std::vector<torch::Tensor> buffer{
      torch::full({1}, value, torch::TensorOptions().dtype(torch::kDouble)).to(group_->comm_device)};
  c10d::AllreduceOptions options;
  options.reduceOp = max ? c10d::ReduceOp::MAX : c10d::ReduceOp::SUM;
  run_collective(rank_, world_size_, op, [&] { return group_->pg->allreduce(buffer, options); });
  return buffer[0].item<double>();
}

double Distributed::all_reduce_max(double value) {
  return reduce_scalar(value, true, "all_reduce_max");
}
double Distributed::all_reduce_sum(double value) {
  return reduce_scalar(value, false, "all_reduce_sum");
}

void Distributed::barrier() {
  if (world_size_ == 1) return;
  if (!group_) fail("distributed barrier: the process group was moved away");
  run_collective(rank_, world_size_, "barrier", [&] { return group_->pg->barrier(); });
}

}  // namespace flame
