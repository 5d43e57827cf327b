// The flame executable: help, version, exit codes and error messages.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <string>

#include "test_helpers.h"
#include "util/file.h"

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
  const auto made = run_cli(
      "llm make-random --arch qwen2 --preset tiny --dtype f32 --seed 5 --shard-size 2MB --tokenizer " +
      smollm_tokenizer_dir().string() + " " + dir.string());
  ASSERT_EQ(made.status, 0) << made.output;
  EXPECT_TRUE(fs::exists(dir / "model.safetensors.index.json"));
  const auto info = run_cli("llm info " + dir.string());
  ASSERT_EQ(info.status, 0) << info.output;
  EXPECT_NE(info.output.find("Qwen2ForCausalLM"), std::string::npos) << info.output;
  EXPECT_NE(info.output.find("heads           4 query, 1 key/value, head dim 16"), std::string::npos)
      << info.output;
}

// The CLIP baseline through the command line: train flags, eval without --llm,
// and interpret refusing a checkpoint whose space has no words.
TEST(Cli, ClipBaselineTrainsAndEvaluates) {
  const fs::path dir = fresh_temp_dir();
  const fs::path data = shared_dir() / "data";
  const std::string captions = (data / "flickr8k" / "captions.tsv").string();
  const auto trained = run_cli("train --text-tower clip --clip-text clip-text-micro --captions " + captions +
                               " --caption-join --model vit-micro-32 --images " + captions + " --image-dir " +
                               (data / "flickr8k" / "images").string() + " --split " +
                               (data / "flickr8k" / "splits" / "train.txt").string() + " --out " +
                               (dir / "run").string() + " --steps 2 --batch-size 4 --workers 1");
  ASSERT_EQ(trained.status, 0) << trained.output;
  EXPECT_NE(trained.output.find("of the 8 captions trained on"), std::string::npos) << trained.output;
  EXPECT_NE(trained.output.find("were cut to the text tower's 77 tokens"), std::string::npos)
      << trained.output;
  EXPECT_NE(trained.output.find("\"truncated_captions\":"), std::string::npos) << trained.output;
  const auto evaluated =
      run_cli("eval --model " + (dir / "run").string() +
              " --benchmark cifar10 --tasks cifar10-zero-shot --limit 10 --data-root " + data.string());
  ASSERT_EQ(evaluated.status, 0) << evaluated.output;
  EXPECT_NE(evaluated.output.find("| cifar10-zero-shot | zero-shot | 10 |"), std::string::npos)
      << evaluated.output;
  const auto interpreted = run_cli("interpret --model " + (dir / "run").string() + " --llm " + dir.string() +
                                   " --out " + (dir / "interpret").string() + " " +
                                   (data / "flickr8k" / "images" / "1000268201_693b08cb0e.jpg").string());
  EXPECT_EQ(interpreted.status, 1);
  EXPECT_NE(interpreted.output.find("is a CLIP baseline"), std::string::npos) << interpreted.output;
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

// train's choices are parsed once, where they are read: a bad name fails
// before any work, naming the option (or config field) and the names allowed.
TEST(Cli, TrainRefusesAnUnknownChoice) {
  const auto dir = fresh_temp_dir();
  const auto tower = run_cli("train --text-tower bert --images x.tsv --out " + (dir / "run").string());
  EXPECT_EQ(tower.status, 1);
  EXPECT_NE(tower.output.find("flame: error: train: --text-tower must be llm or clip, not 'bert'"),
            std::string::npos)
      << tower.output;
  const auto precision = run_cli("train --precision fp16 --images x.tsv --out " + (dir / "run").string());
  EXPECT_EQ(precision.status, 1);
  EXPECT_NE(precision.output.find("--precision must be fp32 or bf16, not 'fp16'"), std::string::npos)
      << precision.output;
  write_file_atomic(dir / "config.json", R"({"loss": "hinge"})");
  const auto config = run_cli("train --config " + (dir / "config.json").string());
  EXPECT_EQ(config.status, 1);
  EXPECT_NE(config.output.find("train options: field 'loss' must be infonce or sigmoid, not 'hinge'"),
            std::string::npos)
      << config.output;
  EXPECT_FALSE(fs::exists(dir / "run"));
}

}  // namespace
}  // namespace flame::test
