// Training: schedule, options, checkpoints, bit-for-bit resume, NaN stop,
// and data parallel (2 processes == 1 process on the same global batch).
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>
#include <functional>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <set>
#include <type_traits>
#include <variant>

#include "data/caption_source.h"
#include "llm/tokenizer.h"
#include "llm/weights.h"
#include "test_helpers.h"
#include "text/clip_text_config.h"
#include "text/clip_tokenize.h"
#include "text/embedding_store.h"
#include "train/checkpoint.h"
#include "train/lr_schedule.h"
#include "train/train_options.h"
#include "train/trained_model.h"
#include "train/trainer.h"
#include "util/error.h"
#include "util/file.h"
#include "vision/vit_config.h"

namespace flame {
namespace {

using test::contains;
using test::error_of;
using test::fresh_temp_dir;
namespace fs = std::filesystem;

// The first `n` Flickr8k training images (names), in split order.
std::vector<std::string> flickr_images(int n) {
  std::ifstream in(test::shared_dir() / "data" / "flickr8k" / "splits" / "train.txt");
  std::vector<std::string> names;
  std::string line;
  while (static_cast<int>(names.size()) < n && std::getline(in, line)) names.push_back(line);
  return names;
}

// A run's inputs: a TSV of `n` real images and a store of K random unit facet
// vectors per image (seeded), written as `flame embed` would.
struct TrainData {
  fs::path tsv, store;
  std::vector<std::string> keys;
};

// `vector_seed` draws the vectors, `llm_config` names the LLM (its config_sha256):
// tests re-embed a store with either changed.
TrainData make_train_data(const fs::path& dir, int n, int64_t k = 3, int64_t d = 16,
                          uint64_t vector_seed = 11, const std::string& llm_config = "c") {
  TrainData data;
  data.keys = flickr_images(n);
  data.tsv = dir / "images.tsv";
  std::string tsv = "image\tcaption\n";
  for (const auto& key : data.keys) tsv += key + "\tunused\n";
  write_file_atomic(data.tsv, tsv);
  text::StoreIdentity id;
  id.llm = {
      {"name", "test"}, {"architecture", "llama"}, {"config_sha256", llm_config}, {"weights_checksum", "w"}};
  id.prompt_set_name = "short";
  id.prompt_set_sha256 = "s";
  for (int64_t i = 0; i < k; ++i) id.facets.push_back("facet" + std::to_string(i));
  id.layer = 1;
  id.dtype = "f16";
  id.num_facets = k;
  id.dim = d;
  id.normalized = true;
  data.store = dir / "store";
  text::EmbeddingStoreWriter writer(data.store, id);
  torch::manual_seed(vector_seed);
  const torch::Tensor e = torch::nn::functional::normalize(
      torch::randn({n, k, d}), torch::nn::functional::NormalizeFuncOptions().dim(-1));
  writer.write_shard(0, data.keys, e);
  writer.finalize();
  return data;
}

train::TrainOptions tiny_options(const TrainData& data, const fs::path& out) {
  train::TrainOptions o;
  o.model = "vit-micro-32";
  o.images = data.tsv.string();
  o.image_dir = (test::shared_dir() / "data" / "flickr8k" / "images").string();
  o.text_stores = {data.store.string()};
  o.out = out.string();
  o.batch_size = 8;
  o.steps = 6;
  o.warmup_steps = 2;
  o.lr = 1e-3;
  o.save_every = 3;
  o.workers = 2;
  o.seed = 5;
  return o;
}

std::map<std::string, torch::Tensor> checkpoint_tensors(const fs::path& dir) {
  const llm::WeightFiles files(dir);
  std::map<std::string, torch::Tensor> out;
  for (const auto& name : files.names()) out[name] = files.get(name, torch::kFloat32, torch::kCPU).clone();
  return out;
}

TEST(TrainedModel, ACorruptCheckpointConfigIsNamed) {
  // A string text_dim or a numeric text_tower escaped as nlohmann exceptions
  // ("internal error"); absurd shapes went on to allocate terabytes, and a
  // huge mlp_ratio was cast to int64 (undefined).
  const nlohmann::json vit = vision::to_json(vision::load_vit_config("vit-micro-32"));
  const nlohmann::json good = {{"vit", vit}, {"text_dim", 64}, {"image_projection", "mlp"}};
  EXPECT_EQ(train::model_from_config(good, "c.json").image->text_dim(), 64);
  const auto message = [&](const nlohmann::json& config) {
    return error_of([&] { train::model_from_config(config, "c.json"); });
  };
  auto bad = good;
  bad["text_dim"] = "64";
  EXPECT_TRUE(contains(message(bad), "c.json: field 'text_dim' must be an integer")) << message(bad);
  bad = good;
  bad["text_tower"] = 3;
  EXPECT_TRUE(contains(message(bad), "c.json: field 'text_tower' must be a string")) << message(bad);
  bad = good;
  bad["vit"]["width"] = int64_t{1} << 40;
  bad["vit"]["heads"] = 1;
  EXPECT_TRUE(contains(message(bad), "more than the limit of 1e+11: the config is corrupt")) << message(bad);
  bad = good;
  bad["vit"]["mlp_ratio"] = 1e300;
  EXPECT_TRUE(
      contains(message(bad), "field 'mlp_ratio' must give an MLP width of at least 1 (and below 1e15)"))
      << message(bad);
}

TEST(LrSchedule, WarmupThenCosineToMin) {
  EXPECT_DOUBLE_EQ(train::cosine_lr(0, 100, 10, 1.0), 0.1);
  EXPECT_DOUBLE_EQ(train::cosine_lr(9, 100, 10, 1.0), 1.0);
  EXPECT_DOUBLE_EQ(train::cosine_lr(10, 100, 10, 1.0), 1.0);  // the cosine starts at the peak
  EXPECT_NEAR(train::cosine_lr(99, 100, 10, 1.0, 0.1), 0.1, 1e-12);
  // Half-way through the decay: the mean of peak and floor.
  EXPECT_NEAR(train::cosine_lr(10 + 89 / 2, 100, 10, 2.0, 0.0), 2.0 * 0.5 * (1 + std::cos(M_PI * 44.0 / 89)),
              1e-12);
  double previous = 1e9;
  for (int64_t s = 10; s < 100; ++s) {
    const double lr = train::cosine_lr(s, 100, 10, 1.0);
    EXPECT_LE(lr, previous);
    previous = lr;
  }
  EXPECT_DOUBLE_EQ(train::cosine_lr(0, 1, 0, 0.5), 0.5);  // a one-step run
}

TEST(TrainOptions, JsonRoundTripAndErrors) {
  train::TrainOptions o;
  o.model = "vit-s-16";
  o.text_stores = {"a", "b"};
  o.seed = 9;
  o.precision = train::Precision::kBf16;
  o.loss = train::LossKind::kSigmoid;
  nlohmann::json j;
  train::to_json(j, o);
  // Choices are stored by name, as before they were enums: old configs and
  // checkpoints still read.
  EXPECT_EQ(j.at("precision"), "bf16");
  EXPECT_EQ(j.at("loss"), "sigmoid");
  EXPECT_EQ(j.at("text_tower"), "llm");
  train::TrainOptions back;
  train::from_json(j, back);
  nlohmann::json j2;
  train::to_json(j2, back);
  EXPECT_EQ(j, j2);
  try {
    train::from_json({{"bach_size", 3}}, back);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown field 'bach_size'"), std::string::npos) << e.what();
  }
  try {
    train::from_json({{"steps", "ten"}}, back);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'steps'"), std::string::npos) << e.what();
  }
  train::TrainOptions v;
  v.images = "x.tsv";
  v.text_stores = {"s"};
  v.out = "o";
  v.batch_size = 12;
  v.accum_steps = 4;
  EXPECT_NO_THROW(train::validate(v, 1));
  try {
    train::validate(v, 2);  // 12 images over 2 ranks x 4 steps
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("multiple of ranks x accumulation steps (2 x 4)"), std::string::npos)
        << e.what();
  }
  // A bad choice fails where it is read, naming the field and the names allowed.
  EXPECT_TRUE(contains(error_of([&] {
                         train::from_json({{"loss", "hinge"}}, v);
                       }),
                       "train options: field 'loss' must be infonce or sigmoid, not 'hinge'"));
  EXPECT_TRUE(contains(error_of([&] {
                         train::from_json({{"precision", "fp16"}}, v);
                       }),
                       "field 'precision' must be fp32 or bf16, not 'fp16'"));
  EXPECT_THROW(train::from_json({{"loss", 1}}, v), Error);
}

TEST(Train, LossDecreasesAndLogsEveryStep) {
  const fs::path dir = fresh_temp_dir();
  const TrainData data = make_train_data(dir, 16);
  train::TrainOptions o = tiny_options(data, dir / "run");
  o.steps = 30;
  o.save_every = 100;  // only the final checkpoint
  o.warmup_steps = 3;
  std::vector<train::StepLog> logs;
  train::TrainHooks hooks;
  hooks.on_step = [&](const train::StepLog& s) { logs.push_back(s); };
  const train::TrainSummary summary = train::run_training(o, false, hooks);
  ASSERT_EQ(logs.size(), 30u);
  EXPECT_EQ(summary.steps, 30);
  const double first = (logs[0].loss + logs[1].loss + logs[2].loss) / 3;
  const double last = (logs[27].loss + logs[28].loss + logs[29].loss) / 3;
  EXPECT_LT(last, 0.8 * first) << "first " << first << " last " << last;
  EXPECT_NEAR(logs[0].logit_scale, 1 / 0.07, 0.5);
  EXPECT_NEAR(logs[2].lr, 1e-3, 1e-12);  // end of warm-up
  for (const auto& s : logs) {
    EXPECT_GE(s.data_wait_fraction, 0);
    EXPECT_LE(s.data_wait_fraction, 1.0001);
    EXPECT_GT(s.images_per_second, 0);
  }
  // The JSONL log has one line per step with the fields a user plots.
  std::ifstream in(dir / "run" / "train-log.jsonl");
  std::string line;
  int lines = 0;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    for (const char* field : {"step", "loss", "lr", "logit_scale", "images_per_s", "data_wait_fraction"}) {
      EXPECT_TRUE(j.contains(field)) << field;
    }
    ++lines;
  }
  EXPECT_EQ(lines, 30);
  EXPECT_TRUE(fs::exists(dir / "run" / "summary.json"));
  EXPECT_EQ(summary.last_checkpoint.filename(), "step-00000030");
  // The checkpoint loads into an encoder for evaluation with the trained weights.
  auto encoder = train::load_image_encoder(dir / "run");
  const auto saved = checkpoint_tensors(summary.last_checkpoint);
  EXPECT_TRUE(torch::equal(encoder->logit_scale.detach(), saved.at("logit_scale")));
  // It records the text side it was trained against, for eval and interpret.
  const nlohmann::json config = read_json_file(summary.last_checkpoint / "config.json");
  ASSERT_EQ(config["text_stores"].size(), 1u);
  nlohmann::json identity = config["text_stores"][0];
  EXPECT_EQ(identity["content_sha256"].get<std::string>().size(), 64u);  // what the store holds
  identity.erase("content_sha256");
  EXPECT_EQ(identity, text::identity_to_json(text::EmbeddingStore::open(data.store).identity()));
  EXPECT_EQ(config["text_stores"][0]["layer"], 1);
  EXPECT_EQ(config["text_stores"][0]["prompt_set"]["name"], "short");
}

// `vary` changes the options of both runs.
void expect_resume_bit_for_bit(const std::function<void(train::TrainOptions&)>& vary) {
  const fs::path dir = fresh_temp_dir();
  const TrainData data = make_train_data(dir, 24);
  // Uninterrupted: 6 steps, checkpoints at 3 and 6.
  train::TrainOptions full = tiny_options(data, dir / "full");
  vary(full);
  std::vector<double> full_losses;
  train::TrainHooks record;
  record.on_step = [&](const train::StepLog& s) { full_losses.push_back(s.loss); };
  train::run_training(full, false, record);
  ASSERT_EQ(full_losses.size(), 6u);

  // Interrupted after step 4 (the last checkpoint is step 3), then resumed.
  train::TrainOptions cut = tiny_options(data, dir / "cut");
  vary(cut);
  train::TrainHooks stop;
  stop.stop_after_step = 4;
  train::run_training(cut, false, stop);
  ASSERT_EQ(train::latest_checkpoint(dir / "cut")->filename(), "step-00000003");
  std::vector<double> resumed_losses;
  train::TrainHooks record2;
  record2.on_step = [&](const train::StepLog& s) { resumed_losses.push_back(s.loss); };
  cut.workers = 1;  // the thread count is not part of the run's identity
  const train::TrainSummary summary = train::run_training(cut, true, record2);
  EXPECT_EQ(summary.first_step, 3);
  ASSERT_EQ(resumed_losses.size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(resumed_losses[i], full_losses[3 + i]) << "step " << 4 + i;

  const auto a = checkpoint_tensors(dir / "full" / "checkpoints" / "step-00000006");
  const auto b = checkpoint_tensors(dir / "cut" / "checkpoints" / "step-00000006");
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, t] : a) EXPECT_TRUE(torch::equal(t, b.at(name))) << name;
  // Optimizer moments too.
  const SafetensorsFile ma(dir / "full" / "checkpoints" / "step-00000006" / "optimizer.safetensors");
  const SafetensorsFile mb(dir / "cut" / "checkpoints" / "step-00000006" / "optimizer.safetensors");
  EXPECT_EQ(ma.header().metadata, mb.header().metadata);
  for (const auto& [name, info] : ma.tensors()) {
    EXPECT_TRUE(torch::equal(llm::mapped_tensor(ma, info), llm::mapped_tensor(mb, mb.info(name)))) << name;
  }
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir / "cut" / "checkpoints"))
    names.push_back(e.path().filename());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"latest", "step-00000003", "step-00000006"}));
}

TEST(Train, ResumeIsBitForBit) {
  expect_resume_bit_for_bit([](train::TrainOptions&) {});
}

// A random 2 of the 3 positives per image per step (the recipe's draw), 2
// epochs of 24 images at batch 8 instead of --steps (6 steps either way), and
// gradient checkpointing: a resumed run still continues exactly.
TEST(Train, ResumeIsBitForBitWithPositivesPerStepAndEpochs) {
  expect_resume_bit_for_bit([](train::TrainOptions& o) {
    o.positives_per_step = 2;
    o.epochs = 2;
    o.steps = 1;
    o.grad_checkpointing = true;
  });
}

// Each step trains on its own draw of positives: the loss differs from a run
// on all of them, and the run refuses more positives than the stores hold.
TEST(Train, PositivesPerStepDrawsASubset) {
  const fs::path dir = fresh_temp_dir();
  const TrainData data = make_train_data(dir, 16);
  std::vector<double> all, subset;
  train::TrainOptions o = tiny_options(data, dir / "all");
  o.steps = 2;
  train::TrainHooks record_all;
  record_all.on_step = [&](const train::StepLog& s) { all.push_back(s.loss); };
  train::run_training(o, false, record_all);
  o.out = (dir / "subset").string();
  o.positives_per_step = 1;
  train::TrainHooks record_subset;
  record_subset.on_step = [&](const train::StepLog& s) { subset.push_back(s.loss); };
  train::run_training(o, false, record_subset);
  ASSERT_EQ(subset.size(), 2u);
  EXPECT_NE(all[0], subset[0]);
  o.out = (dir / "too-many").string();
  o.positives_per_step = 4;
  EXPECT_TRUE(contains(error_of([&] { train::run_training(o, false); }),
                       "--positives-per-step 4 exceeds the 3 positives per image"));
}

std::vector<int64_t> logged_steps(const fs::path& run) {
  std::vector<int64_t> steps;
  std::ifstream in(run / "train-log.jsonl");
  for (std::string line; std::getline(in, line);) steps.push_back(nlohmann::json::parse(line).at("step"));
  return steps;
}

// A folder that holds a run is not trained into again by accident (two runs'
// checkpoints and logs would mix): --resume continues it, --overwrite deletes
// it first, and a second process on the folder is refused naming the holder.
TEST(Train, AFolderHoldingARunIsResumedOrOverwrittenNeverMixed) {
  const fs::path dir = fresh_temp_dir();
  const TrainData data = make_train_data(dir, 16);
  train::TrainOptions o = tiny_options(data, dir / "run");
  o.steps = 2;
  train::run_training(o, train::RunStart::kNew);
  const std::string again = error_of([&] { train::run_training(o, train::RunStart::kNew); });
  EXPECT_TRUE(contains(again, "already holds a run") && contains(again, "--resume") &&
              contains(again, "--overwrite"))
      << again;
  EXPECT_EQ(logged_steps(dir / "run"), (std::vector<int64_t>{1, 2}));  // untouched

  o.steps = 3;
  o.seed = 6;
  train::run_training(o, train::RunStart::kOverwrite);
  EXPECT_EQ(logged_steps(dir / "run"), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(train::latest_checkpoint(dir / "run")->filename(), "step-00000003");
  EXPECT_FALSE(fs::exists(dir / "run" / "checkpoints" / "step-00000002"));  // the old run's

  const DirectoryLock holder(dir / "run", "the run folder");
  const std::string locked = error_of([&] { train::run_training(o, train::RunStart::kResume); });
  EXPECT_TRUE(contains(locked, fmt::format("the run folder is in use by pid {} on host", ::getpid())))
      << locked;
}

// kill -9 after step 4 (last checkpoint: step 3), with a half-written log line
// and an interrupted checkpoint write left behind: the resumed run removes the
// leftovers and logs steps 4.. once.
TEST(Train, ResumeCutsTheLogToTheCheckpointAndRemovesInterruptedWrites) {
  const fs::path dir = fresh_temp_dir();
  const TrainData data = make_train_data(dir, 24);
  train::TrainOptions o = tiny_options(data, dir / "run");
  train::TrainHooks stop;
  stop.stop_after_step = 4;
  train::run_training(o, false, stop);
  {
    std::ofstream log(dir / "run" / "train-log.jsonl", std::ios::app);
    log << R"({"step": 5, "lo)";
  }
  fs::create_directories(dir / "run" / "checkpoints" / ".step-00000006.tmp-99999");
  write_file_atomic(dir / "run" / "checkpoints" / ".step-00000006.tmp-99999" / "model.safetensors",
                    "partial");
  write_file_atomic(dir / "run" / ".summary.json.tmp.99999.1f", "{");
  const train::TrainSummary summary = train::run_training(o, true);
  EXPECT_EQ(summary.first_step, 3);
  EXPECT_EQ(logged_steps(dir / "run"), (std::vector<int64_t>{1, 2, 3, 4, 5, 6}));
  EXPECT_FALSE(fs::exists(dir / "run" / "checkpoints" / ".step-00000006.tmp-99999"));
  EXPECT_FALSE(fs::exists(dir / "run" / ".summary.json.tmp.99999.1f"));
  EXPECT_TRUE(fs::exists(dir / "run" / "checkpoints" / "step-00000006" / "model.safetensors"));
}

// Killed while writing summary.json after the last step: --resume writes the
// summary (it exited 1, "already done", and never wrote it); with the summary
// there, a resume has nothing to do and says so.
TEST(Train, AFinishedRunWithoutItsSummaryGetsOneOnResume) {
  const fs::path dir = fresh_temp_dir();
  const TrainData data = make_train_data(dir, 16);
  train::TrainOptions o = tiny_options(data, dir / "run");
  o.steps = 3;
  const train::TrainSummary full = train::run_training(o, false);
  fs::remove(dir / "run" / "summary.json");
  const train::TrainSummary resumed = train::run_training(o, true);
  EXPECT_EQ(resumed.steps, 3);
  EXPECT_EQ(resumed.final_loss, full.final_loss);
  const nlohmann::json written = read_json_file(dir / "run" / "summary.json");
  EXPECT_EQ(written["steps"], 3);
  EXPECT_EQ(written["last_checkpoint"], (dir / "run" / "checkpoints" / "step-00000003").string());
  EXPECT_TRUE(contains(error_of([&] { train::run_training(o, true); }), "has already done 3 of 3 steps"));
}

TEST(Train, ResumeRefusesOtherOptions) {
  const fs::path dir = fresh_temp_dir();
  const TrainData data = make_train_data(dir, 16);
  train::TrainOptions o = tiny_options(data, dir / "run");
  o.steps = 3;
  train::run_training(o, false);
  o.steps = 6;
  o.lr = 2e-3;
  try {
    train::run_training(o, true);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'lr' was 0.001"), std::string::npos) << e.what();
  }
}

TEST(Train, NonFiniteLossStopsWithTheCheckpointIntact) {
  const fs::path dir = fresh_temp_dir();
  const TrainData data = make_train_data(dir, 16);
  train::TrainOptions o = tiny_options(data, dir / "run");
  o.save_every = 2;
  train::TrainHooks hooks;
  hooks.before_step = [](int64_t step, vision::ImageEncoder& encoder) {
    if (step == 3) {
      torch::NoGradGuard no_grad;
      encoder->projector->fc2->weight.fill_(std::nan(""));
    }
  };
  try {
    train::run_training(o, false, hooks);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("the loss is nan at step 4"), std::string::npos) << what;
    // The message names the plausible causes, the learning rate first, not only the data.
    EXPECT_NE(what.find("likely causes: a learning rate too high for this model (lr "), std::string::npos)
        << what;
    EXPECT_NE(what.find("step-00000002"), std::string::npos) << what;
  }
  const auto latest = train::latest_checkpoint(dir / "run");
  ASSERT_TRUE(latest.has_value());
  EXPECT_EQ(latest->filename(), "step-00000002");
  for (const auto& [name, t] : checkpoint_tensors(*latest))
    EXPECT_TRUE(torch::isfinite(t).all().item<bool>()) << name;
}

TEST(Train, BadInputIsNamed) {
  const fs::path dir = fresh_temp_dir();
  const TrainData data = make_train_data(dir, 16);
  train::TrainOptions o = tiny_options(data, dir / "run");
  o.text_stores = {(dir / "missing-store").string()};
  try {
    train::run_training(o, false);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing-store"), std::string::npos) << e.what();
  }
}

TEST(TrainOptions, TextTowerChoosesItsInputs) {
  train::TrainOptions v;
  v.images = "x.tsv";
  v.out = "o";
  v.text_tower = train::TextTower::kClip;
  EXPECT_TRUE(
      contains(error_of([&] { train::validate(v, 1); }), "--text-tower clip needs captions (--captions)"));
  v.captions = {"c.tsv"};
  EXPECT_NO_THROW(train::validate(v, 1));
  v.text_stores = {"s"};
  EXPECT_TRUE(contains(error_of([&] { train::validate(v, 1); }),
                       "--texts (embedding stores) is for --text-tower llm"));
  v.text_tower = train::TextTower::kLlm;
  EXPECT_TRUE(contains(error_of([&] { train::validate(v, 1); }), "--captions is for --text-tower clip"));
  EXPECT_TRUE(contains(error_of([&] {
                         train::from_json({{"text_tower", "bert"}}, v);
                       }),
                       "must be llm or clip, not 'bert'"));
  // A FLAME run's resume identity has no CLIP fields (older checkpoints still
  // resume); a CLIP run's has its own and no stores.
  train::TrainOptions flame;
  flame.text_stores = {"s"};
  const nlohmann::json a = train::resume_identity(flame);
  EXPECT_FALSE(a.contains("text_tower") || a.contains("captions") || a.contains("clip_text"));
  EXPECT_TRUE(a.contains("text_stores"));
  train::TrainOptions clip;
  clip.text_tower = train::TextTower::kClip;
  clip.captions = {"c.tsv"};
  const nlohmann::json b = train::resume_identity(clip);
  EXPECT_EQ(b.at("text_tower"), "clip");
  EXPECT_EQ(b.at("clip_text"), "clip-text-b");
  EXPECT_FALSE(b.contains("text_stores"));
}

// The CLIP baseline on the same images: the Flickr8k captions of each image
// joined (as FLAME's long descriptions), a micro text tower trained with it.
train::TrainOptions clip_options(const TrainData& data, const fs::path& out) {
  train::TrainOptions o = tiny_options(data, out);
  o.text_stores.clear();
  o.text_tower = train::TextTower::kClip;
  o.clip_text = "clip-text-micro";
  o.captions = {(test::shared_dir() / "data" / "flickr8k" / "captions.tsv").string()};
  o.caption_join = true;
  return o;
}

TEST(TrainClip, LossDecreasesAndTheCheckpointHoldsBothTowers) {
  const fs::path dir = fresh_temp_dir();
  const TrainData data = make_train_data(dir, 16);
  train::TrainOptions o = clip_options(data, dir / "run");
  o.steps = 30;
  o.save_every = 100;
  o.warmup_steps = 3;
  std::vector<double> losses;
  train::TrainHooks hooks;
  hooks.on_step = [&](const train::StepLog& s) { losses.push_back(s.loss); };
  const train::TrainSummary summary = train::run_training(o, false, hooks);
  ASSERT_EQ(losses.size(), 30u);
  const double first = (losses[0] + losses[1] + losses[2]) / 3;
  const double last = (losses[27] + losses[28] + losses[29]) / 3;
  EXPECT_LT(last, 0.8 * first) << "first " << first << " last " << last;

  // Truncation is counted over the captions trained on: 30 steps x 8 = 15
  // epochs of the 16 images, each epoch cutting the same descriptions.
  data::CaptionSourceOptions join;
  join.tsv_join = true;
  std::vector<std::string> descriptions;
  for (const auto& r : data::read_captions(o.captions, join).records) {
    if (std::count(data.keys.begin(), data.keys.end(), r.key)) descriptions.push_back(r.fields.at("caption"));
  }
  ASSERT_EQ(descriptions.size(), 16u);
  const text::ClipTextConfig tower = text::load_clip_text_config("clip-text-micro");
  const int64_t cut_per_epoch =
      text::clip_tokenize(*llm::Tokenizer::load(tower.tokenizer_path()), descriptions, 77).truncated;
  EXPECT_GT(cut_per_epoch, 0);  // the 16 descriptions include long ones
  EXPECT_EQ(summary.truncated_captions, 15 * cut_per_epoch);

  // Both towers by name: the image tower with CLIP's linear projection (no
  // MLP projector), the text tower under text.*.
  const auto saved = checkpoint_tensors(summary.last_checkpoint);
  for (const char* name : {"image.proj.weight", "image.logit_scale", "image.vit.conv1.weight",
                           "text.token_embedding.weight", "text.positional_embedding", "text.text_projection",
                           "text.transformer.resblocks.1.attn.in_proj_weight", "text.ln_final.weight"}) {
    EXPECT_TRUE(saved.count(name)) << name;
  }
  for (const auto& [name, t] : saved) EXPECT_EQ(name.find("projector"), std::string::npos) << name;
  EXPECT_EQ(saved.at("image.proj.weight").sizes(), (std::vector<int64_t>{64, 64}));  // embed_dim x ViT width
  const nlohmann::json config = read_json_file(summary.last_checkpoint / "config.json");
  EXPECT_EQ(config.at("text_tower"), "clip");
  EXPECT_EQ(config.at("image_projection"), "linear");
  EXPECT_EQ(config.at("vocab_size"), 49153);
  EXPECT_EQ(config.at("facets"), nlohmann::json::array({"caption"}));

  // It loads back as a CLIP model with the trained weights in both towers.
  const train::TrainedModel model = train::load_trained_model(dir / "run");
  ASSERT_TRUE(model.is_clip());
  EXPECT_TRUE(
      torch::equal(model.text->token_embedding->weight.detach(), saved.at("text.token_embedding.weight")));
  EXPECT_TRUE(torch::equal(model.image->proj->weight.detach(), saved.at("image.proj.weight")));
  // Embeddings and norms skip weight decay, matrices of both towers take it.
  const auto has = [](const std::vector<torch::Tensor>& group, const torch::Tensor& t) {
    return std::any_of(group.begin(), group.end(), [&](const torch::Tensor& g) { return g.is_same(t); });
  };
  EXPECT_TRUE(has(model.no_decay_parameters(), model.text->token_embedding->weight));
  EXPECT_TRUE(has(model.no_decay_parameters(), model.text->positional_embedding));
  EXPECT_TRUE(has(model.decay_parameters(), model.text->text_projection));
  EXPECT_TRUE(has(model.decay_parameters(), model.image->proj->weight));
  EXPECT_EQ(model.decay_parameters().size() + model.no_decay_parameters().size(),
            model.root->parameters().size());
}

TEST(TrainClip, ResumeIsBitForBit) {
  const fs::path dir = fresh_temp_dir();
  const TrainData data = make_train_data(dir, 16);
  train::TrainOptions full = clip_options(data, dir / "full");
  full.steps = 4;
  full.save_every = 2;
  std::vector<double> full_losses, resumed_losses;
  train::TrainHooks record;
  record.on_step = [&](const train::StepLog& s) { full_losses.push_back(s.loss); };
  train::run_training(full, false, record);

  train::TrainOptions cut = full;
  cut.out = (dir / "cut").string();
  train::TrainHooks stop;
  stop.stop_after_step = 3;
  train::run_training(cut, false, stop);
  train::TrainHooks record2;
  record2.on_step = [&](const train::StepLog& s) { resumed_losses.push_back(s.loss); };
  EXPECT_EQ(train::run_training(cut, true, record2).first_step, 2);
  ASSERT_EQ(resumed_losses.size(), 2u);
  EXPECT_EQ(resumed_losses[0], full_losses[2]);
  EXPECT_EQ(resumed_losses[1], full_losses[3]);
  const auto a = checkpoint_tensors(dir / "full" / "checkpoints" / "step-00000004");
  const auto b = checkpoint_tensors(dir / "cut" / "checkpoints" / "step-00000004");
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, t] : a) EXPECT_TRUE(torch::equal(t, b.at(name))) << name;
}

// Data parallel: `scripts/launch --nproc 2 -- flame train` gives the same
// parameters as one process on the same global batch (the gradient of the
// gathered-batch loss, all-reduced with a sum, is the single-process one).
// `text_args` chooses the text side; "{store}" stands for the test's store.
void expect_two_processes_equal_one(const std::string& text_args) {
  const fs::path dir = fresh_temp_dir();
  const TrainData data = make_train_data(dir, 16);
  std::string text = text_args;
  if (const size_t at = text.find("{store}"); at != std::string::npos)
    text.replace(at, 7, data.store.string());
  auto command = [&](const fs::path& out) {
    return fmt::format(
        "{} train --model vit-micro-32 --images {} --image-dir {} {} --out {} --batch-size 8 --steps 3 "
        "--warmup-steps 1 --lr 1e-3 --seed 5 --workers 1 --threads 1 --log-level warn",
        FLAME_CLI_PATH, data.tsv.string(), (test::shared_dir() / "data" / "flickr8k" / "images").string(),
        text, out.string());
  };
  const std::string launch = std::string(FLAME_SOURCE_DIR) + "/scripts/launch";
  ASSERT_EQ(std::system((launch + " --nproc 2 -- " + command(dir / "two") + " > " +
                         (dir / "two.log").string() + " 2>&1")
                            .c_str()),
            0)
      << read_file(dir / "two.log");
  ASSERT_EQ(std::system((command(dir / "one") + " > " + (dir / "one.log").string() + " 2>&1").c_str()), 0)
      << read_file(dir / "one.log");
  const auto one = checkpoint_tensors(dir / "one" / "checkpoints" / "step-00000003");
  const auto two = checkpoint_tensors(dir / "two" / "checkpoints" / "step-00000003");
  ASSERT_EQ(one.size(), two.size());
  double worst = 0;
  for (const auto& [name, t] : one) {
    worst = std::max(worst, (t - two.at(name)).abs().max().item<double>());
  }
  EXPECT_LT(worst, 2e-5);
  // Same losses step by step, and they change: the parameters did move.
  auto losses = [](const fs::path& log) {
    std::vector<double> out;
    std::ifstream in(log);
    std::string line;
    while (std::getline(in, line)) out.push_back(nlohmann::json::parse(line)["loss"].get<double>());
    return out;
  };
  const auto l1 = losses(dir / "one" / "train-log.jsonl"), l2 = losses(dir / "two" / "train-log.jsonl");
  ASSERT_EQ(l1.size(), 3u);
  ASSERT_EQ(l2.size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(l1[i], l2[i], 1e-5);
  EXPECT_NE(l1[0], l1[2]);
  const auto state = read_json_file(dir / "two" / "checkpoints" / "step-00000003" / "state.json");
  EXPECT_EQ(state["world_size"], 2);
  EXPECT_EQ(state["loader"].size(), 2u);
}

// Integer fields must be integers and hyper-parameters finite: {"batch_size":
// 1.5} became 1, a seed of -1 became 18446744073709551615, NaN weight decay
// was accepted and the NaN loss later blamed on the data; a huge
// accumulation count overflowed the batch check.
// Every row of the option table (train::train_fields) goes the whole way:
// a value other than its default survives to_json / from_json, the flag sets
// that field (flame train --print-config), and the resume identity holds it
// exactly when the row says so. A row missing a place would fail here.
TEST(TrainOptions, EveryFieldRoundTripsThroughJsonCliAndResumeIdentity) {
  using R = train::TrainField::Resume;
  const std::string cli = FLAME_CLI_PATH;
  for (const train::TrainField& f : train::train_fields()) {
    train::TrainOptions changed;
    std::string flag_value;  // what the flag is given ("" for a bool flag)
    std::visit(
        [&](auto member) {
          using T = std::decay_t<decltype(changed.*member)>;
          if constexpr (std::is_same_v<T, std::string>) {
            changed.*member = flag_value = "x-value";
          } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
            changed.*member = {flag_value = "x-value"};
          } else if constexpr (std::is_same_v<T, bool>) {
            changed.*member = !(changed.*member);
          } else if constexpr (std::is_same_v<T, double>) {
            changed.*member += 0.25;
            flag_value = fmt::format("{}", changed.*member);
          } else if constexpr (std::is_enum_v<T>) {
            changed.*member = static_cast<T>(1 - static_cast<int>(changed.*member));  // the other of two
            flag_value = train::to_string(changed.*member);
          } else {
            changed.*member += 3;
            flag_value = fmt::format("{}", changed.*member);
          }
        },
        f.member);
    nlohmann::json want, defaults;
    train::to_json(want, changed);
    train::to_json(defaults, train::TrainOptions{});
    ASSERT_TRUE(want.contains(f.name)) << f.name;
    EXPECT_NE(want[f.name], defaults[f.name]) << f.name;
    train::TrainOptions back;
    train::from_json(want, back);
    nlohmann::json again;
    train::to_json(again, back);
    EXPECT_EQ(again, want) << f.name;

    const auto r = test::run_command(cli + " train --print-config " + f.flag +
                                     (flag_value.empty() ? "" : " " + flag_value) + " 2>&1");
    ASSERT_EQ(r.status, 0) << f.flag << ": " << r.output;
    EXPECT_EQ(nlohmann::json::parse(r.output)[f.name], want[f.name]) << f.flag << ": " << r.output;

    const bool clip = changed.text_tower == train::TextTower::kClip;
    const bool in_identity = f.resume == R::kYes || f.resume == R::kUnlessDefault ||
                             (f.resume == R::kLlmOnly && !clip) || (f.resume == R::kClipOnly && clip);
    const nlohmann::json identity = train::resume_identity(changed);
    EXPECT_EQ(identity.contains(f.name), in_identity) << f.name;
    if (in_identity) EXPECT_EQ(identity[f.name], want[f.name]) << f.name;
    if (f.resume == R::kUnlessDefault) EXPECT_FALSE(train::resume_identity({}).contains(f.name)) << f.name;
  }
  // A FLAME run's identity is what it was before the table (older checkpoints resume).
  const std::set<std::string> flame_identity = {
      "model",       "images",    "image_dir", "split_file",   "text_stores",      "loss",  "batch_size",
      "accum_steps", "lr",        "min_lr",    "warmup_steps", "weight_decay",     "beta1", "beta2",
      "eps",         "grad_clip", "precision", "seed",         "max_skip_fraction"};
  std::set<std::string> got;
  const nlohmann::json default_identity = train::resume_identity({});
  for (const auto& [key, value] : default_identity.items()) got.insert(key);
  EXPECT_EQ(got, flame_identity);
}

TEST(TrainOptions, NumbersAreReadStrictly) {
  train::TrainOptions o;
  const auto from = [&](const nlohmann::json& j) { return error_of([&] { train::from_json(j, o); }); };
  EXPECT_TRUE(
      contains(from({{"batch_size", 1.5}}), "train options: field 'batch_size' must be an integer, got 1.5"))
      << from({{"batch_size", 1.5}});
  EXPECT_TRUE(contains(from({{"seed", -1}}), "field 'seed' must be a non-negative integer, got -1"));
  EXPECT_TRUE(contains(from({{"seed", 2.5}}), "field 'seed' must be a non-negative integer"));
  EXPECT_TRUE(contains(from({{"steps", uint64_t{1} << 63}}), "field 'steps' is too large"));
  EXPECT_TRUE(contains(from({{"workers", int64_t{1} << 40}}), "field 'workers' is out of range"));
  EXPECT_TRUE(
      contains(from({{"weight_decay", std::nan("")}}), "field 'weight_decay' must be a finite number"));
  EXPECT_TRUE(contains(from({{"lr", "0.1"}}), "field 'lr' must be a number"));
  EXPECT_EQ(from({{"seed", uint64_t{18446744073709551615ULL}}, {"lr", 1}, {"batch_size", 64}}), "");
  EXPECT_EQ(o.seed, 18446744073709551615ULL);
  EXPECT_EQ(o.batch_size, 64);

  train::TrainOptions v;
  v.images = "x.tsv";
  v.text_stores = {"s"};
  v.out = "o";
  const auto check = [&](const std::function<void(train::TrainOptions&)>& change) {
    train::TrainOptions bad = v;
    change(bad);
    return error_of([&] { train::validate(bad, 1); });
  };
  EXPECT_EQ(check([](auto&) {}), "");
  EXPECT_TRUE(
      contains(check([](auto& b) { b.weight_decay = std::nan(""); }), "--weight-decay must be a finite"));
  EXPECT_TRUE(contains(check([](auto& b) { b.lr = INFINITY; }), "--lr must be a finite number, not inf"));
  EXPECT_TRUE(contains(check([](auto& b) { b.beta2 = std::nan(""); }), "--beta2 must be a finite"));
  EXPECT_TRUE(contains(check([](auto& b) { b.eps = std::nan(""); }), "--eps must be a finite"));
  EXPECT_TRUE(contains(check([](auto& b) { b.grad_clip = INFINITY; }), "--grad-clip must be a finite"));
  EXPECT_TRUE(contains(check([](auto& b) { b.min_lr = std::nan(""); }), "--min-lr must be a finite"));
  EXPECT_TRUE(contains(check([](auto& b) { b.max_skip_fraction = std::nan(""); }),
                       "--max-skip-fraction must be a finite"));
  // ranks x accumulation steps overflowed to 0 (a division by zero).
  train::TrainOptions huge = v;
  huge.batch_size = int64_t{1} << 62;
  huge.accum_steps = int64_t{1} << 62;
  EXPECT_TRUE(contains(error_of([&] { train::validate(huge, 4); }),
                       "multiple of ranks x accumulation steps (4 x 4611686018427387904)"));
  EXPECT_TRUE(contains(check([](auto& b) { b.workers = 100000; }), "--workers must be within [0, 1024]"));
  EXPECT_TRUE(contains(check([](auto& b) { b.save_every = 0; }), "--save-every must be positive, not 0"));
}

// An error in a --config file or recipe names the file and the field.
TEST(TrainCli, ConfigErrorsAndBadFlagsAreNamed) {
  const fs::path dir = fresh_temp_dir();
  write_file_atomic(dir / "bad.json", R"({"batch_size": 1.5})");
  const std::string cli = FLAME_CLI_PATH;
  auto r = test::run_command(cli + " train --print-config --config " + (dir / "bad.json").string() + " 2>&1");
  EXPECT_NE(r.status, 0);
  EXPECT_TRUE(contains(
      r.output, (dir / "bad.json").string() + ": train options: field 'batch_size' must be an integer"))
      << r.output;
  write_file_atomic(dir / "recipe.json", R"({"train": {"batch_size": 1.5}})");
  const auto recipe = error_of([&] { train::read_recipe((dir / "recipe.json").string()); });
  EXPECT_TRUE(contains(recipe, "recipe.json") && contains(recipe, "'batch_size' must be an integer"))
      << recipe;
  r = test::run_command(cli + " train --print-config --seed -1 2>&1");
  EXPECT_NE(r.status, 0);
  EXPECT_TRUE(contains(r.output, "--seed must be an integer in [0, 2^64), not '-1'")) << r.output;
  r = test::run_command(cli + " train --print-config --weight-decay nan 2>&1");
  EXPECT_NE(r.status, 0);
  EXPECT_TRUE(contains(r.output, "--weight-decay must be a finite number")) << r.output;
  EXPECT_FALSE(contains(r.output, "internal error")) << r.output;
  r = test::run_command(cli + " train --print-config --seed 18446744073709551615 2>&1");
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "\"seed\": 18446744073709551615")) << r.output;
}

// --epochs over the images must give a countable number of steps.
TEST(Train, AnEpochCountThatOverflowsTheStepsIsNamed) {
  const fs::path dir = fresh_temp_dir();
  const TrainData data = make_train_data(dir, 16);
  train::TrainOptions o = tiny_options(data, dir / "run");
  o.epochs = std::numeric_limits<int64_t>::max() / 4;
  EXPECT_TRUE(contains(error_of([&] { train::run_training(o, false); }),
                       "--epochs 2305843009213693951 over 16 images is more steps than can be counted"));
}

// --resume compares the stores given with the ones the checkpoint trained on,
// by identity and content, not by path: a store embedded again at the same
// path with another LLM, another prompt set (K 3 -> 7) or other vectors is
// refused naming the store and the field; a copy elsewhere resumes.
TEST(Train, ResumeRefusesStoresOtherThanTheRunTrainedOn) {
  const fs::path dir = fresh_temp_dir();
  const fs::path first = dir / "first", other = dir / "other";
  const TrainData data = make_train_data(first, 16);
  train::TrainOptions o = tiny_options(data, dir / "run");
  train::TrainHooks stop;
  stop.stop_after_step = 4;
  train::run_training(o, false, stop);  // checkpoint at step 3
  const nlohmann::json recorded =
      read_json_file(dir / "run" / "checkpoints" / "step-00000003" / "config.json")["text_stores"];
  ASSERT_EQ(recorded.size(), 1u);
  EXPECT_EQ(recorded[0]["content_sha256"].get<std::string>().size(), 64u);

  const auto resume_with = [&](int64_t k, uint64_t vector_seed, const std::string& llm) {
    fs::remove_all(other);
    const TrainData remade = make_train_data(other, 16, k, 16, vector_seed, llm);
    train::TrainOptions r = o;
    r.text_stores = {remade.store.string()};
    return error_of([&] { train::run_training(r, true, stop); });
  };
  const std::string store = (other / "store").string();
  std::string message = resume_with(7, 11, "c");
  EXPECT_TRUE(contains(message, "--texts " + store + " is not the store the run trained on") &&
              contains(message, "num_facets 3, this one 7"))
      << message;
  message = resume_with(3, 11, "another-llm");
  EXPECT_TRUE(contains(message, store) && contains(message, "config_sha256")) << message;
  message = resume_with(3, 12, "c");
  EXPECT_TRUE(contains(message, store) && contains(message, "other contents (content_sha256")) << message;
  // The same content elsewhere (a copy) is the same store.
  EXPECT_EQ(resume_with(3, 11, "c"), "");
  EXPECT_EQ(train::latest_checkpoint(dir / "run")->filename(), "step-00000003");
}

// A checkpoint from before the stores' record resumes as it did (paths compared).
TEST(Train, ACheckpointWithoutTheStoresRecordStillResumes) {
  const fs::path dir = fresh_temp_dir();
  const TrainData data = make_train_data(dir, 16);
  train::TrainOptions o = tiny_options(data, dir / "run");
  train::TrainHooks stop;
  stop.stop_after_step = 4;
  train::run_training(o, false, stop);
  const fs::path config = dir / "run" / "checkpoints" / "step-00000003" / "config.json";
  nlohmann::json old = read_json_file(config);
  old.erase("text_stores");
  write_json_file_atomic(config, old);
  EXPECT_EQ(train::run_training(o, true).first_step, 3);
}

// `train --resume` on a run made by `flame import` (no train_identity) or on a
// hand-edited state.json printed "internal error: key ... not found".
TEST(Train, ResumeOfACheckpointNotWrittenByTrainIsNamed) {
  const fs::path dir = fresh_temp_dir();
  const TrainData data = make_train_data(dir, 16);
  train::TrainOptions o = tiny_options(data, dir / "run");
  o.steps = 3;
  train::run_training(o, false);
  o.steps = 6;
  const fs::path checkpoint = dir / "run" / "checkpoints" / "step-00000003";
  const nlohmann::json config = read_json_file(checkpoint / "config.json");
  const nlohmann::json state = read_json_file(checkpoint / "state.json");
  nlohmann::json imported = config;
  imported.erase("train_identity");
  imported.erase("train");
  imported["imported_from"] = {{"weights", "w.safetensors"}};
  write_json_file_atomic(checkpoint / "config.json", imported);
  std::string message = error_of([&] { train::run_training(o, true); });
  EXPECT_TRUE(contains(message, "was made by `flame import`") && contains(message, "no training state") &&
              contains(message, "another --out"))
      << message;
  write_json_file_atomic(checkpoint / "config.json", config);
  for (const auto& [field, value] : std::vector<std::pair<std::string, nlohmann::json>>{
           {"world_size", "1"}, {"step", nullptr}, {"loader", nlohmann::json::array()}}) {
    nlohmann::json bad = state;
    if (value.is_null()) {
      bad.erase(field);
    } else {
      bad[field] = value;
    }
    write_json_file_atomic(checkpoint / "state.json", bad);
    message = error_of([&] { train::run_training(o, true); });
    EXPECT_TRUE(contains(message, (checkpoint / "state.json").string() + ": ") && contains(message, field))
        << message;
  }
}

// The trainer prunes only its own run's checkpoints: a folder it did not write
// (an import's, another run's) stays, whatever --keep-checkpoints says.
TEST(Train, PruningLeavesCheckpointsThisRunDidNotWrite) {
  const fs::path dir = fresh_temp_dir();
  const TrainData data = make_train_data(dir, 16);
  train::TrainOptions o = tiny_options(data, dir / "run");
  o.keep_checkpoints = 1;
  const fs::path foreign = dir / "run" / "checkpoints" / "step-00000001";
  fs::create_directories(foreign);
  write_json_file_atomic(foreign / "config.json", {{"imported_from", {{"weights", "w"}}}});
  write_json_file_atomic(foreign / "state.json", {{"step", 0}});
  train::run_training(o, train::RunStart::kResume);  // no `latest`: a new run beside it
  EXPECT_TRUE(fs::exists(foreign / "config.json"));
  EXPECT_FALSE(fs::exists(dir / "run" / "checkpoints" / "step-00000003"));  // its own, pruned
  EXPECT_TRUE(fs::exists(dir / "run" / "checkpoints" / "step-00000006" / "model.safetensors"));
}

// kill -9 during --overwrite once the old checkpoints were moved aside (the
// log and summary not yet): --resume starts a new run and keeps nothing of the
// old one (its summary named a checkpoint that no longer exists).
TEST(Train, AnOverwriteKilledPartWayThenResumedDoesNotMixRuns) {
  const fs::path dir = fresh_temp_dir();
  const TrainData data = make_train_data(dir, 16);
  train::TrainOptions o = tiny_options(data, dir / "run");
  o.steps = 3;
  train::run_training(o, train::RunStart::kNew);
  ASSERT_TRUE(fs::exists(dir / "run" / "summary.json"));
  const fs::path trash = dir / "run" / ".overwritten.tmp-99999";
  fs::create_directories(trash);
  fs::rename(dir / "run" / "checkpoints", trash / "checkpoints");
  o.seed = 7;
  o.steps = 6;
  train::TrainHooks stop;
  stop.stop_after_step = 2;  // killed again before its first checkpoint
  EXPECT_EQ(train::run_training(o, train::RunStart::kResume, stop).first_step, 0);
  EXPECT_FALSE(fs::exists(dir / "run" / "summary.json"));
  EXPECT_FALSE(fs::exists(trash));
  EXPECT_EQ(logged_steps(dir / "run"), (std::vector<int64_t>{1, 2}));
  // A whole --overwrite leaves nothing of the old run either.
  o.steps = 3;
  train::run_training(o, train::RunStart::kResume);
  ASSERT_TRUE(fs::exists(dir / "run" / "summary.json"));
  stop.stop_after_step = 1;
  train::run_training(o, train::RunStart::kOverwrite, stop);
  EXPECT_FALSE(fs::exists(dir / "run" / "summary.json"));
  EXPECT_FALSE(fs::exists(dir / "run" / "checkpoints" / "step-00000003"));
  EXPECT_EQ(logged_steps(dir / "run"), (std::vector<int64_t>{1}));
}

TEST(TrainDistributed, TwoProcessesEqualOne) {
  expect_two_processes_equal_one("--texts {store}");
}

// The CLIP baseline: each rank encodes its own captions; the gathered text
// features carry gradient to the local rows, so the summed text tower
// gradients are the single-process ones too.
TEST(TrainDistributed, ClipTwoProcessesEqualOne) {
  expect_two_processes_equal_one("--text-tower clip --clip-text clip-text-micro --caption-join --captions " +
                                 (test::shared_dir() / "data" / "flickr8k" / "captions.tsv").string());
}

}  // namespace
}  // namespace flame
