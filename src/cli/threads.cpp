#include <torch/torch.h>

#include <fmt/format.h>

#include <thread>

#include "cli/commands.h"

namespace flame::cli {

// More threads than this is a typo, not a machine: 100000 once spawned
// thousands of threads and never finished.
constexpr int kMaxThreads = 1024;

void add_threads_option(CLI::App& cmd, int* threads) {
  cmd.add_option("--threads", *threads,
                 fmt::format("CPU threads for torch, 1..{} (0 = all cores)", kMaxThreads))
      ->capture_default_str()
      ->check(CLI::Range(0, kMaxThreads));
}

void apply_threads(int threads) {
  // Torch defaults to one thread per physical core, which is 1 on these machines.
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  torch::set_num_threads(threads);
}

}  // namespace flame::cli
