// Helpers shared by the benchmark programs: argument parsing, machine and
// load description, peak memory, child processes, cached random checkpoints.
#pragma once

#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>

#include "llm/random_checkpoint.h"
#include "util/error.h"
#include "util/file.h"

namespace flame::bench {

namespace fs = std::filesystem;

using Clock = std::chrono::steady_clock;
inline double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// A field of /proc/self/status in MiB (VmRSS, VmHWM).
inline double status_mib(const std::string& field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::stod(line.substr(field.size() + 1)) / 1024.0;
  }
  return 0;
}

inline std::string command_output(const std::string& cmd) {
  std::string out;
  FILE* pipe = popen(cmd.c_str(), "r");
  if (pipe == nullptr) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  if (pclose(pipe) != 0) fail("command failed: {}\n{}", cmd, out);
  return out;
}

struct Args {
  std::map<std::string, std::string> kv;
  std::string get(const std::string& k, const std::string& d = "") const {
    auto it = kv.find(k);
    return it == kv.end() ? d : it->second;
  }
  int64_t num(const std::string& k, int64_t d) const { return kv.count(k) ? std::stoll(kv.at(k)) : d; }
  double real(const std::string& k, double d) const { return kv.count(k) ? std::stod(kv.at(k)) : d; }
  bool flag(const std::string& k) const { return kv.count(k) != 0; }
};

// The command line of a benchmark: `--key value` or `--flag`. `usage` is its
// --help text (the first word is the program); an option not named in `known`
// is refused before any long run starts. `--help` prints `usage` and exits.
inline Args parse_args(int argc, char** argv, const std::string& usage, const std::set<std::string>& known) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    if (k.rfind("--", 0) != 0) fail("unexpected argument '{}'\nusage: {}", k, usage);
    k = k.substr(2);
    if (k == "help") {
      fmt::print("usage: {}\n", usage);
      std::exit(0);
    }
    if (known.count(k) == 0 && k != "no-write") fail("unknown option --{}\nusage: {}", k, usage);
    if (i + 1 < argc && std::string(argv[i + 1]).rfind("--", 0) != 0)
      a.kv[k] = argv[++i];
    else
      a.kv[k] = "1";
  }
  return a;
}

// Prints a benchmark's Markdown report and, unless --no-write was given,
// writes it as bench/results/<name>.
inline void publish(const Args& args, const std::string& name, const std::string& markdown) {
  fmt::print("{}", markdown);
  if (args.flag("no-write")) return;
  const fs::path out = fs::path(FLAME_BENCH_RESULTS_DIR) / name;
  write_file_atomic(out, markdown);
  fmt::print("wrote {}\n", out.string());
}

inline fs::path checkpoint_dir(const fs::path& cache, const std::string& preset) {
  return cache / (preset + "-bf16");
}

// A random checkpoint of `preset` with the SmolLM tokenizer, made once per cache.
inline void ensure_checkpoint(const fs::path& cache, const std::string& preset) {
  const fs::path dir = checkpoint_dir(cache, preset);
  if (fs::exists(dir / "config.json") && fs::exists(dir / "tokenizer.json")) return;
  fmt::print(stderr, "generating {} (random weights, bf16) in {}\n", preset, dir.string());
  fs::remove_all(dir);
  llm::RandomCheckpointOptions o;
  o.preset = preset;
  o.tokenizer_dir = fs::path(FLAME_SHARED_DIR) / "tokenizers" / "smollm";  // the SmolLM tokenizer (49152 ids)
  o.dtype = "bf16";
  o.seed = 1;
  const fs::path tmp = dir.string() + ".tmp";
  fs::remove_all(tmp);
  llm::make_random_checkpoint(o, tmp);
  fs::rename(tmp, dir);
}

inline std::string load_average() {  // 1, 5 and 15 minute load averages: other work on the machine
  std::ifstream in("/proc/loadavg");
  double a = 0, b = 0, c = 0;
  in >> a >> b >> c;
  return fmt::format("{:.2f} {:.2f} {:.2f}", a, b, c);
}

inline std::string machine_line() {
  std::string model = "unknown CPU";
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      model = line.substr(line.find(':') + 2);
      break;
    }
  }
  return fmt::format("{}, {} logical CPUs online", model, sysconf(_SC_NPROCESSORS_ONLN));
}

}  // namespace flame::bench
