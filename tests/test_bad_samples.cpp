// Bad samples at scale (issue 15): embed and train over inputs where ~1-2% of
// the captions or images are broken. Every bad item is counted and named, the
// run finishes, and (embed) the good items' vectors equal those of a run
// without the bad ones.
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <set>
#include <sstream>
#include <thread>

#include "data/image_encode.h"
#include "log_capture.h"
#include "test_helpers.h"
#include "text/embed_job.h"
#include "text/embedding_store.h"
#include "train/checkpoint.h"
#include "train/trainer.h"
#include "util/file.h"

namespace flame {
namespace {

namespace fs = std::filesystem;
using test::contains;

using test::LogCapture;

std::string good_caption(int i) {
  static const char* words[] = {"dog", "beach", "child", "red", "bicycle", "mountain", "snow"};
  return fmt::format("A {} and a {} number {}.", words[i % 7], words[(i * 3 + 1) % 7], i);
}

text::EmbedJobOptions embed_job(const fs::path& input, const fs::path& out) {
  text::EmbedJobOptions o;
  o.llm_dir = test::tiny_checkpoint("llama", "f32");
  o.prompts = "short";
  o.inputs = {input.string()};
  o.out = out;
  o.compute_dtype = "f32";
  o.shard_size = 64;
  o.progress = false;
  return o;
}

TEST(BadSamples, EmbedCountsAndNamesEachBadCaptionAndKeepsTheGoodOnesExact) {
  const fs::path dir = test::fresh_temp_dir();
  std::string clean, dirty;
  for (int i = 0; i < 300; ++i) {
    const std::string line =
        nlohmann::json{{"key", fmt::format("k{}", i)}, {"short", good_caption(i)}}.dump() + "\n";
    clean += line;
    dirty += line;
    if (i == 50)
      dirty += R"({"key":"empty","short":""})"
               "\n";
    if (i == 100) dirty += "{\"key\":\"ideographic-space\",\"short\":\"\xe3\x80\x80\xe3\x80\x80\"}\n";
    if (i == 150)
      dirty += R"({"key":"no-field","caption":"a caption under another field"})"
               "\n";
    if (i == 200) dirty += "{\"key\":\"truncated-line\",\"short\":\"a dog\n";
    if (i == 250)
      dirty += R"({"key":"zero-width","short":"\u200b\u200b"})"
               "\n";
  }
  write_file_atomic(dir / "clean.jsonl", clean);
  write_file_atomic(dir / "dirty.jsonl", dirty);
  const text::EmbedJobSummary good = text::run_embed_job(embed_job(dir / "clean.jsonl", dir / "clean"));
  const text::EmbedJobSummary mixed = text::run_embed_job(embed_job(dir / "dirty.jsonl", dir / "dirty"));
  EXPECT_EQ(good.embedded, 300);
  EXPECT_EQ(mixed.embedded, 300);
  EXPECT_EQ(mixed.dropped, 5);
  const std::string problems = read_file(dir / "dirty" / "problems.jsonl");
  for (const char* named : {"empty", "ideographic-space", "no-field", "dirty.jsonl:", "zero-width"})
    EXPECT_TRUE(contains(problems, named)) << named << "\n" << problems;

  const auto a = text::EmbeddingStore::open(dir / "clean");
  const auto b = text::EmbeddingStore::open(dir / "dirty");
  ASSERT_EQ(a.size(), b.size());
  float worst = 0;
  for (int64_t i = 0; i < a.size(); ++i) {
    const torch::Tensor x = a.get(i).to(torch::kFloat32), y = b.get(a.key(i)).to(torch::kFloat32);
    worst = std::max(worst, (x - y).abs().max().item<float>());
  }
  EXPECT_LT(worst, 2e-3) << "f16 vectors of the same captions";  // batches differ: f32 rounding, then f16
}

// A training folder: a TSV of `good` Flickr8k images (symlinked), plus, with
// `bad`, 3 that cannot be decoded (truncated JPEG, zero bytes, listed but
// missing) and 2 odd but valid (a PNG named .jpg, a 1x1 image); a store of one
// random unit vector per listed key.
train::TrainOptions training_folder(const fs::path& dir, int good, bool bad) {
  const fs::path images = dir / "images", flickr = test::shared_dir() / "data" / "flickr8k" / "images";
  fs::create_directories(images);
  std::vector<std::string> keys;
  for (const auto& e : fs::directory_iterator(flickr)) keys.push_back(e.path().filename().string());
  std::sort(keys.begin(), keys.end());
  keys.resize(static_cast<size_t>(good));
  for (const auto& k : keys) fs::create_symlink(flickr / k, images / k);
  if (bad) {
    write_file_atomic(images / "truncated.jpg", read_file(flickr / keys[0]).substr(0, 100));
    write_file_atomic(images / "zero-bytes.jpg", "");
    data::write_png(images / "png-named.jpg", torch::randint(0, 255, {40, 30, 3}, torch::kUInt8));
    data::write_png(images / "one-pixel.png", torch::full({1, 1, 3}, 200, torch::kUInt8));
    for (const char* k : {"truncated.jpg", "zero-bytes.jpg", "missing.jpg", "png-named.jpg", "one-pixel.png"})
      keys.push_back(k);
  }
  std::string tsv = "image\tcaption\n";
  for (const auto& k : keys) tsv += k + "\tx\n";
  write_file_atomic(dir / "images.tsv", tsv);

  text::StoreIdentity id;
  id.llm = {{"name", "test"}, {"architecture", "llama"}, {"config_sha256", "c"}, {"weights_checksum", "w"}};
  id.prompt_set_name = "raw";
  id.prompt_set_sha256 = "s";
  id.facets = {"raw"};
  id.layer = 1;
  id.num_facets = 1;
  id.dim = 16;
  id.normalized = true;
  text::EmbeddingStoreWriter writer(dir / "store", id);
  torch::manual_seed(3);
  writer.write_shard(
      0, keys,
      torch::nn::functional::normalize(torch::randn({static_cast<int64_t>(keys.size()), 1, 16}),
                                       torch::nn::functional::NormalizeFuncOptions().dim(-1)));
  writer.finalize();

  train::TrainOptions o;
  o.model = "vit-micro-32";
  o.images = (dir / "images.tsv").string();
  o.image_dir = images.string();
  o.text_stores = {(dir / "store").string()};
  o.out = (dir / "run").string();
  o.warmup_steps = 1;
  o.workers = 2;
  return o;
}

// 200 training images of which 3 cannot be read: one epoch finishes, the 3
// are skipped, counted and named, the odd but valid ones are trained on.
TEST(BadSamples, TrainingSkipsCountsAndNamesEachBrokenImage) {
  const fs::path dir = test::fresh_temp_dir();
  train::TrainOptions o = training_folder(dir, 195, /*bad=*/true);
  o.batch_size = 20;
  o.steps = 10;  // one epoch of 200 images
  o.save_every = 10;
  o.max_skip_fraction = 0.05;
  LogCapture log;
  const train::TrainSummary s = train::run_training(o, train::RunStart::kNew);
  EXPECT_EQ(s.steps, 10);
  EXPECT_EQ(s.skipped_images, 3);
  EXPECT_TRUE(std::isfinite(s.final_loss));
  const std::string text = log.text();
  for (const char* named : {"'truncated.jpg'", "'zero-bytes.jpg'", "'missing.jpg'"})
    EXPECT_TRUE(contains(text, std::string("skipping unreadable image ") + named)) << named << "\n" << text;
  for (const char* fine : {"png-named.jpg", "one-pixel.png"}) EXPECT_FALSE(contains(text, fine)) << text;
}

// `flame ARGS` and its output; with `limit_kb`, under that file-size limit.
test::CommandResult run_flame(const std::string& args, int64_t limit_kb = 0) {
  const std::string flame = fmt::format("{} {}", FLAME_CLI_PATH, args);
  if (limit_kb == 0) return test::run_command(flame + " 2>&1");
  // dash's ulimit -f counts 512-byte blocks.
  return test::run_command(
      fmt::format("sh -c \"trap '' XFSZ; ulimit -f {}; exec {}\" 2>&1", limit_kb * 2, flame));
}

std::vector<std::string> leftovers(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (contains(e.path().filename().string(), ".tmp")) out.push_back(e.path().string());
  return out;
}

// A disk that fills: the process runs under a file-size limit (RLIMIT_FSIZE,
// SIGXFSZ ignored, so a write past it fails with EFBIG as ENOSPC would). The
// job fails naming the file it could not write, leaves no partial file
// behind, and a rerun without the limit finishes with the store a run that
// never failed writes.
TEST(BadSamples, AFullDiskFailsNamingTheFileAndLeavesNothingHalfWritten) {
  const fs::path dir = test::fresh_temp_dir();
  std::string input;
  for (int i = 0; i < 96; ++i)
    input += nlohmann::json{{"key", fmt::format("k{}", i)}, {"caption", good_caption(i)}}.dump() + "\n";
  write_file_atomic(dir / "in.jsonl", input);
  const std::string embed = fmt::format(
      "--log-level warn embed --llm {} --prompts short --input {} --dtype f32 --shard-size 32 --out ",
      test::tiny_checkpoint("llama", "f32").string(), (dir / "in.jsonl").string());
  // A 32-caption shard of 3 x 64 f16 values is ~13 KB: an 8 KB limit fails the first one.
  const auto [status, output] = run_flame(embed + (dir / "store").string(), 8);
  EXPECT_EQ(status, 1) << output;
  EXPECT_TRUE(
      contains(output, "cannot write '" + (dir / "store" / "shard-00000.safetensors").string() + "'") &&
      contains(output, "File too large"))
      << output;
  EXPECT_TRUE(leftovers(dir / "store").empty()) << leftovers(dir / "store").front();
  EXPECT_FALSE(fs::exists(dir / "store" / "manifest.json"));
  for (const char* out : {"store", "reference"}) {
    const test::CommandResult r = run_flame(embed + (dir / out).string());
    ASSERT_EQ(r.status, 0) << r.output;
  }
  const auto a = text::EmbeddingStore::open(dir / "store");
  const auto b = text::EmbeddingStore::open(dir / "reference");
  ASSERT_EQ(a.size(), 96);
  for (int64_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a.get(i), b.get(a.key(i)))) << a.key(i);
}

// `flame train` on the folder `o` describes, a checkpoint every 2 steps, up to
// the output folder, which the caller appends.
std::string train_arguments(const train::TrainOptions& o, const std::string& model, int steps) {
  return fmt::format(
      "--log-level warn train --model {} --images {} --image-dir {} --texts {} --batch-size 8 --steps {} "
      "--save-every 2 --warmup-steps 1 --workers 2 --seed 5 --threads 1 --out ",
      model, o.images, o.image_dir, o.text_stores[0], steps);
}

// The same for `flame train`: the first checkpoint does not fit, the run
// fails naming the file, leaves no partial checkpoint, and `--resume` then
// runs to the weights of a run that never failed.
TEST(BadSamples, AFullDiskDuringTrainingLeavesNoPartialCheckpoint) {
  const fs::path dir = test::fresh_temp_dir();
  const train::TrainOptions o = training_folder(dir, 24, /*bad=*/false);
  const std::string args = train_arguments(o, "vit-micro-32", 4);
  // vit-micro-32's weights are ~0.4 MB: a 256 KB limit fails the first checkpoint.
  const auto [status, output] = run_flame(args + (dir / "run").string(), 256);
  EXPECT_EQ(status, 1) << output;
  EXPECT_TRUE(contains(output, "cannot write '" + (dir / "run" / "checkpoints").string()) &&
              contains(output, "File too large"))
      << output;
  EXPECT_TRUE(leftovers(dir / "run").empty()) << leftovers(dir / "run").front();
  EXPECT_FALSE(fs::exists(dir / "run" / "checkpoints" / "latest"));
  for (const auto& [out, extra] : {std::pair{dir / "run", " --resume"}, std::pair{dir / "reference", ""}}) {
    const test::CommandResult r = run_flame(args + out.string() + extra);
    ASSERT_EQ(r.status, 0) << r.output;
  }
  const auto weights = [](const fs::path& run) {
    return read_file(train::resolve_checkpoint(run) / "model.safetensors");
  };
  EXPECT_TRUE(weights(dir / "run") == weights(dir / "reference"));
}

// kill -9 while a checkpoint is being written: the killed write leaves only
// its temp folder, `latest` still names a complete checkpoint (or none), and
// --resume continues to weights byte-identical to an uninterrupted run.
// vit-ti-8-64's checkpoints (~70 MB with the optimizer) take long enough to
// write that polling sees the temp folder; the kill is retried if it missed.
std::vector<fs::path> checkpoint_temp_folders(const fs::path& run) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(run / "checkpoints", ec))
    if (contains(e.path().filename().string(), ".tmp-")) out.push_back(e.path());
  return out;
}

TEST(BadSamples, KilledWhileWritingACheckpointResumesExactly) {
  const fs::path dir = test::fresh_temp_dir();
  const train::TrainOptions o = training_folder(dir, 24, /*bad=*/false);
  const std::string args = train_arguments(o, "vit-ti-8-64", 6);
  bool killed_in_write = false;
  for (int attempt = 0; attempt < 3 && !killed_in_write; ++attempt) {
    fs::remove_all(dir / "killed");
    const pid_t child = ::fork();
    if (child == 0) {
      const std::string command = std::string(FLAME_CLI_PATH) + " " + args + (dir / "killed").string();
      ::execl("/bin/sh", "sh", "-c", ("exec " + command + " > /dev/null 2>&1").c_str(), nullptr);
      ::_exit(127);
    }
    int status = 0;
    while (::waitpid(child, &status, WNOHANG) == 0) {
      if (!checkpoint_temp_folders(dir / "killed").empty()) {
        ::kill(child, SIGKILL);
        ::waitpid(child, &status, 0);
        killed_in_write = !checkpoint_temp_folders(dir / "killed").empty();
        break;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }
  ASSERT_TRUE(killed_in_write) << "three runs finished before a checkpoint write could be interrupted";
  if (fs::exists(dir / "killed" / "checkpoints" / "latest"))
    EXPECT_NO_THROW(train::load_trained_model(dir / "killed"));  // the previous checkpoint stays loadable
  const test::CommandResult resumed = run_flame(args + (dir / "killed").string() + " --resume");
  ASSERT_EQ(resumed.status, 0) << resumed.output;
  EXPECT_TRUE(checkpoint_temp_folders(dir / "killed").empty());
  const test::CommandResult reference = run_flame(args + (dir / "reference").string());
  ASSERT_EQ(reference.status, 0) << reference.output;
  const auto weights = [](const fs::path& r) {
    return read_file(train::resolve_checkpoint(r) / "model.safetensors");
  };
  EXPECT_TRUE(weights(dir / "killed") == weights(dir / "reference"));
}

}  // namespace
}  // namespace flame
