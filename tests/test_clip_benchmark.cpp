// CLIP_benchmark's WebDataset layout: the reader on a synthetic export (WebP,
// PNG and JPEG members, malformed samples counted and named), the missing-data
// message, `flame eval --benchmark clip-benchmark:ROOT` end to end on a
// tiny model for all three task kinds, and its zero-shot metrics against
// CLIP_benchmark's own code (PyPI's clip-benchmark, tests/python/clip_benchmark_oracle.py).
#include <gtest/gtest.h>

#include <array>

#include "data/image_encode.h"
#include "eval/clip_benchmark_source.h"
#include "eval/eval_models.h"
#include "eval/evaluate.h"
#include "eval/task_common.h"
#include "llm/weights.h"
#include "tar_writer.h"
#include "test_helpers.h"
#include "train/checkpoint.h"
#include "util/file.h"
#include "util/safetensors.h"
#include "vision/image_encoder.h"
#include "webp_writer.h"

namespace flame {
namespace {

namespace fs = std::filesystem;
using test::contains;
using test::error_of;

// A small picture of colour `c`: images of a class look alike.
torch::Tensor picture(int c, int variant) {
  torch::manual_seed(100 * c + variant);
  torch::Tensor base = torch::zeros({24, 24, 3}, torch::kUInt8);
  base.select(2, c % 3).fill_(200);
  return (base + torch::randint(0, 40, {24, 24, 3}, torch::kUInt8)).to(torch::kUInt8);
}

std::string flickr_jpeg() {
  const fs::path dir = test::shared_dir() / "data" / "flickr8k" / "images";
  return read_file(dir / "1000268201_693b08cb0e.jpg");
}

// The classification export: test/ in two shards (nshards.txt) with one good
// sample of each format and each kind of malformed sample; train/ with 5
// samples per class in one shard found without nshards.txt.
fs::path write_classification_export(const fs::path& root) {
  fs::create_directories(root / "test");
  fs::create_directories(root / "train");
  write_file_atomic(root / "classnames.txt", "red thing\ngreen thing\nblue thing\n");
  write_file_atomic(root / "zeroshot_classification_templates.txt",
                    "a photo of a {c}.\na drawing of a {c}.\n");
  write_file_atomic(root / "test" / "nshards.txt", "2\n");
  test::write_tar(root / "test" / "0.tar", {{"s0.webp", test::encode_webp(picture(0, 0))},
                                            {"s0.cls", "0"},
                                            {"s1.png", data::encode_png(picture(1, 0))},
                                            {"s1.cls", "1\n"},
                                            {"s2.jpg", flickr_jpeg()},
                                            {"s2.cls", "2"},
                                            {"s3.webp", test::encode_webp(picture(2, 1))},  // no .cls
                                            {"s4.png", data::encode_png(picture(0, 1))},
                                            {"s4.cls", "7"},  // outside the 3 classes
                                            {"s5.webp", "RIFF\x10\0\0\0WEBPVP8 broken"},
                                            {"s5.cls", "1"}});
  test::write_tar(root / "test" / "1.tar", {{"s6.webp", test::encode_webp(picture(2, 2), 80)},
                                            {"s6.cls", "2"},
                                            {"s7.cls", "1"},  // no image
                                            {"s8.png", data::encode_png(picture(1, 1))},
                                            {"s8.cls", "one"}});
  std::vector<std::pair<std::string, std::string>> train;
  for (int c = 0; c < 3; ++c) {
    for (int v = 0; v < 5; ++v) {
      const std::string key = fmt::format("t{}_{}", c, v);
      train.emplace_back(key + ".webp", test::encode_webp(picture(c, 10 + v)));
      train.emplace_back(key + ".cls", std::to_string(c));
    }
  }
  test::write_tar(root / "train" / "0.tar", train);
  return root;
}

fs::path write_retrieval_export(const fs::path& root) {
  fs::create_directories(root / "test");
  write_file_atomic(root / "dataset_type.txt", "retrieval\n");
  write_file_atomic(root / "test" / "nshards.txt", "1");
  test::write_tar(root / "test" / "0.tar", {{"r0.webp", test::encode_webp(picture(0, 3))},
                                            {"r0.txt", "a red square\na reddish picture\n"},
                                            {"r1.png", data::encode_png(picture(1, 3))},
                                            {"r1.txt", "a green square"},
                                            {"r2.webp", test::encode_webp(picture(2, 3))},  // no .txt
                                            {"r3.jpg", flickr_jpeg()},
                                            {"r3.txt", "\n  \n"}});
  return root;
}

TEST(ClipBenchmarkSource, ReadsSamplesAndNamesMalformedOnes) {
  const fs::path root = write_classification_export(test::fresh_temp_dir() / "wds_colours");
  const eval::ClipBenchmarkInfo info = eval::open_clip_benchmark(root);
  EXPECT_EQ(info.name, "wds_colours");
  EXPECT_EQ(info.type, "classification");
  EXPECT_EQ(info.classnames, (std::vector<std::string>{"red thing", "green thing", "blue thing"}));
  ASSERT_EQ(info.templates.size(), 2u);

  const eval::ClipBenchmarkSplit test = eval::read_clip_benchmark_split(info, "test", true);
  std::vector<std::string> keys;
  std::vector<int64_t> labels;
  for (const auto& s : test.samples) keys.push_back(s.key), labels.push_back(s.label);
  // s5 (undecodable) is still here: images are decoded when a task encodes them.
  EXPECT_EQ(keys, (std::vector<std::string>{"s0", "s1", "s2", "s5", "s6"}));
  EXPECT_EQ(labels, (std::vector<int64_t>{0, 1, 2, 1, 2}));
  const nlohmann::json skipped = test.skipped.json();
  EXPECT_EQ(skipped["count"], 4) << skipped;
  EXPECT_EQ(skipped["by_reason"]["missing .cls"], 1);
  EXPECT_EQ(skipped["by_reason"]["label 7 outside the 3 classes"], 1);
  EXPECT_EQ(skipped["by_reason"]["bad label 'one' in .cls"], 1);
  EXPECT_EQ(skipped["by_reason"]["no image member"], 1);
  const std::string examples = skipped["examples"].dump();
  EXPECT_TRUE(contains(examples, "0.tar:s3.webp") && contains(examples, "1.tar:s7")) << examples;
  // The members are read back as stored (the tar is not extracted).
  const auto inputs = test.image_inputs();
  EXPECT_EQ(inputs[2].read(), flickr_jpeg());
  EXPECT_TRUE(contains(inputs[0].id, "0.tar:s0.webp"));

  const eval::ClipBenchmarkSplit train = eval::read_clip_benchmark_split(info, "train", true);
  EXPECT_EQ(train.samples.size(), 15u);  // found without nshards.txt
  EXPECT_EQ(train.skipped.total(), 0);

  const eval::ClipBenchmarkInfo retrieval =
      eval::open_clip_benchmark(write_retrieval_export(root.parent_path() / "wds_r"));
  EXPECT_EQ(retrieval.type, "retrieval");
  const eval::ClipBenchmarkSplit r = eval::read_clip_benchmark_split(retrieval, "test", false);
  ASSERT_EQ(r.samples.size(), 2u);
  EXPECT_EQ(r.samples[0].captions, (std::vector<std::string>{"a red square", "a reddish picture"}));
  EXPECT_EQ(r.samples[1].captions, (std::vector<std::string>{"a green square"}));
  EXPECT_EQ(r.skipped.json()["by_reason"], (nlohmann::json{{"missing .txt", 1}, {"no caption in .txt", 1}}));

  // Missing data: one line naming the expected path and where exports are published.
  const std::string missing =
      error_of([&] { eval::open_clip_benchmark(root.parent_path() / "wds_nowhere"); });
  EXPECT_TRUE(contains(missing, (root.parent_path() / "wds_nowhere" / "test" / "nshards.txt").string()) &&
              contains(missing, "https://huggingface.co/clip-benchmark") &&
              missing.find('\n') == std::string::npos)
      << missing;
  write_file_atomic(root / "test" / "nshards.txt", "two");
  EXPECT_TRUE(contains(error_of([&] { eval::read_clip_benchmark_split(info, "test", true); }),
                       "expected a positive shard count, found 'two'"));
}

// A FLAME checkpoint of a tiny encoder (no recorded text side: a warning only).
fs::path tiny_model(const fs::path& dir) {
  torch::manual_seed(3);
  vision::ImageEncoder encoder(vision::load_vit_config("vit-micro-32"), 64);
  torch::optim::AdamW optimizer(encoder->parameters());
  train::save_checkpoint(dir, 0, *encoder, optimizer,
                         {{{"vit", vision::to_json(encoder->config())}, {"text_dim", 64}}, {{"step", 0}}}, 1);
  return dir;
}

// The linear probe's two fits and two kinds of features, from a benchmark
// file: flame's L-BFGS (every 5th train sample of a class validates) or
// CLIP_benchmark's AdamW with the method's table-5 settings; the model's
// features in the text space (64 wide here) or the ViT's before the
// projection (32 wide), as the method's encode_image(visual_only=True).
TEST(ClipBenchmarkEval, LinearProbeFitsAndFeatures) {
  const fs::path dir = test::fresh_temp_dir();
  const fs::path colours = write_classification_export(dir / "wds_colours");
  torch::manual_seed(3);
  vision::VitConfig vit = vision::load_vit_config("vit-micro-32");
  vit.width = 32;
  vision::ImageEncoder encoder(vit, 64);
  torch::optim::AdamW optimizer(encoder->parameters());
  train::save_checkpoint(dir / "run", 0, *encoder, optimizer,
                         {{{"vit", vision::to_json(encoder->config())}, {"text_dim", 64}}, {{"step", 0}}}, 1);
  const nlohmann::json base = {
      {"type", "clip-benchmark"}, {"task", "linear_probe"}, {"root", colours.string()}};
  nlohmann::json lbfgs = base, visual = base, bad = base;
  lbfgs.update({{"name", "lbfgs"}, {"probe", "lbfgs"}});
  visual.update(
      {{"name", "visual"}, {"features", "visual"}, {"lr", 0.1}, {"epochs", 20}, {"batch_size", 512}});
  write_json_file_atomic(dir / "probes.json", {{"name", "probes"}, {"tasks", {lbfgs, visual}}});
  eval::EvalOptions o;
  o.model = (dir / "run").string();
  o.dtype = "f32";
  o.benchmarks = {(dir / "probes.json").string()};
  const nlohmann::json r = eval::run_evaluation(o);  // no --llm: a linear probe needs no text
  ASSERT_EQ(r["tasks"].size(), 2u);
  EXPECT_EQ(r["tasks"][0]["train"], 12);
  EXPECT_EQ(r["tasks"][0]["val"], 3);
  EXPECT_EQ(r["tasks"][0]["feature_dim"], 64);
  EXPECT_EQ(r["tasks"][1]["probe"], "adamw");
  EXPECT_EQ(r["tasks"][1]["epochs"], 20);
  EXPECT_EQ(r["tasks"][1]["batch_size"], 512);
  EXPECT_EQ(r["tasks"][1]["feature_dim"], 32);
  EXPECT_EQ(r["tasks"][1]["features"], "visual");

  bad.update({{"name", "bad"}, {"probe", "sgd"}});
  write_json_file_atomic(dir / "bad.json", {{"name", "bad"}, {"tasks", {bad}}});
  o.benchmarks = {(dir / "bad.json").string()};
  EXPECT_TRUE(
      contains(error_of([&] { eval::run_evaluation(o); }), "probe must be adamw or lbfgs, not 'sgd'"));
}

TEST(ClipBenchmarkEval, EveryTaskKindOnATinyModel) {
  const fs::path dir = test::fresh_temp_dir();
  const fs::path classification = write_classification_export(dir / "wds_colours");
  const fs::path retrieval = write_retrieval_export(dir / "wds_pairs");
  eval::EvalOptions o;
  o.model = tiny_model(dir / "run").string();
  o.llm = test::tiny_checkpoint("llama", "f32").string();
  o.dtype = "f32";
  o.benchmarks = {"clip-benchmark:" + retrieval.string(), "clip-benchmark:" + classification.string()};
  o.clip_benchmark_tasks = {"zeroshot_classification", "linear_probe"};
  // Every export gets the --task kinds: the retrieval one has no classnames.txt.
  EXPECT_TRUE(contains(error_of([&] { eval::run_evaluation(o); }), "no classnames.txt in"));
  o.benchmarks.erase(o.benchmarks.begin());
  const nlohmann::json r = eval::run_evaluation(o);
  ASSERT_EQ(r["tasks"].size(), 2u);
  const auto& zs = r["tasks"][0];
  EXPECT_EQ(zs["name"], "wds_colours/zeroshot_classification");
  EXPECT_EQ(zs["images"], 4);  // s0, s1, s2, s6; s5 does not decode
  EXPECT_EQ(zs["skipped"]["count"], 5);
  EXPECT_EQ(zs["skipped"]["by_reason"]["undecodable image"], 1);
  EXPECT_TRUE(zs["metrics"].contains("acc1") && zs["metrics"].contains("mean_per_class_recall"));
  EXPECT_FALSE(zs["metrics"].contains("acc5"));  // 3 classes: CLIP_benchmark reports none
  const auto& probe = r["tasks"][1];             // CLIP_benchmark's probe on every train sample
  EXPECT_EQ(probe["type"], "linear-probe");
  EXPECT_EQ(probe["probe"], "adamw");
  EXPECT_EQ(probe["train"], 15);
  EXPECT_EQ(probe["epochs"], 10);
  EXPECT_EQ(probe["test"], 4);
  const std::string md = eval::results_markdown(r);
  EXPECT_TRUE(contains(md, "| wds_colours/zeroshot_classification | zero-shot | 4 |")) << md;

  // The retrieval export with its own kind (no --task): 2 images, 3 captions.
  o.benchmarks = {"clip-benchmark:" + retrieval.string()};
  o.clip_benchmark_tasks.clear();
  const nlohmann::json rr = eval::run_evaluation(o);
  const auto& t = rr["tasks"][0];
  EXPECT_EQ(t["name"], "wds_pairs");
  EXPECT_EQ(t["images"], 2);
  EXPECT_EQ(t["texts"], 3);
  EXPECT_EQ(t["skipped"]["count"], 2);
  EXPECT_DOUBLE_EQ(t["metrics"]["image_retrieval_recall@5"].get<double>(), 1.0);  // 2 images
  EXPECT_DOUBLE_EQ(t["text_to_image"]["R@5"].get<double>(), 1.0);

  // --task without a clip-benchmark:ROOT benchmark is explained.
  o.benchmarks = {"cifar10"};
  o.clip_benchmark_tasks = {"linear_probe"};
  EXPECT_TRUE(
      contains(error_of([&] { eval::run_evaluation(o); }), "--task applies to --benchmark clip-benchmark:"));
}

// CLIP_benchmark's zero-shot metrics, computed by its own functions
// (clip_benchmark.metrics.zeroshot_classification / zeroshot_retrieval
// .evaluate) on flame's features through a wrapper model, equal flame eval's
// on a 6-class export (30 images, 2 templates: acc1, acc5, mean per-class
// recall) and a retrieval export (12 images with 1 to 3 captions: recall@1/5/10
// both ways). The scores are checked to have no near-ties, where torch.topk's
// unspecified order among equal scores would decide (docs/evaluation.md).
TEST(ClipBenchmarkOracle, ZeroShotMetricsEqualClipBenchmarksOwn) {
  const fs::path dir = test::fresh_temp_dir();
  const fs::path classes_root = dir / "wds_six", pairs_root = dir / "wds_pairs12";
  const std::vector<std::string> classnames = {"red thing",  "green thing", "blue thing",
                                               "dark thing", "pale thing",  "odd thing"};
  fs::create_directories(classes_root / "test");
  std::string names;
  for (const auto& n : classnames) names += n + "\n";
  write_file_atomic(classes_root / "classnames.txt", names);
  write_file_atomic(classes_root / "zeroshot_classification_templates.txt",
                    "a photo of a {c}.\nitap of the {c}, in colour.\n");
  std::vector<std::pair<std::string, std::string>> members;
  for (int i = 0; i < 30; ++i) {  // labels interleaved: batches mix classes
    const std::string key = fmt::format("c{:02d}", i);
    members.emplace_back(key + ".png", data::encode_png(picture(i % 6, 20 + i)));
    members.emplace_back(key + ".cls", std::to_string(i % 6));
  }
  test::write_tar(classes_root / "test" / "0.tar", members);

  fs::create_directories(pairs_root / "test");
  write_file_atomic(pairs_root / "dataset_type.txt", "retrieval\n");
  members.clear();
  for (int i = 0; i < 12; ++i) {
    const std::string key = fmt::format("p{:02d}", i);
    std::string captions;
    for (int j = 0; j <= i % 3; ++j)
      captions += fmt::format("picture {} seen {} way{}\n", i, j, j ? "s" : "");
    members.emplace_back(key + ".png", data::encode_png(picture(i % 3, 60 + i)));
    members.emplace_back(key + ".txt", captions);
  }
  test::write_tar(pairs_root / "test" / "0.tar", members);

  eval::EvalOptions o;
  o.model = tiny_model(dir / "run").string();
  o.llm = test::tiny_checkpoint("llama", "f32").string();
  o.dtype = "f32";
  o.benchmarks = {"clip-benchmark:" + classes_root.string(), "clip-benchmark:" + pairs_root.string()};
  const nlohmann::json results = eval::run_evaluation(o);
  ASSERT_EQ(results["tasks"].size(), 2u);
  const nlohmann::json& zs = results["tasks"][0]["metrics"];
  const nlohmann::json& ret = results["tasks"][1]["metrics"];

  // The same features eval scored with, for the wrapper model.
  eval::EvalModels m(o, true);
  const eval::ClipBenchmarkSplit classes =
      eval::read_clip_benchmark_split(eval::open_clip_benchmark(classes_root), "test", true);
  const eval::ClipBenchmarkSplit pairs =
      eval::read_clip_benchmark_split(eval::open_clip_benchmark(pairs_root), "test", false);
  ASSERT_EQ(classes.samples.size(), 30u);
  ASSERT_EQ(pairs.samples.size(), 12u);
  std::vector<int64_t> labels;
  for (const auto& sample : classes.samples) labels.push_back(sample.label);
  const std::vector<std::string> templates = {"a photo of a {c}.", "itap of the {c}, in colour."};
  std::vector<std::string> class_texts, caption_texts;
  nlohmann::json captions = nlohmann::json::array();
  for (const auto& n : classnames)
    for (const auto& t : templates) class_texts.push_back(eval::fill_template(t, n));
  for (const auto& sample : pairs.samples) {
    captions.push_back(sample.captions);
    caption_texts.insert(caption_texts.end(), sample.captions.begin(), sample.captions.end());
  }
  const auto one_facet = [](const torch::Tensor& t) {
    EXPECT_EQ(t.size(1), 1);  // the raw prompt set: one facet
    return t.select(1, 0).contiguous();
  };
  SafetensorsWriter features;
  llm::add_tensor(features, "classification_images", m.image_features(classes.image_inputs(), "six"));
  llm::add_tensor(features, "classification_texts", one_facet(m.text_features(class_texts, "raw")));
  llm::add_tensor(features, "retrieval_images", m.image_features(pairs.image_inputs(), "pairs"));
  llm::add_tensor(features, "retrieval_texts", one_facet(m.text_features(caption_texts, "raw")));
  features.write(dir / "features.safetensors");
  write_json_file_atomic(
      dir / "spec.json",
      {{"classification",
        {{"classnames", classnames}, {"templates", templates}, {"labels", labels}, {"texts", class_texts}}},
       {"retrieval", {{"captions", captions}, {"texts", caption_texts}}},
       {"batch_size", 7}});

  const fs::path script = test::test_data_dir().parent_path() / "python" / "clip_benchmark_oracle.py";
  const test::CommandResult r = test::run_command(
      fmt::format(FLAME_PYTHON " {} {} {} {} 2>&1", script.string(), (dir / "spec.json").string(),
                  (dir / "features.safetensors").string(), (dir / "oracle.json").string()));
  ASSERT_EQ(r.status, 0) << r.output;
  const nlohmann::json oracle = read_json_file(dir / "oracle.json");
  // No correct item within 1e-6 of a wrong one (the two sides' float32 cosines
  // differ by ~1e-7; the random tiny LLM's texts are alike, so gaps are ~1e-5).
  EXPECT_GT(oracle["smallest_gap"].get<double>(), 1e-6)
      << "near-tied scores: the comparison would be fragile";
  // Every number CLIP_benchmark reports, equal up to its float32 means (one
  // image or text is 1/30 or 1/27 here).
  const nlohmann::json& theirs_zs = oracle["zeroshot_classification"];
  ASSERT_EQ(theirs_zs.size(), 3u) << theirs_zs;
  for (const auto& [name, value] : theirs_zs.items()) {
    ASSERT_TRUE(zs.contains(name)) << name;
    EXPECT_NEAR(zs[name].get<double>(), value.get<double>(), 1e-6) << name;
  }
  const nlohmann::json& theirs_ret = oracle["zeroshot_retrieval"];
  ASSERT_EQ(theirs_ret.size(), 6u) << theirs_ret;
  for (const auto& [name, value] : theirs_ret.items()) {
    ASSERT_TRUE(ret.contains(name)) << name;
    EXPECT_NEAR(ret[name].get<double>(), value.get<double>(), 1e-6) << name;
  }
  EXPECT_EQ(zs.size(), theirs_zs.size());
  EXPECT_EQ(ret.size(), theirs_ret.size());
  std::printf("flame eval vs clip-benchmark 1.6.2: flame %s %s; CLIP_benchmark %s\n", zs.dump().c_str(),
              ret.dump().c_str(), r.output.c_str());
}

// --limit N on a CLIP_benchmark export: at most N images, spread over the
// classes, for every N (it used to give each class at least 1, a probe's
// train split at least 5, so N = 1, 5, 11, 15 all gave 15 train images).
// The train split has 5 samples of each of 3 classes; the test split's usable
// ones are labelled 0, 1, 2, 1 (undecodable), 2.
TEST(ClipBenchmarkEval, LimitMeansAtMostNImages) {
  const fs::path dir = test::fresh_temp_dir();
  const fs::path colours = write_classification_export(dir / "wds_colours");
  eval::EvalOptions o;
  o.model = tiny_model(dir / "run").string();
  o.dtype = "f32";
  o.benchmarks = {"clip-benchmark:" + colours.string()};
  o.clip_benchmark_tasks = {"linear_probe"};
  // N -> train images, test images (after the undecodable one is dropped).
  const std::vector<std::array<int64_t, 3>> expected = {
      {1, 1, 1}, {2, 2, 2}, {5, 5, 3}, {11, 11, 4}, {15, 15, 4}, {16, 15, 4}, {INT64_MAX, 15, 4}};
  for (const auto& [limit, train, test] : expected) {
    o.limit = limit;
    const nlohmann::json r = eval::run_evaluation(o)["tasks"][0];
    EXPECT_EQ(r["train"], train) << "--limit " << limit;
    EXPECT_EQ(r["test"], test) << "--limit " << limit;
  }
  // The probe's numbers in a benchmark file are read strictly, before any image is encoded.
  for (const auto& [field, value] : std::vector<std::pair<std::string, nlohmann::json>>{
           {"epochs", 1.5}, {"seed", -1}, {"batch_size", 0}, {"lr", "nan"}}) {
    const nlohmann::json task = {{"name", "p"},
                                 {"type", "clip-benchmark"},
                                 {"task", "linear_probe"},
                                 {"root", colours.string()},
                                 {field, value}};
    write_json_file_atomic(dir / "probe.json", {{"tasks", {task}}});
    eval::EvalOptions bad = o;
    bad.benchmarks = {(dir / "probe.json").string()};
    bad.clip_benchmark_tasks.clear();
    const std::string e = error_of([&] { eval::run_evaluation(bad); });
    EXPECT_TRUE(contains(e, "task 'p': field '" + field + "'")) << e;
  }
  o.llm = test::tiny_checkpoint("llama", "f32").string();
  o.clip_benchmark_tasks = {"zeroshot_classification"};
  for (const auto& [limit, images] : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {2, 2}, {3, 3}}) {
    o.limit = limit;
    EXPECT_EQ(eval::run_evaluation(o)["tasks"][0]["images"], images) << "--limit " << limit;
  }
}

// A retrieval sample whose caption is not UTF-8 is skipped, counted and named
// by its member (it used to stop the evaluation in the tokenizer); an empty
// classnames.txt is called empty, not missing; class names that are not UTF-8
// name the file and line.
TEST(ClipBenchmarkEval, MalformedCaptionIsSkippedAndListFilesAreNamed) {
  const fs::path dir = test::fresh_temp_dir();
  const fs::path root = dir / "wds_pairs";
  fs::create_directories(root / "test");
  write_file_atomic(root / "dataset_type.txt", "retrieval\n");
  test::write_tar(root / "test" / "0.tar", {{"r0.webp", test::encode_webp(picture(0, 3))},
                                            {"r0.txt", "a red square"},
                                            {"r1.png", data::encode_png(picture(1, 3))},
                                            {"r1.txt", "a green \xc3\x28 square"},
                                            {"r2.png", data::encode_png(picture(2, 3))},
                                            {"r2.txt", "a blue square\n"}});
  eval::EvalOptions o;
  o.model = tiny_model(dir / "run").string();
  o.llm = test::tiny_checkpoint("llama", "f32").string();
  o.dtype = "f32";
  o.benchmarks = {"clip-benchmark:" + root.string()};
  const nlohmann::json r = eval::run_evaluation(o)["tasks"][0];
  EXPECT_EQ(r["images"], 2);
  EXPECT_EQ(r["texts"], 2);
  EXPECT_EQ(r["skipped"]["count"], 1) << r["skipped"];
  EXPECT_EQ(r["skipped"]["by_reason"]["caption not valid UTF-8 (byte 8) in .txt"], 1) << r["skipped"];
  EXPECT_TRUE(contains(r["skipped"]["examples"].dump(), "0.tar:r1.png")) << r["skipped"];

  const fs::path colours = write_classification_export(dir / "wds_colours");
  o.benchmarks = {"clip-benchmark:" + colours.string()};
  write_file_atomic(colours / "classnames.txt", "\n  \n");
  const std::string empty = error_of([&] { eval::run_evaluation(o); });
  EXPECT_TRUE(contains(empty, "an empty classnames.txt in " + colours.string())) << empty;
  write_file_atomic(colours / "classnames.txt",
                    "red\ngr\xe9"
                    "en\nblue\n");  // Latin-1
  const std::string latin1 = error_of([&] { eval::run_evaluation(o); });
  EXPECT_TRUE(contains(latin1, (colours / "classnames.txt").string() + ": entry 2 is not valid UTF-8"))
      << latin1;
}

}  // namespace
}  // namespace flame
