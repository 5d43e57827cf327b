#include "text/store_parts.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include "util/error.h"
#include "util/file.h"

namespace flame::text {

namespace {

using nlohmann::json;

// A job record of a store ("job" in its manifest): what the job read. Parts
// written before it was recorded have none (unknown: not compared).
std::string job_string(const EmbeddingStore& store, const char* name) {
  const json& job = store.manifest().contains("job") ? store.manifest()["job"] : json(nullptr);
  if (!job.is_object() || !job.contains(name)) return "";
  return job[name].is_string() ? job[name].get<std::string>() : job[name].dump();
}

// The parts of one job must have read the same inputs (the same keys, files
// and field, and --limit): parts of two inputs merge into a store of neither,
// whose keys are unique and which would otherwise verify.
void check_same_inputs(const std::vector<EmbeddingStore>& stores, StoreCheckReport& report) {
  for (const char* name : {"inputs_sha256", "limit"}) {
    const EmbeddingStore* reference = nullptr;
    for (const auto& store : stores) {
      const std::string value = job_string(store, name);
      if (value.empty()) continue;
      if (reference == nullptr) {
        reference = &store;
      } else if (value != job_string(*reference, name)) {
        report.errors.push_back(fmt::format(
            "{} and {} were made from different inputs ({} {} vs {}; inputs {} vs {}): parts of one store "
            "must read the same inputs",
            reference->dir().string(), store.dir().string(), name, job_string(*reference, name), value,
            job_string(*reference, "inputs"), job_string(store, "inputs")));
      }
    }
  }
}

// What verify_stores checks, keeping the stores that opened for merge_stores.
StoreCheckReport check_parts(const std::vector<fs::path>& parts,
                             const std::vector<std::string>* expected_keys,
                             std::vector<EmbeddingStore>* opened) {
  StoreCheckReport report;
  if (parts.empty()) {
    report.errors.push_back("no stores given");
    return report;
  }
  for (const auto& dir : parts) {
    try {
      opened->push_back(EmbeddingStore::open(dir));
    } catch (const Error& e) {
      report.errors.push_back(e.what());
    }
  }
  if (opened->empty()) return report;

  const EmbeddingStore& first = opened->front();
  std::map<int, const EmbeddingStore*> by_index;
  for (const auto& store : *opened) {
    const auto differences = identity_differences(first.identity(), store.identity());
    if (!differences.empty()) {
      report.errors.push_back(
          describe_differences(differences, first.dir().string(), store.dir().string() + " with"));
    }
    if (store.part().count != first.part().count) {
      report.errors.push_back(fmt::format("{} is part {} of {}, but {} is part {} of {}",
                                          store.dir().string(), store.part().index, store.part().count,
                                          first.dir().string(), first.part().index, first.part().count));
      continue;
    }
    const auto [it, inserted] = by_index.emplace(store.part().index, &store);
    if (!inserted) {
      report.errors.push_back(fmt::format("part {} of {} is given twice: {} and {}", store.part().index,
                                          store.part().count, it->second->dir().string(),
                                          store.dir().string()));
    }
  }
  for (int i = 0; i < first.part().count; ++i) {
    if (by_index.count(i) == 0)
      report.errors.push_back(fmt::format("part {} of {} is missing", i, first.part().count));
  }
  check_same_inputs(*opened, report);

  std::unordered_map<std::string, int> times_seen;
  for (const auto& store : *opened) {
    report.count += store.size();
    for (const auto& key : store.keys()) {
      if (++times_seen[key] == 2) report.duplicate_keys.push_back(key);
    }
  }
  if (expected_keys != nullptr) {
    for (const auto& key : *expected_keys)
      if (times_seen.count(key) == 0) report.missing_keys.push_back(key);
  }
  return report;
}

// Hard-links `from` as `to`, or copies it (atomically) where links fail, e.g.
// across file systems.
void link_or_copy(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  fs::create_hard_link(from, to, ec);
  if (!ec) return;
  const fs::path tmp = temp_path_for(to);
  fs::copy_file(from, tmp, fs::copy_options::overwrite_existing);
  rename_durable(tmp, to);
}

}  // namespace

std::string StoreCheckReport::summary() const {
  std::vector<std::string> lines = errors;
  const auto first_few = [](const std::vector<std::string>& keys) {
    const size_t n = std::min<size_t>(keys.size(), 5);
    return fmt::format("'{}'{}", fmt::join(keys.begin(), keys.begin() + n, "', '"),
                       keys.size() > n ? ", ..." : "");
  };
  if (!missing_keys.empty())
    lines.push_back(fmt::format("{} keys missing: {}", missing_keys.size(), first_few(missing_keys)));
  if (!duplicate_keys.empty()) {
    lines.push_back(
        fmt::format("{} keys in more than one part: {}", duplicate_keys.size(), first_few(duplicate_keys)));
  }
  if (lines.empty()) return fmt::format("ok: {} embeddings", count);
  return fmt::format("{}", fmt::join(lines, "\n"));
}

// Every vector finite, and of unit norm when the store says it is normalised
// (1e-2: f16 / int8 storage): a NaN found here would otherwise surface as a
// training loss that blames the learning rate. Reads every vector once.
void check_values(const EmbeddingStore& store, StoreCheckReport& report) {
  constexpr int64_t kChunk = 4096;
  for (int64_t begin = 0; begin < store.size(); begin += kChunk) {
    std::vector<int64_t> rows(static_cast<size_t>(std::min(kChunk, store.size() - begin)));
    std::iota(rows.begin(), rows.end(), begin);
    const torch::Tensor values = store.gather(rows);  // [n, K, D] float32
    const torch::Tensor bad_rows = (~torch::isfinite(values)).flatten(1).any(1);
    const torch::Tensor norms = values.norm(2, -1);
    const torch::Tensor off_unit =
        store.identity().normalized ? ((norms - 1).abs() > 1e-2).any(1) : torch::zeros_like(bad_rows);
    const torch::Tensor zero_rows = (values == 0).all(-1).any(1);  // no direction: cannot be normalised
    for (const auto& [mask, what] :
         {std::pair{bad_rows, "NaN or inf values"}, std::pair{zero_rows, "an all-zero vector"},
          std::pair{off_unit, "a vector off unit norm"}}) {
      const torch::Tensor where = mask.nonzero();
      if (where.numel() == 0) continue;
      report.errors.push_back(fmt::format("{}: {} rows hold {} (first: key '{}')", store.dir().string(),
                                          where.numel(), what,
                                          store.keys()[begin + where[0].item<int64_t>()]));
      return;
    }
  }
}

// Each shard's vectors against the checksum recorded when it was written: a
// flipped bit that still reads as a finite number is caught here.
void check_checksums(const EmbeddingStore& store, StoreCheckReport& report) {
  for (const fs::path& path : store.shard_paths()) {
    try {
      check_shard_checksum(open_store_shard(path));
    } catch (const Error& e) {
      report.errors.push_back(e.what());
    }
  }
}

StoreCheckReport verify_stores(const std::vector<fs::path>& parts,
                               const std::vector<std::string>* expected_keys) {
  std::vector<EmbeddingStore> opened;
  StoreCheckReport report = check_parts(parts, expected_keys, &opened);
  for (const EmbeddingStore& store : opened) {
    check_checksums(store, report);
    check_values(store, report);
  }
  return report;
}

void merge_stores(const std::vector<fs::path>& parts, const fs::path& out, MergeTarget target) {
  std::vector<EmbeddingStore> stores;
  const StoreCheckReport report = check_parts(parts, nullptr, &stores);
  if (!report.ok()) fail("cannot merge into '{}':\n{}", out.string(), report.summary());
  // kReplaceStoreFiles: the launched job's rank 0 already holds the lock.
  std::unique_ptr<DirectoryLock> lock;
  if (target == MergeTarget::kEmptyDirectory) {
    const auto refuse_unless_empty = [&] {
      std::error_code error;  // a symlink loop or no permission: named, not a bare filesystem error
      const fs::file_status status = fs::status(out, error);
      if (error && error != std::errc::no_such_file_or_directory)
        fail("cannot merge into '{}': cannot read it: {}", out.string(), error.message());
      if (!fs::exists(status)) return;
      if (!fs::is_directory(out)) fail("cannot merge into '{}': it is not a folder", out.string());
      for (const auto& entry : fs::directory_iterator(out))
        if (entry.path().filename() != ".lock")
          fail("cannot merge into '{}': it exists and is not empty", out.string());
    };
    refuse_unless_empty();
    lock = std::make_unique<DirectoryLock>(out, "the store");  // a second merge into `out` fails fast
    refuse_unless_empty();                                     // filled while this one waited for the lock
  }
  fs::create_directories(out);
  if (target == MergeTarget::kReplaceStoreFiles) {
    fs::remove(out / kManifestFile);  // first: until the new one is written, `out` is no finished store
    for (const auto& [id, path] : list_shard_files(out)) fs::remove(path);
  }
  std::sort(stores.begin(), stores.end(),
            [](const EmbeddingStore& a, const EmbeddingStore& b) { return a.part().index < b.part().index; });

  json shards = json::array();
  json merged_from = json::array();
  int64_t next_id = 0;
  for (const auto& store : stores) {
    const auto& entries = store.manifest()["shards"];
    for (size_t s = 0; s < entries.size(); ++s) {
      const std::string name = shard_file_name(next_id++);
      link_or_copy(store.shard_paths()[s], out / name);
      shards.push_back({{"file", name}, {"count", entries[s]["count"]}});
    }
    merged_from.push_back({{"dir", fs::absolute(store.dir()).string()},
                           {"part", store.manifest()["part"]},
                           {"count", store.size()},
                           {"job", store.manifest().value("job", json::object())}});
  }
  json manifest = identity_to_json(stores.front().identity());
  manifest["count"] = report.count;
  manifest["part"] = PartSelection{}.to_json();  // a whole store
  manifest["shards"] = std::move(shards);
  manifest["job"] = {{"merged_from", std::move(merged_from)}};
  // The parts agree on what they read (check_parts): the store keeps it
  // (with the input paths of one part, for messages).
  for (const char* name : {"inputs", "inputs_sha256", "limit"})
    for (const auto& store : stores)
      if (const json& job = store.manifest().value("job", json::object());
          job.is_object() && job.contains(name))
        manifest["job"][name] = job[name];
  write_json_file_atomic(out / kManifestFile, manifest);
  EmbeddingStore::open(out);  // the result must read back
}

}  // namespace flame::text
