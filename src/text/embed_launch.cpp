#include "text/embed_launch.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <memory>

#include "text/store_parts.h"
#include "util/distributed.h"
#include "util/error.h"
#include "util/file.h"

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

// The merge replaces the store at --out: it must be this job's store (the
// same identity and inputs), as a single-process run into it requires, or
// the launched job would delete another prompt set's vectors. Read-only:
// every rank checks before it writes anything.
void check_launch_target(const std::filesystem::path& out, const StoreIdentity& identity,
                         const std::string& inputs_sha256) {
  const auto refuse = [&](const std::string& source, const StoreIdentity& existing) {
    const auto differences = identity_differences(existing, identity);
    if (!differences.empty()) {
      fail("{}: {} (a launched job would replace it; use another --out)", source,
           describe_differences(differences, "store", "this job uses"));
    }
  };
  if (!std::filesystem::is_directory(out)) return;
  const std::filesystem::path manifest_path = out / kManifestFile;
  if (std::filesystem::exists(manifest_path))
    refuse(out.string(), identity_from_json(read_json_file(manifest_path), manifest_path.string()));
  check_store_inputs(out, inputs_sha256, "a launched job would replace it; use another --out");
  // An unfinished single-process store: its shards would be deleted too.
  for (const auto& [id, path] : list_shard_files(out)) refuse(path.string(), open_store_shard(path).identity);
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
  o.before_writing = [out = options.out](const StoreIdentity& identity, const std::string& inputs_sha256) {
    check_launch_target(out, identity, inputs_sha256);
  };
  Distributed dist = Distributed::init(env, torch::kCPU, kWaitForOtherRanks);
  // One job per store: rank 0 holds --out's lock (as a single-process run
  // does) until the merge is done, so a second launch, or a single-process
  // run, on the same store fails fast naming the holder. Its failure ends
  // rank 0, whose closed connections fail the others' barrier at once.
  std::unique_ptr<DirectoryLock> lock;
  if (std::filesystem::exists(options.out) && !std::filesystem::is_directory(options.out))
    fail("--out '{}' exists and is not a folder", options.out.string());
  if (dist.is_main()) lock = std::make_unique<DirectoryLock>(options.out, "the store");
  dist.barrier();
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
