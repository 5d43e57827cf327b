// The embedding job end to end: stored vectors equal the encoder's, bad input
// is reported by key, a kill -9 resumes to the same store, parts merge into the
// single-process store, and a store of another prompt set is refused.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <mutex>
#include <numeric>
#include <thread>

#include "llm/tokenizer.h"
#include "llm/transformer.h"
#include "test_helpers.h"
#include "text/embed_job.h"
#include "text/embedding_store.h"
#include "text/shard_pipeline.h"
#include "text/store_parts.h"
#include "util/error.h"
#include "util/file.h"
#include "util/strings.h"

namespace flame::text {
namespace {

const std::vector<std::string> kWords = {"dog",   "cat",      "child", "bicycle",
                                         "beach", "mountain", "red",   "running"};

std::string caption(int i) {
  std::string s = "A";
  for (int j = 0; j <= i % 5; ++j) s += " " + kWords[(i * 7 + j * 3) % kWords.size()];
  return s + " number " + std::to_string(i);
}

fs::path write_jsonl(const fs::path& dir, int n, bool with_problems) {
  std::string text;
  for (int i = 0; i < n; ++i) {
    text +=
        nlohmann::json{{"key", "k" + std::to_string(i)}, {"long", caption(i)}, {"raw", "x"}}.dump() + "\n";
  }
  if (with_problems) {
    text += R"({"key":"empty","long":""})"
            "\n";
    text += R"({"key":"nolong","raw":"only raw"})"
            "\n";
    text += R"({"key":"k3","long":"a duplicate key"})"
            "\n";
  }
  write_file_atomic(dir / "captions.jsonl", text);
  return dir / "captions.jsonl";
}

EmbedJobOptions job(const fs::path& input, const fs::path& out) {
  EmbedJobOptions o;
  o.llm_dir = test::tiny_checkpoint("llama", "f32");
  o.inputs = {input.string()};
  o.out = out;
  o.compute_dtype = "f32";
  o.shard_size = 4;
  o.progress = false;
  return o;
}

std::map<std::string, torch::Tensor> contents(const fs::path& dir) {
  const auto store = EmbeddingStore::open(dir);
  std::map<std::string, torch::Tensor> out;
  for (int64_t i = 0; i < store.size(); ++i) out[store.key(i)] = store.get(i).to(torch::kFloat32);
  return out;
}

TEST(EmbedJob, StoresTheEncoderOutputAndReportsBadInput) {
  const auto dir = test::fresh_temp_dir();
  const auto input = write_jsonl(dir, 10, /*with_problems=*/true);
  const auto summary = run_embed_job(job(input, dir / "store"));
  EXPECT_EQ(summary.records, 10);
  EXPECT_EQ(summary.embedded, 10);
  EXPECT_GE(summary.problems, 3);
  const auto problems = read_file(dir / "store" / "problems.jsonl");
  for (const char* key : {"\"empty\"", "\"nolong\"", "\"k3\""})
    EXPECT_NE(problems.find(key), std::string::npos) << key;

  const auto store = EmbeddingStore::open(dir / "store");
  ASSERT_EQ(store.size(), 10);
  EXPECT_EQ(store.num_facets(), 7);
  EXPECT_EQ(store.manifest()["prompt_set"]["name"], "long");
  EXPECT_EQ(store.manifest()["layer"], 2);  // second to last of 3 layers
  const auto model = llm::Transformer::load(test::tiny_checkpoint("llama", "f32"), {torch::kFloat32});
  const auto tokenizer = llm::Tokenizer::load(test::tiny_checkpoint("llama", "f32"));
  FacetEncoder encoder(model, *tokenizer, load_prompt_set("long"));
  const auto expected = encoder.encode_texts({caption(0), caption(7)});
  const auto got = torch::stack({store.get("k0"), store.get("k7")}).to(torch::kFloat32);
  EXPECT_TRUE(torch::allclose(got, expected, 1e-2, 1e-2)) << (got - expected).abs().max();  // f16 storage
}

// A job that embeds nothing fails, saying how many records were dropped and
// where the reasons are (it finished with an empty store and exit 0).
TEST(EmbedJob, NothingToEmbedIsAnError) {
  const auto dir = test::fresh_temp_dir();
  write_file_atomic(dir / "bad.jsonl",
                    "{\"key\": \"a\", \"long\": \"\"}\n{\"key\": \"b\", \"raw\": \"x\"}\n");
  const std::string message = test::error_of([&] { run_embed_job(job(dir / "bad.jsonl", dir / "store")); });
  EXPECT_TRUE(test::contains(message, "nothing to embed: no caption was read from") &&
              test::contains(message, "2 record(s) dropped") && test::contains(message, "problems.jsonl"))
      << message;
  EXPECT_FALSE(fs::exists(dir / "store" / "manifest.json"));
}

TEST(EmbedJob, KilledRunResumesToTheSameStore) {
  const auto dir = test::fresh_temp_dir();
  const auto input = write_jsonl(dir, 240, false);
  const std::string args = std::string(FLAME_CLI_PATH) + " --log-level warn embed --llm " +
                           test::tiny_checkpoint("llama", "f32").string() + " --input " + input.string() +
                           " --dtype f32 --threads 1 --shard-size 1 --mode naive --batch-tokens 1 --out ";
  ASSERT_EQ(std::system((args + (dir / "reference").string() + " > /dev/null 2>&1").c_str()), 0);

  const pid_t child = ::fork();
  if (child == 0) {
    ::execl("/bin/sh", "sh", "-c", (args + (dir / "killed").string() + " > /dev/null 2>&1").c_str(), nullptr);
    ::_exit(127);
  }
  // Wait for a few shards, then kill -9 the whole process group's job.
  for (int i = 0; i < 400; ++i) {
    int shards = 0;
    if (fs::exists(dir / "killed")) {
      for (const auto& e : fs::directory_iterator(dir / "killed"))
        shards += e.path().extension() == ".safetensors";
    }
    if (shards >= 5) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  ::system(("pkill -9 -f -- '--out " + (dir / "killed").string() + "'").c_str());
  int status = 0;
  ::waitpid(child, &status, 0);
  ASSERT_FALSE(fs::exists(dir / "killed" / "manifest.json")) << "the job finished before it was killed";

  ASSERT_EQ(std::system((args + (dir / "killed").string() + " > /dev/null 2>&1").c_str()), 0);
  const auto reference = contents(dir / "reference");
  const auto resumed = contents(dir / "killed");
  ASSERT_EQ(resumed.size(), 240u);
  for (const auto& [key, value] : reference) {
    ASSERT_TRUE(resumed.count(key)) << key;
    EXPECT_TRUE(torch::equal(resumed.at(key), value)) << key;
  }
  EXPECT_TRUE(verify_stores({dir / "killed"}).ok());
}

TEST(EmbedJob, PartsMergeIntoTheSingleProcessStore) {
  const auto dir = test::fresh_temp_dir();
  const auto input = write_jsonl(dir, 13, false);
  run_embed_job(job(input, dir / "whole"));
  std::vector<fs::path> parts;
  for (int i = 0; i < 3; ++i) {
    auto o = job(input, dir / ("part" + std::to_string(i)));
    o.part = {i, 3};
    run_embed_job(o);
    parts.push_back(o.out);
  }
  EXPECT_FALSE(verify_stores({parts[0], parts[2]}).ok());  // part 1 missing
  ASSERT_TRUE(verify_stores(parts).ok()) << verify_stores(parts).summary();
  merge_stores(parts, dir / "merged");
  const auto whole = contents(dir / "whole");
  const auto merged = contents(dir / "merged");
  ASSERT_EQ(merged.size(), whole.size());
  for (const auto& [key, value] : whole)
    EXPECT_TRUE(torch::allclose(merged.at(key), value, 1e-3, 1e-3)) << key;
}

TEST(EmbedJob, RefusesAPartOutOfRange) {
  const auto dir = test::fresh_temp_dir();
  auto o = job(write_jsonl(dir, 3, false), dir / "store");
  o.part = {3, 3};
  try {
    run_embed_job(o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "--part-index/--num-parts: invalid part 3 of 3: need 0 <= index < count");
  }
  EXPECT_FALSE(fs::exists(dir / "store")) << "refused before anything is written";
}

TEST(EmbedJob, RefusesAStoreOfAnotherPromptSet) {
  const auto dir = test::fresh_temp_dir();
  const auto input = write_jsonl(dir, 3, false);
  run_embed_job(job(input, dir / "store"));
  auto o = job(input, dir / "store");
  o.prompts = "short";
  o.field = "long";
  try {
    run_embed_job(o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("short"), std::string::npos) << e.what();
  }
}

// Exit status and combined output of a shell command.
std::pair<int, std::string> run_shell(const std::string& command, const fs::path& log) {
  const int status = std::system((command + " > " + log.string() + " 2>&1").c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, read_file(log)};
}

std::string launched_embed(const fs::path& input, const fs::path& out) {
  return std::string(FLAME_SOURCE_DIR) + "/scripts/launch --nproc 2 -- " + FLAME_CLI_PATH + " embed --llm " +
         test::tiny_checkpoint("llama", "f32").string() + " --input " + input.string() +
         " --dtype f32 --shard-size 4 --threads 1 --out " + out.string();
}

// torchrun-native: each rank embeds its part, rank 0 merges them into one
// store at --out, which equals the single-process store; a relaunch resumes.
TEST(EmbedJob, LaunchedRanksLeaveOneStoreEqualToOneProcess) {
  const auto dir = test::fresh_temp_dir();
  const auto input = write_jsonl(dir, 13, false);
  run_embed_job(job(input, dir / "whole"));
  const auto [status, output] = run_shell(launched_embed(input, dir / "two"), dir / "launch.log");
  ASSERT_EQ(status, 0) << output;
  EXPECT_TRUE(fs::exists(dir / "two" / "parts" / "part-0000-of-0002" / "manifest.json"));
  EXPECT_TRUE(fs::exists(dir / "two" / "parts" / "part-0001-of-0002" / "manifest.json"));
  const auto whole = contents(dir / "whole");
  auto two = contents(dir / "two");
  ASSERT_EQ(two.size(), whole.size());
  for (const auto& [key, value] : whole) {
    ASSERT_TRUE(two.count(key)) << key;
    EXPECT_TRUE(torch::allclose(two.at(key), value, 1e-3, 1e-3)) << key;  // other batches, same f16 store
  }
  EXPECT_EQ(EmbeddingStore::open(dir / "two").part(), PartSelection{});

  // Relaunched: every shard is found on disk, and the merge is made again.
  const auto [again, again_output] = run_shell(launched_embed(input, dir / "two"), dir / "relaunch.log");
  ASSERT_EQ(again, 0) << again_output;
  EXPECT_TRUE(test::contains(again_output, "0 caption(s) (")) << again_output;  // nothing embedded twice
  two = contents(dir / "two");
  for (const auto& [key, value] : whole) EXPECT_TRUE(torch::allclose(two.at(key), value, 1e-3, 1e-3)) << key;
}

TEST(EmbedJob, ALaunchedRankThatFailsStopsTheJobNamingTheCause) {
  const auto dir = test::fresh_temp_dir();
  const auto [status, output] =
      run_shell(launched_embed(dir / "absent.jsonl", dir / "out"), dir / "launch.log");
  EXPECT_NE(status, 0);
  EXPECT_TRUE(test::contains(output, "absent.jsonl")) << output;
  EXPECT_FALSE(fs::exists(dir / "out" / "manifest.json"));
}

// A launched job merges its parts over the store at --out: into a finished
// store of another prompt set it replaced it (a single-process run refuses).
// Now every rank checks before anything is written, and the store is kept.
TEST(EmbedJob, ALaunchedJobRefusesAStoreOfAnotherPromptSet) {
  const auto dir = test::fresh_temp_dir();
  const auto input = write_jsonl(dir, 7, false);
  run_embed_job(job(input, dir / "store"));
  const auto before = contents(dir / "store");
  const auto [status, output] =
      run_shell(launched_embed(input, dir / "store") + " --prompts short --field long", dir / "launch.log");
  EXPECT_NE(status, 0) << output;
  EXPECT_TRUE(test::contains(output, "prompt set 'long'") && test::contains(output, "'short'") &&
              test::contains(output, (dir / "store").string()))
      << output;
  EXPECT_FALSE(fs::exists(dir / "store" / "parts")) << "refused before anything is written";
  const auto after = contents(dir / "store");
  ASSERT_EQ(after.size(), before.size());
  for (const auto& [key, value] : before) EXPECT_TRUE(torch::equal(after.at(key), value)) << key;
}

// Ranks that read different inputs (here: the same keys, other captions)
// merged into a store that verify called ok; each part records what it read
// and the merge refuses parts that differ, naming them.
TEST(EmbedJob, LaunchedRanksReadingDifferentInputsAreRefused) {
  const auto dir = test::fresh_temp_dir();
  write_jsonl(dir, 9, false);
  fs::rename(dir / "captions.jsonl", dir / "in0.jsonl");
  std::string other;
  for (int i = 0; i < 9; ++i)
    other +=
        nlohmann::json{{"key", "k" + std::to_string(i)}, {"long", "Another " + caption(i)}}.dump() + "\n";
  write_file_atomic(dir / "in1.jsonl", other);
  const std::string command =
      std::string(FLAME_SOURCE_DIR) + "/scripts/launch --nproc 2 -- bash -c 'exec " + FLAME_CLI_PATH +
      " embed --llm " + test::tiny_checkpoint("llama", "f32").string() + " --input " + (dir / "in").string() +
      "$RANK.jsonl --dtype f32 --threads 1 --out " + (dir / "out").string() + "'";
  const auto [status, output] = run_shell(command, dir / "launch.log");
  EXPECT_NE(status, 0) << output;
  EXPECT_TRUE(test::contains(output, "different inputs") && test::contains(output, "in0.jsonl") &&
              test::contains(output, "in1.jsonl"))
      << output;
  EXPECT_FALSE(fs::exists(dir / "out" / "manifest.json"));
}

// kill -9 of a launched job mid-write, then a relaunch: every part resumes
// and the store equals one process's. While the relaunch runs, a second
// launch on the same store with another --nproc (other part folders) fails
// fast naming the holder: it ran beside the first and merged into the same --out.
TEST(EmbedJob, ALaunchedJobKilledMidWriteResumesAndASecondLaunchFailsFast) {
  const auto dir = test::fresh_temp_dir();
  const auto input = write_jsonl(dir, 480, false);
  auto whole_job = job(input, dir / "whole");
  whole_job.encoder.mode = EncodeMode::Naive;
  run_embed_job(whole_job);
  std::string slow = launched_embed(input, dir / "two") + " --mode naive --batch-tokens 1";
  slow.replace(slow.find("--shard-size 4"), 14, "--shard-size 1");  // a shard per record: many writes
  const auto start_job = [&](const fs::path& log) {
    const pid_t child = ::fork();
    if (child == 0) {
      ::execl("/bin/sh", "sh", "-c", (slow + " > " + log.string() + " 2>&1").c_str(), nullptr);
      ::_exit(127);
    }
    return child;
  };
  const auto shards_in = [&](const fs::path& part) {
    int shards = 0;
    if (fs::exists(part))
      for (const auto& e : fs::directory_iterator(part)) shards += e.path().extension() == ".safetensors";
    return shards;
  };
  const fs::path part1 = dir / "two" / "parts" / "part-0001-of-0002";
  const auto wait_for_shards = [&](int n) {
    for (int i = 0; i < 2400 && shards_in(part1) < n; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
  };
  const pid_t first = start_job(dir / "first.log");
  wait_for_shards(3);
  ::system(("pkill -9 -f -- '--out " + (dir / "two").string() + " '").c_str());
  int status = 0;
  ::waitpid(first, &status, 0);
  ASSERT_FALSE(fs::exists(dir / "two" / "manifest.json")) << "the job finished before it was killed";
  const int killed_at = shards_in(part1);
  ASSERT_LT(killed_at, 240);

  const pid_t relaunch = start_job(dir / "relaunch.log");
  wait_for_shards(killed_at + 3);  // running, past its resume
  // Paused (holding its locks) while the second launch tries: the relaunch
  // cannot finish first, however fast the machine.
  // "tw[o]": the regex does not match the shell that runs pkill (stopped, system() would never return).
  const std::string pattern = "'--out " + (dir / "tw[o]").string() + " '";
  ASSERT_EQ(::system(("pkill -STOP -f -- " + pattern).c_str()), 0);
  const auto start = std::chrono::steady_clock::now();
  // Its parts would not collide with the running job's: only --out's lock stops it.
  std::string other_parts = slow;
  other_parts.replace(other_parts.find("--nproc 2"), 9, "--nproc 3");
  const auto [second, second_output] = run_shell(other_parts, dir / "second.log");
  EXPECT_NE(second, 0) << second_output;
  EXPECT_TRUE(test::contains(second_output, "in use by pid")) << second_output;
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(60));
  ::system(("pkill -CONT -f -- " + pattern).c_str());
  ::waitpid(relaunch, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << read_file(dir / "relaunch.log");
  const auto whole = contents(dir / "whole");
  const auto two = contents(dir / "two");
  ASSERT_EQ(two.size(), whole.size());
  for (const auto& [key, value] : whole) EXPECT_TRUE(torch::allclose(two.at(key), value, 1e-3, 1e-3)) << key;
  EXPECT_TRUE(verify_stores({dir / "two"}).ok());
}

// Every number a user types is refused naming its flag before the model
// loads: -1 was read as "all" (--limit) or "the model's context"
// (--max-tokens); a context past the model's was accepted.
TEST(EmbedJob, RefusesNumbersOutOfRangeNamingTheFlag) {
  const auto dir = test::fresh_temp_dir();
  const auto input = write_jsonl(dir, 3, false);
  const auto refusal = [&](const std::function<void(EmbedJobOptions&)>& change) {
    auto o = job(input, dir / "store");
    change(o);
    return test::error_of([&] { run_embed_job(o); });
  };
  EXPECT_TRUE(test::contains(refusal([](auto& o) { o.limit = -1; }), "--limit must be"));
  EXPECT_TRUE(test::contains(refusal([](auto& o) { o.encoder.batch_tokens = 0; }), "--batch-tokens must be"));
  EXPECT_TRUE(
      test::contains(refusal([](auto& o) { o.encoder.batch_tokens = -5; }), "--batch-tokens must be"));
  EXPECT_TRUE(test::contains(refusal([](auto& o) { o.encoder.max_tokens = -1; }), "--max-tokens must be"));
  EXPECT_TRUE(test::contains(refusal([](auto& o) { o.shard_size = 0; }), "--shard-size must be"));
  EXPECT_FALSE(fs::exists(dir / "store")) << "refused before anything is written";
  const std::string context = refusal([](auto& o) { o.encoder.max_tokens = int64_t{1} << 40; });
  EXPECT_TRUE(test::contains(context, "--max-tokens 1099511627776 is out of range")) << context;
  write_file_atomic(dir / "file", "x");
  EXPECT_TRUE(test::contains(refusal([&](auto& o) { o.out = dir / "file"; }), "is not a folder"));
  // A symlink loop is named with its flag (it printed a bare filesystem error).
  fs::create_symlink(dir / "loop1", dir / "loop2");
  fs::create_symlink(dir / "loop2", dir / "loop1");
  const std::string out_loop = refusal([&](auto& o) { o.out = dir / "loop1"; });
  EXPECT_TRUE(test::contains(out_loop, "--out '" + (dir / "loop1").string() + "': cannot read it"))
      << out_loop;
  const std::string input_loop = refusal([&](auto& o) { o.inputs = {(dir / "loop2").string()}; });
  EXPECT_TRUE(test::contains(input_loop, "--input '" + (dir / "loop2").string() + "': cannot read it"))
      << input_loop;
}

// A store resumes only from its inputs: the same keys with other captions
// kept the old vectors (0 embedded, exit 0).
TEST(EmbedJob, RefusesToResumeFromOtherInputs) {
  const auto dir = test::fresh_temp_dir();
  const auto input = write_jsonl(dir, 5, false);
  run_embed_job(job(input, dir / "store"));
  std::string other;
  for (int i = 0; i < 5; ++i)
    other += nlohmann::json{{"key", "k" + std::to_string(i)}, {"long", "Other " + caption(i)}}.dump() + "\n";
  write_file_atomic(dir / "other.jsonl", other);
  const std::string message = test::error_of([&] { run_embed_job(job(dir / "other.jsonl", dir / "store")); });
  EXPECT_TRUE(test::contains(message, "other inputs") && test::contains(message, "other.jsonl")) << message;
  // A store written before the inputs were recorded resumes, and records them.
  auto manifest = read_json_file(dir / "store" / "manifest.json");
  manifest["job"].erase("inputs_sha256");
  write_json_file_atomic(dir / "store" / "manifest.json", manifest);
  fs::remove(dir / "store" / kInputsRecordFile);
  EXPECT_EQ(run_embed_job(job(input, dir / "store")).resumed, 5);
  EXPECT_TRUE(fs::exists(dir / "store" / kInputsRecordFile));
  EXPECT_EQ(run_embed_job(job(input, dir / "store")).resumed, 5);
  // A job that stopped before its first shard (here: an empty input) binds
  // nothing: the next run, with the right input, is not refused.
  write_file_atomic(dir / "empty.jsonl", "");
  EXPECT_TRUE(test::contains(test::error_of([&] { run_embed_job(job(dir / "empty.jsonl", dir / "fresh")); }),
                             "nothing to embed"));
  ASSERT_TRUE(fs::exists(dir / "fresh" / kInputsRecordFile));
  EXPECT_EQ(run_embed_job(job(input, dir / "fresh")).embedded, 5);
}

// --limit stops reading once it has its records; a store of int8 vectors
// reads back as the f32 encoder output to int8 precision.
TEST(EmbedJob, LimitAndInt8Store) {
  const auto dir = test::fresh_temp_dir();
  const auto input = write_jsonl(dir, 13, false);
  auto f16 = job(input, dir / "f16");
  f16.encoder.normalize = true;
  run_embed_job(f16);
  auto o = job(input, dir / "int8");
  o.encoder.normalize = true;
  o.store_dtype = "int8";
  o.limit = 6;
  const auto summary = run_embed_job(o);
  EXPECT_EQ(summary.records, 6);
  const auto reference = contents(dir / "f16");
  const auto got = contents(dir / "int8");
  ASSERT_EQ(got.size(), 6u);
  for (const auto& [key, value] : got) {
    const auto cosine = torch::cosine_similarity(value, reference.at(key), -1);
    EXPECT_GT(cosine.min().item<double>(), 0.999) << key;
  }
}

// The overlapped pipeline (used on GPUs; CPUs run it inline): shards are
// written in push order, each once, resumed ones without encoding, and an
// error on the worker or the writer reaches the caller.
TEST(ShardPipeline, OverlapKeepsOrderAndReportsErrors) {
  for (const bool overlap : {true, false}) {
    std::vector<int64_t> written, encoded;
    std::mutex mutex;
    ShardPipeline pipeline(
        [&](ShardWork& w) {
          std::lock_guard<std::mutex> lock(mutex);
          encoded.push_back(w.shard);
          return torch::full({1}, static_cast<double>(w.shard));
        },
        [&](const ShardWork& w, const torch::Tensor& e) {
          EXPECT_EQ(e.defined(), !w.resumed);
          if (e.defined()) EXPECT_EQ(e.item<double>(), static_cast<double>(w.shard));
          written.push_back(w.shard);  // the writer runs one shard at a time
        },
        overlap);
    for (int64_t s = 0; s < 20; ++s) {
      ShardWork w;
      w.shard = s;
      w.resumed = s % 7 == 3;
      pipeline.push(std::move(w));
    }
    pipeline.finish();
    std::vector<int64_t> all(20);
    std::iota(all.begin(), all.end(), 0);
    EXPECT_EQ(written, all) << overlap;
    EXPECT_EQ(encoded.size(), 17u) << overlap;  // 3, 10 and 17 were on disk
  }
  ShardPipeline failing(
      [](ShardWork& w) -> torch::Tensor {
        if (w.shard == 2) throw Error("encode failed on shard 2");
        return torch::zeros({1});
      },
      [](const ShardWork&, const torch::Tensor&) {});
  const std::string message = test::error_of([&] {
    for (int64_t s = 0; s < 50; ++s) {
      ShardWork w;
      w.shard = s;
      failing.push(std::move(w));
    }
    failing.finish();
  });
  EXPECT_TRUE(test::contains(message, "encode failed on shard 2")) << message;
}

// A store is computed one way: resuming it with another compute dtype or
// encode mode would mix rounding, and is refused naming what differs.
TEST(EmbedJob, RefusesToResumeWithAnotherDtypeOrMode) {
  const auto dir = test::fresh_temp_dir();
  const auto input = write_jsonl(dir, 5, false);
  run_embed_job(job(input, dir / "store"));
  EXPECT_EQ(EmbeddingStore::open(dir / "store").manifest()["computation"],
            (nlohmann::json{{"compute_dtype", "f32"}, {"mode", "fda"}}));
  auto bf16 = job(input, dir / "store");
  bf16.compute_dtype = "bfloat16";
  const std::string dtype = test::error_of([&] { run_embed_job(bf16); });
  EXPECT_TRUE(test::contains(dtype, "compute dtype 'f32'") && test::contains(dtype, "'bf16'")) << dtype;
  auto naive = job(input, dir / "store");
  naive.encoder.mode = EncodeMode::Naive;
  const std::string mode = test::error_of([&] { run_embed_job(naive); });
  EXPECT_TRUE(test::contains(mode, "mode 'fda'") && test::contains(mode, "'naive'")) << mode;
  auto same = job(input, dir / "store");
  same.compute_dtype = "fp32";  // another spelling of the same dtype
  EXPECT_EQ(run_embed_job(same).resumed, 5);
}

}  // namespace
}  // namespace flame::text
