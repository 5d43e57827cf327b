// The flame executable: help, version, exit codes and error messages.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <sstream>
#include <string>

#include "llm/weights.h"
#include "test_helpers.h"
#include "util/file.h"
#include "util/strings.h"

namespace flame::test {
namespace {

using Run = CommandResult;

Run run_cli(const std::string& args) {
  return run_command(std::string(FLAME_CLI_PATH) + " " + args + " 2>&1");
}

TEST(Cli, HelpListsTheCommands) {
  const auto r = run_cli("--help");
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.output.find("llm"), std::string::npos) << r.output;
  const auto llm = run_cli("llm --help");
  EXPECT_EQ(llm.status, 0);
  for (const char* sub : {"info", "make-random"}) EXPECT_NE(llm.output.find(sub), std::string::npos) << sub;
}

// export / import from the command line: a missing run or file is named
// (exit 1), an unknown format refused by the parser.
TEST(Cli, ExportAndImportNameWhatIsMissing) {
  const auto dir = fresh_temp_dir();
  const auto help = run_cli("--help");
  EXPECT_TRUE(contains(help.output, "export") && contains(help.output, "import")) << help.output;
  const auto no_run =
      run_cli("export --format open_clip " + (dir / "nope").string() + " " + (dir / "out").string());
  EXPECT_EQ(no_run.status, 1);
  EXPECT_TRUE(contains(no_run.output, "nope")) << no_run.output;
  const auto no_file = run_cli("import " + (dir / "x.safetensors").string() + " " + (dir / "run").string());
  EXPECT_EQ(no_file.status, 1);
  EXPECT_TRUE(contains(no_file.output, "no such file: " + (dir / "x.safetensors").string()))
      << no_file.output;
  EXPECT_NE(run_cli("export --format onnx a b").status, 0);
}

TEST(Cli, VersionPrintsTheProjectVersion) {
  const auto r = run_cli("--version");
  EXPECT_EQ(r.status, 0);
  // The LibTorch it was built against (torch's own header) and whether CUDA is in it.
  const std::string libtorch = fmt::format("flame {} (LibTorch {}.{}.{}, ", FLAME_VERSION,
                                           TORCH_VERSION_MAJOR, TORCH_VERSION_MINOR, TORCH_VERSION_PATCH);
  EXPECT_EQ(r.output.rfind(libtorch, 0), 0u) << r.output;
#ifdef FLAME_WITH_CUDA
  EXPECT_TRUE(contains(r.output, libtorch + "CUDA 1")) << r.output;  // CUDA 12.x / 13.x
  EXPECT_TRUE(
      contains(r.output, fmt::format(" compiled in, {} device(s) visible)\n", torch::cuda::device_count())))
      << r.output;
#else
  EXPECT_TRUE(contains(r.output, "CPU only: no CUDA compiled in)\n")) << r.output;
#endif
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

// A symlink loop (or any path the file system refuses) given where a file or
// folder is expected is the user's to fix: exit 1 naming the path, never
// "internal error" (the sweep of issue 24 found std::filesystem errors escaping).
TEST(Cli, ASymlinkLoopIsAnErrorNamingThePathNotAnInternalError) {
  const auto dir = fresh_temp_dir();
  const fs::path loop = dir / "loop";
  fs::create_symlink(loop, loop);
  const std::string run = (dir / "run").string();
  for (const std::string args :
       {"train --images " + loop.string() + " --texts " + loop.string() + " --out " + run,
        "train --recipe " + loop.string() + " --print-config", "export " + loop.string() + " " + run,
        "import " + loop.string() + " " + run, "llm info " + loop.string()}) {
    const auto r = run_cli(args);
    EXPECT_TRUE(r.status == 1 || r.status == 105) << args << "\n" << r.output;  // 105: CLI11's path check
    EXPECT_EQ(r.output.find("internal error"), std::string::npos) << args << "\n" << r.output;
    EXPECT_NE(r.output.find(loop.filename().string()), std::string::npos) << args << "\n" << r.output;
  }
}

// The recipe preset loads; the config file and then the flags given override
// it, a flag even when it names the built-in default; --steps replaces the
// recipe's epochs. --print-config shows the merged options without training.
TEST(Cli, TrainRecipeLoadsAndFlagsOverrideIt) {
  const auto dir = fresh_temp_dir();
  const auto json_of = [](const auto& r) {
    return nlohmann::json::parse(r.output.substr(r.output.find('{')));
  };
  const auto recipe = run_cli("train --recipe flame-cc3m --print-config");
  ASSERT_EQ(recipe.status, 0) << recipe.output;
  const nlohmann::json r = json_of(recipe);
  EXPECT_EQ(r["model"], "vit-b-16");
  EXPECT_EQ(r["positives_per_step"], 6);
  EXPECT_EQ(r["loss"], "sigmoid");
  EXPECT_EQ(r["weight_decay"], 0.5);
  EXPECT_EQ(r["beta2"], 0.95);
  EXPECT_EQ(r["batch_size"], 4096);
  EXPECT_EQ(r["epochs"], 32);
  EXPECT_EQ(r["precision"], "bf16");
  EXPECT_EQ(r["grad_checkpointing"], true);

  write_file_atomic(dir / "config.json", R"({"lr": 0.001, "warmup_steps": 7})");
  const auto merged = run_cli("train --recipe flame-cc3m --config " + (dir / "config.json").string() +
                              " --lr 0.002 --precision fp32 --steps 10 --print-config");
  ASSERT_EQ(merged.status, 0) << merged.output;
  const nlohmann::json m = json_of(merged);
  EXPECT_EQ(m["lr"], 0.002);          // the flag over the config over the recipe
  EXPECT_EQ(m["warmup_steps"], 7);    // the config over the recipe
  EXPECT_EQ(m["precision"], "fp32");  // a flag naming the default still overrides
  EXPECT_EQ(m["steps"], 10);
  EXPECT_EQ(m["epochs"], 0);          // --steps replaces the recipe's epochs
  EXPECT_EQ(m["weight_decay"], 0.5);  // the rest stays the recipe's

  const auto unknown = run_cli("train --recipe flame-cc9m --print-config");
  EXPECT_EQ(unknown.status, 1);
  EXPECT_TRUE(contains(unknown.output, "unknown recipe 'flame-cc9m'")) << unknown.output;
  EXPECT_TRUE(contains(unknown.output, "flame-cc3m")) << unknown.output;
  write_file_atomic(dir / "bad.json", R"({"train": {"lr": 0.1, "learning_rate": 0.1}})");
  const auto bad = run_cli("train --recipe " + (dir / "bad.json").string() + " --print-config");
  EXPECT_EQ(bad.status, 1);
  EXPECT_TRUE(contains(bad.output, "bad.json: train options: unknown field 'learning_rate'")) << bad.output;
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
  const auto device = run_cli("train --device tpu --images x.tsv --out " + (dir / "run").string());
  EXPECT_EQ(device.status, 1);
  EXPECT_NE(device.output.find("unknown --device 'tpu'"), std::string::npos) << device.output;
}

size_t count_of(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// flame embed's scale-out flags are --num-parts/--part-index; the old
// --num-shards/--shard-index still work for one release, warning once each,
// and a part out of range is refused with one message wherever it comes from.
TEST(Cli, EmbedPartFlagsAndTheirDeprecatedAliases) {
  const auto dir = fresh_temp_dir();
  std::string captions;
  for (int i = 0; i < 6; ++i)
    captions += fmt::format(R"({{"key":"k{}","long":"A dog number {}."}})", i, i) + "\n";
  write_file_atomic(dir / "captions.jsonl", captions);
  const std::string embed = "embed --llm " + tiny_checkpoint("llama", "f32").string() + " --input " +
                            (dir / "captions.jsonl").string() + " --dtype f32 --threads 1 --out ";

  const auto old_flags = run_cli(embed + (dir / "old").string() + " --num-shards 2 --shard-index 1");
  ASSERT_EQ(old_flags.status, 0) << old_flags.output;
  EXPECT_EQ(count_of(old_flags.output, "--num-shards is deprecated and will be removed: use --num-parts"), 1u)
      << old_flags.output;
  EXPECT_EQ(count_of(old_flags.output, "--shard-index is deprecated and will be removed: use --part-index"),
            1u)
      << old_flags.output;
  const auto new_flags = run_cli(embed + (dir / "new").string() + " --num-parts 2 --part-index 1");
  ASSERT_EQ(new_flags.status, 0) << new_flags.output;
  EXPECT_EQ(new_flags.output.find("deprecated"), std::string::npos) << new_flags.output;
  const auto old_manifest = read_json_file(dir / "old" / "manifest.json");
  const auto new_manifest = read_json_file(dir / "new" / "manifest.json");
  EXPECT_EQ(old_manifest["part"], nlohmann::json({{"index", 1}, {"count", 2}}));
  EXPECT_EQ(old_manifest["part"], new_manifest["part"]);
  EXPECT_EQ(old_manifest["count"], new_manifest["count"]);
  EXPECT_NE(run_cli(embed + (dir / "both").string() + " --num-parts 2 --num-shards 2").status, 0);

  // --num-shards 0 said "outside 0..-1".
  const auto zero = run_cli(embed + (dir / "zero").string() + " --num-parts 0");
  EXPECT_EQ(zero.status, 1) << zero.output;
  EXPECT_TRUE(contains(zero.output, "flame: error: --part-index/--num-parts: invalid part 0 of 0"))
      << zero.output;
  const std::string invalid = "invalid part 2 of 2: need 0 <= index < count";
  for (const char* flags : {" --num-parts 2 --part-index 2", " --num-shards 2 --shard-index 2"}) {
    const auto r = run_cli(embed + (dir / "bad").string() + flags);
    EXPECT_EQ(r.status, 1) << r.output;
    EXPECT_NE(r.output.find("flame: error: --part-index/--num-parts: " + invalid), std::string::npos)
        << r.output;
  }
  auto manifest = new_manifest;
  manifest["part"]["index"] = 2;
  write_json_file_atomic(dir / "new" / "manifest.json", manifest);
  const auto verified = run_cli("embed verify " + (dir / "new").string());
  EXPECT_EQ(verified.status, 1);
  EXPECT_NE(verified.output.find("manifest.json: " + invalid), std::string::npos) << verified.output;
  const auto merged =
      run_cli("embed merge --out " + (dir / "merged").string() + " " + (dir / "new").string());
  EXPECT_EQ(merged.status, 1);
  EXPECT_NE(merged.output.find("manifest.json: " + invalid), std::string::npos) << merged.output;
}

// Numbers the llm commands took loosely (issue 24's sweep): a seed of -1 wrapped
// to 2^64 - 1, --layers 0 or -1 silently meant the preset's depth and a huge one
// allocated without end, --shard-size 0 meant one file, --show -1 and -n -1
// printed nothing with exit 0; --out was checked only after the model ran.
TEST(Cli, LlmCommandsRefuseNumbersOutOfRange) {
  const auto dir = fresh_temp_dir();
  const std::string out = (dir / "m").string();
  for (const std::string flags : {"--seed -1", "--layers 0", "--layers -1", "--layers 99999999999"}) {
    const auto r = run_cli("llm make-random " + out + " " + flags);
    EXPECT_NE(r.status, 0) << flags << "\n" << r.output;
    EXPECT_TRUE(contains(r.output, flags.substr(0, flags.find(' ')))) << flags << "\n" << r.output;
    EXPECT_FALSE(fs::exists(out)) << flags;
  }
  const auto shard = run_cli("llm make-random " + out + " --shard-size 0");
  EXPECT_EQ(shard.status, 1) << shard.output;
  EXPECT_TRUE(contains(shard.output, "--shard-size must be positive")) << shard.output;
  const fs::path llm = tiny_checkpoint("llama", "f32");
  for (const std::string args :
       {"embed " + llm.string() + " hi --show -1", "generate " + llm.string() + " hi -n -1"}) {
    const auto r = run_cli("llm " + args);
    EXPECT_NE(r.status, 0) << args << "\n" << r.output;
  }
  fs::create_directories(dir / "taken");
  const auto taken = run_cli("llm embed " + llm.string() + " hi --out " + (dir / "taken").string());
  EXPECT_EQ(taken.status, 1) << taken.output;
  EXPECT_TRUE(contains(taken.output, "is a directory")) << taken.output;
  EXPECT_FALSE(contains(taken.output, "norm")) << "checked only after the model ran:\n" << taken.output;
}

// llm generate past max_position_embeddings (2048 here) is refused, and an
// LLM with a NaN weight makes llm embed fail instead of printing "-nan".
TEST(Cli, LlmRunRefusesPositionsBeyondTheContextAndNonFiniteOutput) {
  const auto dir = fresh_temp_dir();
  const fs::path llm = tiny_checkpoint("llama", "f32");
  const auto generate = run_cli("llm generate " + llm.string() + " hello -n 5000");
  EXPECT_EQ(generate.status, 1);
  EXPECT_TRUE(contains(generate.output, "more than the model's max_position_embeddings (2048)"))
      << generate.output;

  fs::copy(llm, dir / "nan", fs::copy_options::recursive);
  const llm::WeightFiles weights(llm);
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& name : weights.names())
    tensors.emplace_back(name, weights.get(name, torch::kFloat32, torch::kCPU).clone());
  for (auto& [name, t] : tensors)
    if (name == "model.norm.weight") t.fill_(std::nan(""));
  for (const auto& e : fs::directory_iterator(dir / "nan"))
    if (e.path().extension() == ".safetensors" || e.path().filename() == "model.safetensors.index.json")
      fs::remove(e.path());
  llm::write_checkpoint_weights(dir / "nan", tensors);
  const auto embed = run_cli("llm embed " + (dir / "nan").string() + " hello --layer -1");
  EXPECT_EQ(embed.status, 1);
  EXPECT_TRUE(contains(embed.output, "is not finite (NaN or inf)")) << embed.output;
}

// Every command that loads the LLM says which --device / --dtype value it
// cannot use, and what it can.
TEST(Cli, BadDeviceOrDtypeNamesTheValue) {
  const auto dir = fresh_temp_dir();
  const std::string llm = tiny_checkpoint("llama", "f32").string();
  write_file_atomic(dir / "captions.jsonl", R"({"key":"k","long":"A dog."})"
                                            "\n");
  write_file_atomic(dir / "image.jpg", "not read: the device is checked first");
  const std::vector<std::string> commands = {
      "llm embed " + llm + " hello", "llm generate " + llm + " hello",
      "embed --llm " + llm + " --input " + (dir / "captions.jsonl").string() + " --out " +
          (dir / "store").string(),
      "eval --model " + dir.string() + " --benchmark cifar10",
      "interpret --model " + dir.string() + " --llm " + llm + " " + (dir / "image.jpg").string()};
  for (const auto& command : commands) {
    const auto device = run_cli(command + " --device gpu0");
    EXPECT_EQ(device.status, 1) << command << "\n" << device.output;
    EXPECT_NE(device.output.find("flame: error: unknown --device 'gpu0' (use cpu or cuda[:N])"),
              std::string::npos)
        << command << "\n"
        << device.output;
  }
  // LibTorch parses these, but flame runs on none of them ("internal error" before).
  for (const std::string device : {"tpu", "meta"}) {
    const auto r = run_cli(commands[0] + " --device " + device);
    EXPECT_EQ(r.status, 1) << r.output;
    EXPECT_TRUE(contains(r.output, "flame: error: unknown --device '" + device + "'")) << r.output;
  }
  if (!torch::cuda::is_available()) {
    for (const std::string device : {"cuda", "cuda:7"}) {
      const auto r = run_cli(commands[0] + " --device " + device);
      EXPECT_EQ(r.status, 1) << r.output;
      EXPECT_TRUE(contains(r.output, "flame: error: --device " + device + ": CUDA is not available"))
          << r.output;
    }
  }
  // LibTorch 2.x multiplies f16 on the CPU (1.13 could not, and flame refused):
  // the f16 hidden state is the f32 one to f16 precision.
  const auto f16 = run_cli(commands[0] + " --dtype f16 --device cpu --layer -1");
  const auto f32 = run_cli(commands[0] + " --dtype f32 --device cpu --layer -1");
  ASSERT_EQ(f16.status, 0) << f16.output;
  ASSERT_EQ(f32.status, 0) << f32.output;
  const auto numbers = [](const std::string& text) {  // "norm  X" and "first [a, b, ...]"
    std::vector<double> out;
    for (std::string line : split(text, '\n')) {
      if (line.rfind("norm", 0) != 0 && line.rfind("first [", 0) != 0) continue;
      for (char& c : line)
        if (c == ',' || c == '[' || c == ']') c = ' ';
      std::istringstream words(line.substr(line.find(' ')));
      for (double x = 0; words >> x;) out.push_back(x);
    }
    return out;
  };
  const auto a = numbers(f16.output), b = numbers(f32.output);
  ASSERT_EQ(a.size(), b.size()) << f16.output << f32.output;
  ASSERT_FALSE(a.empty()) << f16.output;
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 2e-2 * (1 + std::abs(b[i]))) << i;
  for (size_t i = 0; i < 3; ++i) {  // the commands that read --dtype before anything else can fail
    const auto dtype = run_cli(commands[i] + " --dtype f64");
    EXPECT_EQ(dtype.status, 1) << commands[i] << "\n" << dtype.output;
    EXPECT_NE(dtype.output.find("flame: error: unknown --dtype 'f64' (use bf16, f16 or f32)"),
              std::string::npos)
        << commands[i] << "\n"
        << dtype.output;
  }
}

// A tokenizer with more tokens than the checkpoint's embedding table failed
// inside LibTorch: "internal error: index out of range in self".
TEST(Cli, TokenIdsBeyondTheVocabularyAreNamed) {
  const auto dir = fresh_temp_dir();
  fs::copy(tiny_checkpoint("llama", "f32"), dir / "llm", fs::copy_options::recursive);
  const int64_t vocab = read_json_file(dir / "llm" / "config.json")["vocab_size"].get<int64_t>();
  auto tokenizer = read_json_file(dir / "llm" / "tokenizer.json");
  tokenizer["added_tokens"].push_back({{"id", vocab},
                                       {"content", "<beyond>"},
                                       {"special", true},
                                       {"normalized", false},
                                       {"lstrip", false},
                                       {"rstrip", false},
                                       {"single_word", false}});
  write_json_file_atomic(dir / "llm" / "tokenizer.json", tokenizer);
  const auto r = run_cli("llm embed " + (dir / "llm").string() + " 'hello <beyond>' --layer -1");
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_TRUE(contains(
      r.output,
      fmt::format("flame: error: token id {} is outside the model's vocabulary of {}", vocab, vocab)))
      << r.output;
}

// --prompts and --benchmark take a preset name or a file by one rule: a value
// that names an existing file, contains '/' or ends in .json is a path.
TEST(Cli, PromptsAndBenchmarksFollowOnePathRule) {
  const auto dir = fresh_temp_dir();
  const std::string embed =
      "embed --llm " + dir.string() + " --input none.jsonl --out " + (dir / "store").string() + " --prompts ";
  const std::string eval = "eval --model " + dir.string() + " --benchmark ";
  const auto prompts = run_cli(embed + "./mine.json");
  EXPECT_NE(prompts.output.find("flame: error: prompt set config './mine.json' does not exist"),
            std::string::npos)
      << prompts.output;
  const auto benchmark = run_cli(eval + "./mine.json");
  EXPECT_NE(benchmark.output.find("flame: error: benchmark config './mine.json' does not exist"),
            std::string::npos)
      << benchmark.output;
  const auto prompt_name = run_cli(embed + "mine");
  EXPECT_NE(prompt_name.output.find("unknown prompt set 'mine'"), std::string::npos) << prompt_name.output;
  EXPECT_NE(prompt_name.output.find("presets: long, raw, release-long, release-raw, short"),
            std::string::npos)
      << prompt_name.output;
  const auto benchmark_name = run_cli(eval + "mine");
  EXPECT_NE(benchmark_name.output.find("unknown benchmark 'mine'"), std::string::npos)
      << benchmark_name.output;
  EXPECT_NE(benchmark_name.output.find("presets: cifar10, crossmodal3600, flickr8k, imagenet, paper-table1, "
                                       "paper-table2, paper-table3, paper-table4, paper-table5, sugarcrepe"),
            std::string::npos)
      << benchmark_name.output;
}

// --threads is 0 (all cores) or 1..1024: 100000 used to spawn thousands of
// threads and hang, and -3 silently meant "all cores".
TEST(Cli, ThreadCountsOutOfRangeAreRefused) {
  for (const char* bad : {"100000", "-3"}) {
    const auto r = run_cli(std::string("embed --threads ") + bad);
    EXPECT_NE(r.status, 0) << bad;
    EXPECT_NE(r.output.find("--threads"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("1024"), std::string::npos) << r.output;
  }
}

}  // namespace
}  // namespace flame::test
