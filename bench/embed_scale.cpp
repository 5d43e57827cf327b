// `flame embed` at scale, on CPU: peak memory and throughput of the streaming
// job over 20k and 200k synthetic captions (a tiny random Llama, the `raw`
// prompt set), one process against `scripts/launch --nproc 2` (same store
// content), and what naming the LLM costs at start-up on the Qwen2.5-0.5B
// shape: a SHA-256 of every weight byte (the identity before) against the
// sampled fingerprint (llm/checkpoint_identity.h). Writes
// bench/results/embed_scale.md.
//
//   embed_scale [--cache DIR] [--sizes 20000,200000] [--no-write]
#include <fmt/format.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <iostream>
#include <sstream>

#include "bench_util.h"
#include "llm/checkpoint_identity.h"
#include "llm/weights.h"
#include "text/embedding_store.h"
#include "util/file.h"
#include "util/hash.h"
#include "util/strings.h"

using namespace flame;
using namespace flame::bench;

namespace {

struct ChildRun {
  double seconds = 0;
  double peak_rss_mib = 0;  // the largest of the process tree's processes
};

// Runs argv to completion. Peak RSS from wait4: Linux reports the largest of
// the child and the descendants it waited for (scripts/launch's ranks).
ChildRun run_child(const std::vector<std::string>& argv, const std::string& log_path) {
  const auto t0 = Clock::now();
  const pid_t pid = fork();
  if (pid < 0) fail("fork failed");
  if (pid == 0) {
    FILE* log = std::fopen(log_path.c_str(), "w");
    if (log != nullptr) {
      dup2(fileno(log), 1);
      dup2(fileno(log), 2);
    }
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  int status = 0;
  struct rusage usage {};
  wait4(pid, &status, 0, &usage);
  ChildRun r;
  r.seconds = seconds_since(t0);
  r.peak_rss_mib = static_cast<double>(usage.ru_maxrss) / 1024.0;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) fail("'{}' failed; see {}", argv[0], log_path);
  return r;
}

// n JSONL records of ~25 words from a fixed vocabulary, keyed 0..n-1.
void write_captions(const fs::path& path, int64_t n) {
  static const std::vector<std::string> words = {
      "a",     "dog",  "runs", "across", "the",  "green", "field", "while", "two",    "children",
      "watch", "from", "red",  "bench",  "near", "old",   "tree",  "under", "bright", "sky"};
  std::ostringstream out;
  uint64_t state = 12345;
  for (int64_t i = 0; i < n; ++i) {
    std::string text;
    for (int w = 0; w < 25; ++w) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      text += (w ? " " : "") + words[(state >> 33) % words.size()];
    }
    out << fmt::format("{{\"key\": \"img{:07}\", \"raw\": \"{}\"}}\n", i, text);
  }
  write_file_atomic(path, out.str());
}

bool same_stores(const fs::path& a, const fs::path& b, double* max_difference) {
  const auto x = text::EmbeddingStore::open(a), y = text::EmbeddingStore::open(b);
  if (x.size() != y.size()) return false;
  std::vector<int64_t> rows;
  for (const auto& key : x.keys()) {
    const auto row = y.index_of(key);
    if (!row) return false;
    rows.push_back(*row);
  }
  std::vector<int64_t> all(static_cast<size_t>(x.size()));
  for (int64_t i = 0; i < x.size(); ++i) all[static_cast<size_t>(i)] = i;
  *max_difference = (x.gather(all) - y.gather(rows)).abs().max().item<double>();
  return true;
}

}  // namespace

int main(int argc, char** argv) try {
  const Args a = parse_args(argc, argv, "embed_scale [--cache DIR] [--sizes 20000,200000] [--no-write]",
                            {"cache", "sizes"});
  const fs::path cache = a.get("cache", (fs::temp_directory_path() / "flame-bench-llm").string());
  const fs::path work = cache / "embed_scale";
  fs::remove_all(work);
  fs::create_directories(work);
  const std::string load_start = load_average();
  const auto wall0 = Clock::now();
  const std::string flame = FLAME_CLI_PATH, launch = std::string(FLAME_SOURCE_DIR) + "/scripts/launch";

  // A tiny Llama with the SmolLM tokenizer.
  const fs::path tiny = work / "tiny";
  run_child({flame, "llm", "make-random", "--preset", "tiny", "--tokenizer",
             std::string(FLAME_SHARED_DIR) + "/tokenizers/smollm", "--seed", "1", tiny.string()},
            (work / "make-tiny.log").string());

  struct Row {
    int64_t captions;
    std::string how;
    ChildRun run;
    std::string same;
  };
  std::vector<Row> rows;
  for (const std::string& size : split(a.get("sizes", "20000,200000"), ',')) {
    const int64_t n = std::stoll(size);
    const fs::path input = work / fmt::format("captions-{}.jsonl", n);
    write_captions(input, n);
    const std::vector<std::string> common = {
        "--llm",        tiny.string(), "--prompts", "raw",       "--input",
        input.string(), "--dtype",     "f32",       "--threads", "2"};
    std::vector<std::string> single = {flame, "embed"};
    single.insert(single.end(), common.begin(), common.end());
    const fs::path single_out = work / fmt::format("single-{}", n);
    single.insert(single.end(), {"--out", single_out.string()});
    Row one{n, "1 process", run_child(single, (work / fmt::format("single-{}.log", n)).string()), ""};
    fmt::print(stderr, "{} captions, 1 process: {:.1f} s, {:.0f} MiB\n", n, one.run.seconds,
               one.run.peak_rss_mib);
    rows.push_back(one);

    std::vector<std::string> two = {launch, "--nproc", "2", "--", flame, "embed"};
    two.insert(two.end(), common.begin(), common.end());
    two.back() = "1";  // --threads 1 per rank: the two ranks share the 2 cores
    const fs::path two_out = work / fmt::format("launch2-{}", n);
    two.insert(two.end(), {"--out", two_out.string()});
    Row ranks{n, "scripts/launch --nproc 2",
              run_child(two, (work / fmt::format("launch2-{}.log", n)).string()), ""};
    double difference = 0;
    const bool same = same_stores(single_out, two_out, &difference);
    ranks.same =
        same ? fmt::format("same keys; largest abs difference {:.1e}", difference) : "**different keys**";
    fmt::print(stderr, "{} captions, 2 ranks: {:.1f} s, {:.0f} MiB, {}\n", n, ranks.run.seconds,
               ranks.run.peak_rss_mib, ranks.same);
    rows.push_back(ranks);
  }

  // Naming the LLM at start-up, Qwen2.5-0.5B shape.
  ensure_checkpoint(cache, "qwen2.5-0.5b");
  const fs::path qwen = checkpoint_dir(cache, "qwen2.5-0.5b");
  uint64_t weight_bytes = 0;
  auto t0 = Clock::now();
  {
    const llm::WeightFiles files(qwen);
    for (const auto& f : files.files()) {
      sha256_file_hex(f->path());
      weight_bytes += fs::file_size(f->path());
    }
  }
  const double full_hash = seconds_since(t0);
  t0 = Clock::now();
  const llm::CheckpointIdentity identity = llm::checkpoint_identity(qwen);
  const double sampled = seconds_since(t0);

  std::ostringstream md;
  md << "# flame embed at scale (CPU)\n\n"
     << "Generated by `bench/embed_scale.cpp`.\n\n"
     << fmt::format("- Machine: {}. Load average (1/5/15 min) at start {}, at end {}; wall time {:.0f} s.\n",
                    machine_line(), load_start, load_average(), seconds_since(wall0))
     << fmt::format("- Command: `bench/embed_scale --sizes {}` (from the build directory).\n",
                    a.get("sizes", "20000,200000"))
     << "- Job: `flame embed --prompts raw --dtype f32` with a tiny random Llama (hidden 64, 3 layers) and "
        "the "
        "SmolLM tokenizer over synthetic JSONL captions of 25 words; store shards of 1024 captions. The "
        "model is "
        "tiny on purpose: what is measured is the job around it (reading, tokenizing, writing, memory).\n"
     << "- Peak RSS: the largest process (for 2 ranks: the larger rank). Flat memory means it does not grow "
        "with "
        "the number of captions beyond the keys each part remembers.\n\n"
     << "| captions | run | s | captions/s | peak RSS MiB | store vs 1 process "
        "|\n|---:|---|---:|---:|---:|---|\n";
  for (const Row& r : rows) {
    md << fmt::format("| {} | {} | {:.1f} | {:.0f} | {:.0f} | {} |\n", r.captions, r.how, r.run.seconds,
                      r.captions / r.run.seconds, r.run.peak_rss_mib, r.same.empty() ? "-" : r.same);
  }
  md << fmt::format(
      "\n## Naming the LLM at start-up (Qwen2.5-0.5B shape, {:.0f} MiB of bf16 weights)\n\n"
      "| identity | reads | s |\n|---|---:|---:|\n"
      "| before: SHA-256 of every weight byte | {:.0f} MiB | {:.2f} |\n"
      "| now: headers + 64 x 16 KiB samples per file | {:.2f} MiB | {:.3f} |\n\n"
      "For Mistral-Nemo-12B (24.5 GB in 5 files) the full hash reads 24.5 GB at every start and resume; the "
      "fingerprint reads about 5 MiB.\n",
      weight_bytes / 1048576.0, weight_bytes / 1048576.0, full_hash, identity.bytes_hashed / 1048576.0,
      sampled);
  publish(a, "embed_scale.md", md.str());
  return 0;
} catch (const std::exception& e) {
  fmt::print(stderr, "embed_scale: {}\n", e.what());
  return 1;
}
