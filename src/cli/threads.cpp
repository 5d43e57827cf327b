#include <torch/torch.h>

#include <thread>

#include "cli/commands.h"

namespace flame::cli {

void add_threads_option(CLI::App& cmd, int* threads) {
  cmd.add_option("--threads", *threads, "CPU threads for torch (0 = all cores)")->capture_default_str();
}

void apply_threads(int threads) {
  // Torch defaults to one thread per physical core, which is 1 on these machines.
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  torch::set_num_threads(threads);
}

}  // namespace flame::cli
