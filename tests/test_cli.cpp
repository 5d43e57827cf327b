// The flame executable: help, version, exit codes and error messages.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <string>

#include "test_helpers.h"

namespace flame::test {
namespace {

struct Run {
  int status;
  std::string output;  // stdout + stderr
};

Run run_cli(const std::string& args) {
  const std::string command = std::string(FLAME_CLI_PATH) + " " + args + " 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  std::string output;
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) output.append(buf.data(), n);
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

TEST(Cli, HelpListsTheCommands) {
  const auto r = run_cli("--help");
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.output.find("llm"), std::string::npos) << r.output;
  const auto llm = run_cli("llm --help");
  EXPECT_EQ(llm.status, 0);
  for (const char* sub : {"info", "make-random"}) EXPECT_NE(llm.output.find(sub), std::string::npos) << sub;
}

TEST(Cli, VersionPrintsTheProjectVersion) {
  const auto r = run_cli("--version");
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.output, std::string("flame ") + FLAME_VERSION + "\n");
}

TEST(Cli, MakeRandomThenInfo) {
  const auto dir = fresh_temp_dir() / "ckpt";
  const auto made = run_cli("llm make-random --arch qwen2 --preset tiny --dtype f32 --seed 5 --shard-size 2MB --tokenizer " +
                            smollm_tokenizer_dir().string() + " " + dir.string());
  ASSERT_EQ(made.status, 0) << made.output;
  EXPECT_TRUE(fs::exists(dir / "model.safetensors.index.json"));
  const auto info = run_cli("llm info " + dir.string());
  ASSERT_EQ(info.status, 0) << info.output;
  EXPECT_NE(info.output.find("Qwen2ForCausalLM"), std::string::npos) << info.output;
  EXPECT_NE(info.output.find("heads           4 query, 1 key/value, head dim 16"), std::string::npos) << info.output;
}

TEST(Cli, BadInputGivesAClearErrorAndExitCode) {
  const auto dir = fresh_temp_dir();
  const auto r = run_cli("llm info " + dir.string());
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.output.find("flame: error: no config.json at"), std::string::npos) << r.output;
  const auto level = run_cli("--log-level loud llm info " + dir.string());
  EXPECT_EQ(level.status, 1);
  EXPECT_NE(level.output.find("unknown log level 'loud'"), std::string::npos) << level.output;
  const auto missing = run_cli("llm");
  EXPECT_NE(missing.status, 0);
}

}  // namespace
}  // namespace flame::test
