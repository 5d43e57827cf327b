#include "text/embed_launch.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <chrono>

#include "text/store_parts.h"
#include "util/distributed.h"
#include "util/error.h"

namespace flame::text {

namespace {

// Ranks finish their parts at different times, hours apart on a big job: the
// rendezvous and the wait for the others may take this long. A rank that dies
// does not make the others wait it out (its connections close, and torchrun
// or scripts/launch stop the job).
constexpr std::chrono::hours kWaitForOtherRanks{7 * 24};

std::filesystem::path part_dir(const std::filesystem::path& out, const PartSelection& part) {
  return out / "parts" / fmt::format("part-{:04}-of-{:04}", part.index, part.count);
}

}  // namespace

EmbedJobSummary run_embed(const EmbedJobOptions& options) {
  const DistEnv env = dist_env_from_environment();
  if (env.world_size == 1) return run_embed_job(options);
  if (!(options.part == PartSelection{})) {
    fail("{} and torchrun's RANK/WORLD_SIZE both choose a part: give only one", kPartFlags);
  }
  EmbedJobOptions o = options;
  o.part = PartSelection{env.rank, env.world_size};
  o.out = part_dir(options.out, o.part);
  if (o.device == "cuda") o.device = fmt::format("cuda:{}", env.local_rank);
  o.progress = options.progress && env.rank == 0;
  Distributed dist = Distributed::init(env, torch::kCPU, kWaitForOtherRanks);
  EmbedJobSummary summary = run_embed_job(o);
  dist.barrier();  // every part has its manifest
  if (dist.is_main()) {
    std::vector<std::filesystem::path> parts;
    for (int r = 0; r < env.world_size; ++r) parts.push_back(part_dir(options.out, {r, env.world_size}));
    merge_stores(parts, options.out, MergeTarget::kReplaceStoreFiles);
    spdlog::info("{} parts verified and linked into {}", parts.size(), options.out.string());
  }
  dist.barrier();  // no rank reports success before the store exists
  summary.store = options.out;
  return summary;
}

}  // namespace flame::text
