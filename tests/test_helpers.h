// Shared test fixtures: a fresh temporary directory per test, paths to the
// shared data, and tiny random checkpoints generated once per test binary.
#pragma once

#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>

#include "llm/random_checkpoint.h"
#include "util/error.h"

namespace flame::test {

namespace fs = std::filesystem;

inline fs::path shared_dir() {
  return fs::path(FLAME_SHARED_DIR);
}
inline fs::path smollm_tokenizer_dir() {
  return shared_dir() / "tokenizers" / "smollm";
}
inline fs::path llama_cpp_vocab_dir() {
  return shared_dir() / "tokenizers" / "llama.cpp-vocab";
}
inline fs::path test_data_dir() {
  return fs::path(FLAME_TEST_DATA_DIR);
}

// Root for temporary files of this test binary: $FLAME_TEST_TMP, else the
// build folder's tests/tmp (never a system-wide folder another checkout's
// tests would also clear).
inline fs::path temp_root() {
  const char* env = std::getenv("FLAME_TEST_TMP");
  fs::path root = env != nullptr ? fs::path(env) : fs::path(FLAME_TEST_TMP_DIR);
  fs::create_directories(root);
  return root;
}

// A fresh, empty directory named after the running test.
inline fs::path fresh_temp_dir(const std::string& tag = "") {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = info != nullptr ? std::string(info->test_suite_name()) + "." + info->name() : "test";
  for (char& c : name)
    if (c == '/') c = '_';
  const fs::path dir = temp_root() / (name + tag);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// A tiny random checkpoint (cached on disk per arch/dtype/seed for this build).
inline fs::path tiny_checkpoint(const std::string& arch = "llama", const std::string& dtype = "f32",
                                uint64_t seed = 7) {
  const fs::path dir = temp_root() / "checkpoints" / (arch + "-" + dtype + "-" + std::to_string(seed));
  if (!fs::exists(dir / "config.json")) {
    llm::RandomCheckpointOptions options;
    options.arch = arch;
    options.preset = "tiny";
    options.tokenizer_dir = smollm_tokenizer_dir();
    options.seed = seed;
    options.dtype = dtype;
    const fs::path tmp = dir.string() + ".tmp" + std::to_string(::getpid());
    llm::make_random_checkpoint(options, tmp);
    fs::create_directories(dir.parent_path());
    std::error_code ec;
    fs::rename(tmp, dir, ec);  // another test process may have won the race
    if (ec) fs::remove_all(tmp);
  }
  return dir;
}

// The message of the flame::Error that `f` throws; "" when it throws none.
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// Exit status (-1 if killed by a signal) and stdout of a shell command (add
// 2>&1 to the command for stderr too).
struct CommandResult {
  int status;
  std::string output;
};
inline CommandResult run_command(const std::string& command) {
  FILE* pipe = ::popen(command.c_str(), "r");
  std::string output;
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) output.append(buf.data(), n);
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

inline bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace flame::test
