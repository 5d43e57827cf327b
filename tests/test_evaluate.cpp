// flame eval end to end: benchmark files, every task type on a tiny model
// (FLAME and CLIP baseline checkpoints), the JSON and Markdown outputs, and
// facet similarity on aligned features.
#include <gtest/gtest.h>

#include <fstream>

#include "data/caption_source.h"
#include "data/image_decode.h"
#include "data/image_transform.h"
#include "eval/evaluate.h"
#include "eval/metrics.h"
#include "eval/task_common.h"
#include "llm/checkpoint_identity.h"
#include "llm/tokenizer.h"
#include "test_helpers.h"
#include "text/clip_text_config.h"
#include "text/clip_tokenize.h"
#include "text/prompts.h"
#include "text/store_manifest.h"
#include "train/checkpoint.h"
#include "train/text_provenance.h"
#include "train/trained_model.h"
#include "util/error.h"
#include "util/file.h"
#include "vision/image_encoder.h"

namespace flame {
namespace {

using test::fresh_temp_dir;
namespace fs = std::filesystem;

torch::Tensor unit(const torch::Tensor& x) {
  return torch::nn::functional::normalize(x, torch::nn::functional::NormalizeFuncOptions().dim(-1));
}

TEST(EvalFacets, AlignedFeaturesScorePerfectly) {
  torch::manual_seed(1);
  const torch::Tensor image = unit(torch::randn({20, 16}));
  std::vector<int64_t> text_image;
  std::vector<torch::Tensor> texts;
  for (int64_t i = 0; i < 20; ++i) {
    for (int c = 0; c < 2; ++c) {  // two captions per image, each with K = 3 facets equal to the image
      texts.push_back(image[i].unsqueeze(0).expand({3, 16}));
      text_image.push_back(i);
    }
  }
  const auto recall = eval::retrieval_recall(eval::facet_similarity(image, torch::stack(texts)), text_image);
  for (int k : {1, 5, 10}) {
    EXPECT_DOUBLE_EQ(recall.image_to_text.at(k), 1.0);
    EXPECT_DOUBLE_EQ(recall.text_to_image.at(k), 1.0);
  }
}

// The method's released scoring of multi-facet texts: the facet vectors (not
// unit) averaged, then normalised; against the mean of the cosines.
TEST(EvalFacets, MeanEmbeddingPoolsRawFacetsBeforeTheCosine) {
  const torch::Tensor image = torch::eye(2);  // images along x and y
  // One text: a long facet along x (norm 3), a short one along y (norm 1).
  const torch::Tensor text = torch::tensor({3.0f, 0.0f, 0.0f, 1.0f}).view({1, 2, 2});
  // mean = (1.5, 0.5); normalised: (3, 1) / sqrt(10).
  const torch::Tensor pooled = eval::pool_facets(text, eval::FacetPooling::kMeanEmbedding);
  ASSERT_EQ(pooled.sizes(), (std::vector<int64_t>{1, 1, 2}));
  const torch::Tensor s = eval::facet_similarity(image, pooled);
  EXPECT_NEAR(s[0][0].item<double>(), 3 / std::sqrt(10.0), 1e-6);
  EXPECT_NEAR(s[1][0].item<double>(), 1 / std::sqrt(10.0), 1e-6);
  // The mean cosine of unit facets weighs both alike: 0.5 each.
  const torch::Tensor unit_text = unit(text);
  const torch::Tensor m =
      eval::facet_similarity(image, eval::pool_facets(unit_text, eval::FacetPooling::kMeanCosine));
  EXPECT_NEAR(m[0][0].item<double>(), 0.5, 1e-6);
  EXPECT_NEAR(m[1][0].item<double>(), 0.5, 1e-6);
  EXPECT_EQ(eval::facet_pooling({{"facet_pooling", "mean_embedding"}}), eval::FacetPooling::kMeanEmbedding);
  EXPECT_EQ(eval::facet_pooling(nlohmann::json::object()), eval::FacetPooling::kMeanCosine);
  EXPECT_TRUE(test::contains(test::error_of([] {
                               eval::facet_pooling({{"name", "t"}, {"facet_pooling", "max"}});
                             }),
                             "task 't': facet_pooling must be mean_cosine or mean_embedding, not 'max'"));
}

TEST(EvalFacets, LongModeAveragesTheFacets) {
  // Facet 0 points at the wrong image, facets 1 and 2 at the right one: the
  // mean picks the right one (a max over facets would tie or pick wrong).
  const torch::Tensor image = torch::eye(3);
  torch::Tensor text = torch::zeros({1, 3, 3});
  text[0][0] = image[1];
  text[0][1] = image[0];
  text[0][2] = image[0];
  const torch::Tensor s = eval::facet_similarity(image, text);
  EXPECT_NEAR(s[0][0].item<double>(), 2.0 / 3, 1e-6);
  EXPECT_NEAR(s[1][0].item<double>(), 1.0 / 3, 1e-6);
  EXPECT_THROW(eval::facet_similarity(image, text[0]), Error);
}

// A tiny benchmark on real files: 6 Flickr8k images with 2 captions each, and
// 2 CIFAR-10 classes.
fs::path write_benchmark(const fs::path& dir) {
  const fs::path shared = test::shared_dir() / "data";
  std::ifstream split_in(shared / "flickr8k" / "splits" / "test.txt");
  std::string line, split, tsv = "image\tcaption_index\tcaption\n";
  for (int i = 0; i < 6 && std::getline(split_in, line); ++i) {
    split += line + "\n";
    tsv += line + "\t0\tA dog runs on the grass number " + std::to_string(i) + ".\n";
    tsv += line + "\t1\tA person in a red coat " + std::to_string(i) + ".\n";
  }
  write_file_atomic(dir / "split.txt", split);
  write_file_atomic(dir / "captions.tsv", tsv);
  write_file_atomic(dir / "classes.txt", "cat\ndog\n");
  write_file_atomic(dir / "templates.txt", "a photo of a {}.\na drawing of a {}.\n");
  const nlohmann::json bench = {{"name", "tiny"},
                                {"tasks",
                                 {{{"name", "short"},
                                   {"type", "retrieval"},
                                   {"mode", "short"},
                                   {"captions", (dir / "captions.tsv").string()},
                                   {"text_column", "caption"},
                                   {"caption_index_column", "caption_index"},
                                   {"image_dir", "{data}/flickr8k/images"},
                                   {"split", (dir / "split.txt").string()}},
                                  {{"name", "long"},
                                   {"type", "retrieval"},
                                   {"mode", "long"},
                                   {"join_captions", true},
                                   {"captions", (dir / "captions.tsv").string()},
                                   {"text_column", "caption"},
                                   {"caption_index_column", "caption_index"},
                                   {"image_dir", "{data}/flickr8k/images"},
                                   {"split", (dir / "split.txt").string()}},
                                  {{"name", "zs"},
                                   {"type", "zero-shot"},
                                   {"root", "{data}/cifar10/test"},
                                   {"classes", (dir / "classes.txt").string()},
                                   {"templates", (dir / "templates.txt").string()}},
                                  {{"name", "probe"},
                                   {"type", "linear-probe"},
                                   {"root", "{data}/cifar10/test"},
                                   {"classes", (dir / "classes.txt").string()}}}}};
  write_json_file_atomic(dir / "tiny.json", bench);
  return dir / "tiny.json";
}

// A FLAME checkpoint of a tiny encoder whose config records `text_stores`
// (null: a checkpoint from before they were recorded).
fs::path provenance_checkpoint(const fs::path& dir, const nlohmann::json& text_stores) {
  torch::manual_seed(3);
  vision::ImageEncoder encoder(vision::load_vit_config("vit-micro-32"), 64);
  torch::optim::AdamW optimizer(encoder->parameters());
  nlohmann::json config = {{"vit", vision::to_json(encoder->config())}, {"text_dim", 64}};
  if (!text_stores.is_null()) config["text_stores"] = text_stores;
  train::save_checkpoint(dir, 0, *encoder, optimizer, {config, {{"step", 0}}}, 1);
  return dir;
}

// Options to evaluate a fresh tiny checkpoint (no recorded text side) at
// DIR/run against the tiny LLM on the benchmark file `bench`.
eval::EvalOptions tiny_eval_options(const fs::path& dir, const fs::path& bench) {
  eval::EvalOptions o;
  o.model = provenance_checkpoint(dir / "run", nullptr).string();
  o.llm = test::tiny_checkpoint("llama", "f32").string();
  o.benchmarks = {bench.string()};
  o.dtype = "f32";
  return o;
}

// The checkpoint's text side decides: its layer is used (a layer the LLM does
// not have fails, naming it), another LLM is refused naming both and the
// override, which then puts a warning into the results; an old checkpoint
// evaluates with a warning.
TEST(Evaluate, TheCheckpointsTextSideDecidesTheLayerAndTheLlm) {
  const fs::path dir = fresh_temp_dir();
  const fs::path llm = test::tiny_checkpoint("llama", "f32");
  text::StoreIdentity identity;
  identity.llm = llm::checkpoint_identity(llm).json;
  identity.prompt_set_name = "short";
  identity.prompt_set_sha256 = text::load_prompt_set("short").sha256;
  identity.facets = {"a", "b", "c"};
  identity.layer = 1;
  identity.num_facets = 3;
  identity.dim = 64;
  identity.normalized = true;
  eval::EvalOptions o;
  o.llm = llm.string();
  o.benchmarks = {write_benchmark(dir).string()};
  o.tasks = {"short"};
  o.data_root = (test::shared_dir() / "data").string();
  o.dtype = "f32";

  o.model = provenance_checkpoint(dir / "same", train::text_provenance_json({identity})).string();
  const nlohmann::json same = eval::run_evaluation(o);
  EXPECT_TRUE(same["warnings"].empty());
  EXPECT_EQ(same["tasks"][0]["text_encoding"]["layer"], 1);
  EXPECT_EQ(same["tasks"][0]["text_encoding"]["facet_positions"], "separate");

  // Stores made as the method's released code makes them: eval encodes so too.
  identity.facet_positions = "concatenated";
  o.model = provenance_checkpoint(dir / "concatenated", train::text_provenance_json({identity})).string();
  EXPECT_EQ(eval::run_evaluation(o)["tasks"][0]["text_encoding"]["facet_positions"], "concatenated");
  identity.facet_positions = "separate";

  identity.layer = 9;  // the tiny LLM has 3 layers: the recorded layer is really used
  o.model = provenance_checkpoint(dir / "layer9", train::text_provenance_json({identity})).string();
  // No --layer was given: the message names the checkpoint's record, not a flag.
  const std::string layer9 = test::error_of([&] { eval::run_evaluation(o); });
  EXPECT_TRUE(test::contains(layer9, "store was made from hidden layer 9") &&
              test::contains(layer9, "(3 layers") && test::contains(layer9, o.model) &&
              !test::contains(layer9, "--layer"))
      << layer9;

  identity.layer = 1;
  o.model = provenance_checkpoint(dir / "run", train::text_provenance_json({identity})).string();
  o.llm = test::tiny_checkpoint("qwen2", "f32").string();  // another LLM of the same width
  const std::string refused = test::error_of([&] { eval::run_evaluation(o); });
  EXPECT_TRUE(test::contains(refused, "was trained against the LLM") && test::contains(refused, o.llm) &&
              test::contains(refused, "LLM architecture") && test::contains(refused, "--allow-llm-mismatch"))
      << refused;
  o.allow_llm_mismatch = true;
  const nlohmann::json allowed = eval::run_evaluation(o);
  ASSERT_EQ(allowed["warnings"].size(), 1u);
  EXPECT_TRUE(test::contains(eval::results_markdown(allowed), "**warning:**"));

  o.model = provenance_checkpoint(dir / "old", nullptr).string();
  const nlohmann::json old = eval::run_evaluation(o);
  ASSERT_EQ(old["warnings"].size(), 1u);
  EXPECT_TRUE(test::contains(old["warnings"][0].get<std::string>(), "records no text side"));
}

// ImageNet's layout: class folders named by id (n0...), names from a
// "wnid<TAB>name" file or, with "folders": "sorted", one name per line in
// folder order; a count that does not match, and a missing root, are named.
// DIR/val/<wnid>/: 5 real CIFAR-10 cat images as n02123045 and 5 dogs as
// n02085620, ImageNet's layout in miniature.
void write_wnid_folders(const fs::path& dir) {
  const fs::path cifar = test::shared_dir() / "data" / "cifar10" / "test";
  for (const auto& [wnid, cls] : {std::pair{"n02123045", "cat"}, std::pair{"n02085620", "dog"}}) {
    fs::create_directories(dir / "val" / wnid);
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(cifar / cls)) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (int i = 0; i < 5; ++i) fs::copy_file(files[i], dir / "val" / wnid / files[i].filename());
  }
}

TEST(Evaluate, ClassFoldersNamedByIdWithAClassNameFile) {
  const fs::path dir = fresh_temp_dir();
  write_wnid_folders(dir);
  write_file_atomic(dir / "names.tsv", "n02123045\ttabby cat\nn02085620\tChihuahua\n");
  write_file_atomic(dir / "names-sorted.txt", "Chihuahua\ntabby cat\n");  // n02085620 sorts first
  write_file_atomic(dir / "three.txt", "a\nb\nc\n");
  write_file_atomic(dir / "templates.txt", "a photo of a {}.\n");
  const auto task = [&](const std::string& name, const std::string& classes, bool sorted) {
    nlohmann::json t = {{"name", name},
                        {"type", "zero-shot"},
                        {"root", (dir / "val").string()},
                        {"classes", (dir / classes).string()},
                        {"templates", (dir / "templates.txt").string()},
                        {"source", "ImageNet ILSVRC2012 validation images, https://image-net.org"}};
    if (sorted) t["folders"] = "sorted";
    return t;
  };
  write_json_file_atomic(
      dir / "bench.json",
      {{"name", "wnid"},
       {"tasks", {task("by-id", "names.tsv", false), task("sorted", "names-sorted.txt", true)}}});
  eval::EvalOptions o = tiny_eval_options(dir, dir / "bench.json");
  const nlohmann::json r = eval::run_evaluation(o);
  ASSERT_EQ(r["tasks"].size(), 2u);
  for (const auto& t : r["tasks"]) {
    EXPECT_EQ(t["images"], 10);
    EXPECT_TRUE(t["per_class_top1"].contains("tabby cat") && t["per_class_top1"].contains("Chihuahua")) << t;
  }
  // The same images, classes and names either way: the same accuracy per class.
  EXPECT_EQ(r["tasks"][0]["per_class_top1"], r["tasks"][1]["per_class_top1"]);

  write_json_file_atomic(dir / "bad.json", {{"name", "bad"}, {"tasks", {task("three", "three.txt", true)}}});
  o.benchmarks = {(dir / "bad.json").string()};
  EXPECT_TRUE(test::contains(test::error_of([&] { eval::run_evaluation(o); }), "names 3 classes but"));
  nlohmann::json missing = task("missing", "names.tsv", false);
  missing["root"] = (dir / "nowhere").string();
  write_json_file_atomic(dir / "missing.json", {{"name", "m"}, {"tasks", {missing}}});
  o.benchmarks = {(dir / "missing.json").string()};
  const std::string message = test::error_of([&] { eval::run_evaluation(o); });
  EXPECT_TRUE(test::contains(message, "task 'missing': no " + (dir / "nowhere").string() +
                                          " (its root); published at ImageNet ILSVRC2012"))
      << message;

  o.batch_size = 0;
  EXPECT_TRUE(
      test::contains(test::error_of([&] { eval::run_evaluation(o); }), "--batch-size must be positive"));
  o.batch_size = 64;

  // The shipped preset: OpenAI's 1000 names and 80 templates; without the data,
  // one line naming the expected folder and where the images are published.
  const fs::path configs = fs::path(FLAME_SOURCE_DIR) / "configs" / "benchmarks";
  std::ifstream names(configs / "imagenet-classnames-en.txt"),
      templates(configs / "templates" / "imagenet-openai.txt");
  std::string line;
  int n = 0, t = 0;
  while (std::getline(names, line)) n += !line.empty();
  while (std::getline(templates, line)) t += line.find("{}") != std::string::npos;
  EXPECT_EQ(n, 1000);
  EXPECT_EQ(t, 80);
  o.benchmarks = {"imagenet"};
  o.data_root = (dir / "no-data").string();
  const std::string absent = test::error_of([&] { eval::run_evaluation(o); });
  EXPECT_TRUE(test::contains(absent, "no " + (dir / "no-data" / "imagenet" / "val").string()) &&
              test::contains(absent, "https://image-net.org"))
      << absent;
}

// CLIP_benchmark's own class-name and template files (the multilingual
// ImageNet of table 4: `clip_benchmark eval --language jp` reads
// jp_classnames.json and jp_zeroshot_classification_templates.json) give the
// same classifier as the same names and templates in text files: lists, or
// objects of lists by dataset; templates fall back to imagenet1k's as
// CLIP_benchmark's builder.py does; "{c}" and "{}" both take the name.
TEST(Evaluate, ClipBenchmarkClassNameAndTemplateFiles) {
  const fs::path dir = fresh_temp_dir();
  write_wnid_folders(dir);
  // Sorted folders: n02085620 (dog) first. Japanese names, as the jp file has them.
  write_file_atomic(dir / "names.txt", "チワワ\nトラ猫\n");
  write_file_atomic(dir / "templates.txt", "{}の写真\n{}の絵\n");
  write_json_file_atomic(dir / "jp_classnames.json",
                         {{"cifar10", {"a", "b"}}, {"imagenet1k", {"チワワ", "トラ猫"}}});
  write_json_file_atomic(dir / "jp_list.json", {"チワワ", "トラ猫"});
  write_json_file_atomic(dir / "jp_zeroshot_classification_templates.json",
                         {{"imagenet1k", {"{c}の写真", "{c}の絵"}}});
  const auto task = [&](const std::string& name, const std::string& classes, const std::string& templates) {
    return nlohmann::json{{"name", name},
                          {"type", "zero-shot"},
                          {"root", (dir / "val").string()},
                          {"folders", "sorted"},
                          {"classes", (dir / classes).string()},
                          {"templates", (dir / templates).string()}};
  };
  nlohmann::json other_dataset =
      task("other", "jp_classnames.json", "jp_zeroshot_classification_templates.json");
  other_dataset["dataset_key"] = "cifar10";  // its own names; no cifar10 templates: imagenet1k's
  write_json_file_atomic(
      dir / "bench.json",
      {{"name", "jp"},
       {"tasks",
        {task("text", "names.txt", "templates.txt"),
         task("json", "jp_classnames.json", "jp_zeroshot_classification_templates.json"),
         task("list", "jp_list.json", "jp_zeroshot_classification_templates.json"), other_dataset}}});
  eval::EvalOptions o = tiny_eval_options(dir, dir / "bench.json");
  const nlohmann::json r = eval::run_evaluation(o);
  ASSERT_EQ(r["tasks"].size(), 4u);
  EXPECT_EQ(r["tasks"][0]["templates"], 2);
  EXPECT_TRUE(r["tasks"][0]["per_class_top1"].contains("チワワ")) << r["tasks"][0];
  for (int i : {1, 2}) {
    EXPECT_EQ(r["tasks"][i]["per_class_top1"], r["tasks"][0]["per_class_top1"]) << i;
    EXPECT_EQ(r["tasks"][i]["top1"], r["tasks"][0]["top1"]) << i;
  }
  EXPECT_TRUE(r["tasks"][3]["per_class_top1"].contains("a")) << r["tasks"][3];
  EXPECT_EQ(r["tasks"][3]["templates"], 2);

  // A dataset the file has no list for names the file and the lists it has;
  // a non-string entry names its index.
  write_json_file_atomic(dir / "bench.json",
                         {{"name", "jp"}, {"tasks", {[&] {
                                             auto t = task("missing", "jp_classnames.json", "templates.txt");
                                             t["dataset_key"] = "cars";
                                             return t;
                                           }()}}});
  std::string message = test::error_of([&] { eval::run_evaluation(o); });
  EXPECT_TRUE(
      test::contains(message, "jp_classnames.json: no list for dataset 'cars' (it has: cifar10, imagenet1k)"))
      << message;
  write_json_file_atomic(dir / "jp_list.json", {"チワワ", 3});
  write_json_file_atomic(dir / "bench.json",
                         {{"name", "jp"}, {"tasks", {task("bad", "jp_list.json", "templates.txt")}}});
  message = test::error_of([&] { eval::run_evaluation(o); });
  EXPECT_TRUE(test::contains(message, "jp_list.json: entry 1 is not a string")) << message;
}

TEST(Evaluate, EveryTaskTypeOnATinyModel) {
  const fs::path dir = fresh_temp_dir();
  const fs::path llm = test::tiny_checkpoint("llama", "f32");
  torch::manual_seed(3);
  vision::ImageEncoder encoder(vision::load_vit_config("vit-micro-32"), 64);  // the tiny LLM's hidden size
  torch::optim::AdamW optimizer(encoder->parameters());
  const nlohmann::json config = {{"vit", vision::to_json(encoder->config())}, {"text_dim", 64}};
  train::save_checkpoint(dir / "run", 0, *encoder, optimizer, {config, {{"step", 0}}}, 1);

  eval::EvalOptions o;
  o.model = (dir / "run").string();
  o.llm = llm.string();
  o.benchmarks = {write_benchmark(dir).string()};
  o.data_root = (test::shared_dir() / "data").string();
  o.limit = 20;
  o.dtype = "f32";
  o.out = (dir / "results.json").string();
  const nlohmann::json r = eval::run_evaluation(o);
  ASSERT_EQ(r["tasks"].size(), 4u);
  const auto& shortr = r["tasks"][0];
  EXPECT_EQ(shortr["images"], 6);
  EXPECT_EQ(shortr["texts"], 12);
  EXPECT_EQ(shortr["facets"], 1);
  const auto& longr = r["tasks"][1];
  EXPECT_EQ(longr["texts"], 6);  // the two captions of an image joined
  EXPECT_EQ(longr["facets"], 7);
  for (const auto* t : {&shortr, &longr}) {
    const auto& t2i = (*t)["text_to_image"];
    EXPECT_LE(t2i["R@1"].get<double>(), t2i["R@5"].get<double>());
    EXPECT_DOUBLE_EQ(t2i["R@10"].get<double>(), 1.0);  // 6 images: every image is within the top 10
  }
  const auto& zs = r["tasks"][2];
  EXPECT_EQ(zs["images"], 20);                      // --limit spread over 2 classes
  EXPECT_DOUBLE_EQ(zs["top5"].get<double>(), 1.0);  // 2 classes
  EXPECT_TRUE(zs["per_class_top1"].contains("cat"));
  const auto& probe = r["tasks"][3];
  EXPECT_EQ(probe["train"].get<int64_t>() + probe["val"].get<int64_t>() + probe["test"].get<int64_t>(), 20);
  EXPECT_EQ(read_json_file(dir / "results.json"), r);
  const std::string md = eval::results_markdown(r);
  EXPECT_NE(md.find("| short | short | 6 | 12 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| zs | zero-shot | 20 |"), std::string::npos) << md;

  // --tasks selects; an unknown task is named.
  o.tasks = {"zs"};
  EXPECT_EQ(eval::run_evaluation(o)["tasks"].size(), 1u);
  o.tasks = {"nope"};
  try {
    eval::run_evaluation(o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no task 'nope'"), std::string::npos) << e.what();
  }
}

// The results file is written after each task: a failing (or killed)
// evaluation keeps the tasks it finished, marked incomplete, and --resume runs
// only the rest, refusing results made with other settings. Missing data of
// any task stops the run before anything is loaded, one line a task.
TEST(Evaluate, ResultsAfterEachTaskResumeAndMissingDataFirst) {
  const fs::path dir = fresh_temp_dir();
  eval::EvalOptions o = tiny_eval_options(dir, write_benchmark(dir));
  o.data_root = (test::shared_dir() / "data").string();
  o.limit = 20;
  o.out = (dir / "results.json").string();
  const nlohmann::json full = eval::run_evaluation(o);
  EXPECT_EQ(full["complete"], true);

  write_file_atomic(dir / "templates.txt", "no slot for the name\n");  // the third task (zs) fails
  EXPECT_TRUE(test::contains(test::error_of([&] { eval::run_evaluation(o); }), "has no {c} or {}"));
  nlohmann::json partial = read_json_file(dir / "results.json");
  ASSERT_EQ(partial["tasks"].size(), 2u);
  EXPECT_EQ(partial["complete"], false);
  EXPECT_EQ(partial["tasks"][1]["text_to_image"], full["tasks"][1]["text_to_image"]);

  write_file_atomic(dir / "templates.txt", "a photo of a {}.\na drawing of a {}.\n");
  partial["tasks"][0]["images"] = 999;  // a kept result is read back, not recomputed
  write_json_file_atomic(dir / "results.json", partial);
  o.resume = true;
  const nlohmann::json resumed = eval::run_evaluation(o);
  ASSERT_EQ(resumed["tasks"].size(), 4u);
  EXPECT_EQ(resumed["tasks"][0]["images"], 999);
  EXPECT_EQ(resumed["tasks"][2]["per_class_top1"], full["tasks"][2]["per_class_top1"]);
  EXPECT_EQ(resumed["tasks"][3]["top1"], full["tasks"][3]["top1"]);
  EXPECT_EQ(resumed["complete"], true);
  EXPECT_EQ(read_json_file(dir / "results.json"), resumed);

  o.limit = 10;
  const std::string refused = test::error_of([&] { eval::run_evaluation(o); });
  EXPECT_TRUE(test::contains(refused, "was made with limit 20, this run has 10")) << refused;

  // Two of three tasks without their data: both named, before any model is
  // loaded (the LLM path here does not exist).
  nlohmann::json bench = read_json_file(o.benchmarks[0]);
  bench["tasks"][0]["image_dir"] = (dir / "no-images").string();
  bench["tasks"][2]["root"] = (dir / "no-cifar").string();
  bench["tasks"][2]["source"] = "somewhere public";
  write_json_file_atomic(dir / "missing.json", bench);
  o.benchmarks = {(dir / "missing.json").string()};
  o.llm = (dir / "no-llm").string();
  o.resume = false;
  const std::string missing = test::error_of([&] { eval::run_evaluation(o); });
  EXPECT_TRUE(
      test::contains(missing, "2 of the 4 tasks lack their data (nothing was run):\n") &&
      test::contains(missing, "task 'short': no " + (dir / "no-images").string() + " (its image_dir)\n") &&
      test::contains(missing, "task 'zs': no " + (dir / "no-cifar").string() +
                                  " (its root); published at somewhere public"))
      << missing;
}

// A CLIP baseline checkpoint runs every task with its own text tower, no LLM:
// one feature per text (K = 1), texts cut to 77 tokens. The short task's
// recalls equal those recomputed here from the loaded towers.
TEST(Evaluate, ClipCheckpointUsesItsTextTower) {
  const fs::path dir = fresh_temp_dir();
  const fs::path benchmark = write_benchmark(dir);
  // One caption far beyond 77 tokens: cut in the short task and, joined, in the long one.
  std::string words;
  for (int i = 0; i < 120; ++i) words += "a dog ";
  std::string tsv = read_file(dir / "captions.tsv");
  const size_t first_row_end = tsv.find('\n', tsv.find('\n') + 1);
  const std::string first_image =
      tsv.substr(tsv.find('\n') + 1, tsv.find('\t', tsv.find('\n')) - tsv.find('\n') - 1);
  tsv.insert(first_row_end + 1, first_image + "\t2\t" + words + "\n");
  write_file_atomic(dir / "captions.tsv", tsv);

  torch::manual_seed(4);
  const std::unique_ptr<llm::Tokenizer> tokenizer = llm::Tokenizer::load(test::smollm_tokenizer_dir());
  const text::ClipTextConfig text_config = text::load_clip_text_config("clip-text-micro");
  train::TrainedModel model =
      train::make_clip_model(vision::load_vit_config("vit-micro-32"), text_config, tokenizer->vocab_size());
  torch::optim::AdamW optimizer(model.root->parameters());
  train::save_checkpoint(dir / "run", 0, *model.root, optimizer,
                         {train::model_config_json(model), {{"step", 0}}}, 1);

  eval::EvalOptions o;
  o.model = (dir / "run").string();  // no --llm
  o.benchmarks = {benchmark.string()};
  o.data_root = (test::shared_dir() / "data").string();
  o.limit = 20;
  const nlohmann::json r = eval::run_evaluation(o);
  ASSERT_EQ(r["tasks"].size(), 4u);
  const auto& shortr = r["tasks"][0];
  EXPECT_EQ(shortr["texts"], 13);
  EXPECT_EQ(shortr["facets"], 1);
  EXPECT_EQ(shortr["truncated_texts"], 1);
  const auto& longr = r["tasks"][1];
  EXPECT_EQ(longr["texts"], 6);
  EXPECT_EQ(longr["facets"], 1);  // not the LLM's 7 facets
  EXPECT_EQ(longr["truncated_texts"], 1);
  EXPECT_EQ(r["tasks"][2]["images"], 20);

  // The short task recomputed: images and texts through the loaded towers.
  train::TrainedModel loaded = train::load_trained_model(dir / "run");
  torch::NoGradGuard no_grad;
  std::vector<std::string> texts;
  std::vector<int64_t> text_image;
  std::vector<torch::Tensor> images;
  data::ImageTransformOptions t;
  t.size = 32;
  t.train = false;
  const data::CaptionInput captions = data::read_captions({(dir / "captions.tsv").string()}, [] {
    data::CaptionSourceOptions c;
    c.tsv_key_columns = {"image", "caption_index"};
    return c;
  }());
  std::vector<std::string> order;
  for (const auto& rec : captions.records) {
    const std::string image = rec.key.substr(0, rec.key.find('#'));
    if (order.empty() || order.back() != image) {
      order.push_back(image);
      const fs::path file = test::shared_dir() / "data" / "flickr8k" / "images" / image;
      images.push_back(data::transform_image(data::decode_image(read_file(file), file.string()), t, 0));
    }
    texts.push_back(rec.fields.at("caption"));
    text_image.push_back(static_cast<int64_t>(order.size()) - 1);
  }
  const auto unit = torch::nn::functional::NormalizeFuncOptions().dim(-1);
  const torch::Tensor image =
      torch::nn::functional::normalize(loaded.image->encode(torch::stack(images)).pooled, unit);
  const text::ClipTokens tokens = text::clip_tokenize(*tokenizer, texts, 77);
  const torch::Tensor text =
      torch::nn::functional::normalize(loaded.text(tokens.ids, tokens.eot_index), unit);
  const eval::RetrievalRecall expected = eval::retrieval_recall(image.matmul(text.t()), text_image);
  for (const auto& [k, v] : expected.image_to_text) {
    EXPECT_NEAR(shortr["image_to_text"]["R@" + std::to_string(k)].get<double>(), v, 1e-9) << k;
  }
  for (const auto& [k, v] : expected.text_to_image) {
    EXPECT_NEAR(shortr["text_to_image"]["R@" + std::to_string(k)].get<double>(), v, 1e-9) << k;
  }
}

TEST(Evaluate, HiddenSizeMismatchIsExplained) {
  const fs::path dir = fresh_temp_dir();
  vision::ImageEncoder encoder(vision::load_vit_config("vit-micro-32"), 32);
  torch::optim::AdamW optimizer(encoder->parameters());
  train::save_checkpoint(dir / "run", 0, *encoder, optimizer,
                         {{{"vit", vision::to_json(encoder->config())}, {"text_dim", 32}}, {{"step", 0}}}, 1);
  eval::EvalOptions o;
  o.model = (dir / "run").string();
  o.llm = test::tiny_checkpoint("llama", "f32").string();
  o.benchmarks = {"cifar10"};
  try {
    eval::run_evaluation(o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("maps images into 32 dimensions but the LLM"), std::string::npos)
        << e.what();
  }
  o.llm.clear();
  EXPECT_TRUE(
      test::contains(test::error_of([&] { eval::run_evaluation(o); }),
                     "is a FLAME model: evaluating it needs the frozen LLM it was trained against (--llm)"));
  // The linear probe reads image features only: no LLM needed.
  o.tasks = {"cifar10-linear-probe"};
  o.limit = 20;
  EXPECT_EQ(eval::run_evaluation(o)["tasks"][0]["type"], "linear-probe");
}

// A tiny FLAME checkpoint at DIR/checkpoints/step-00000000 from `seed`
// (another seed: another model at the same path, as train --overwrite makes).
fs::path seeded_checkpoint(const fs::path& dir, int seed) {
  fs::remove_all(dir);
  torch::manual_seed(seed);
  vision::ImageEncoder encoder(vision::load_vit_config("vit-micro-32"), 64);
  torch::optim::AdamW optimizer(encoder->parameters());
  train::save_checkpoint(dir, 0, *encoder, optimizer,
                         {{{"vit", vision::to_json(encoder->config())}, {"text_dim", 64}}, {{"step", 0}}}, 1);
  return dir;
}

// --resume knows the checkpoint by content: a copy elsewhere keeps the
// results, a retrained checkpoint at the same path is refused naming the
// identity, and a results file without the record (older flame) is not
// trusted: its tasks are run again.
TEST(Evaluate, ResumeKnowsTheCheckpointByContentNotByPath) {
  const fs::path dir = fresh_temp_dir();
  eval::EvalOptions o = tiny_eval_options(dir, write_benchmark(dir));
  o.model = seeded_checkpoint(dir / "run", 3).string();
  o.data_root = (test::shared_dir() / "data").string();
  o.tasks = {"short"};
  o.out = (dir / "results.json").string();
  const nlohmann::json first = eval::run_evaluation(o);
  const nlohmann::json identity = first["config"]["checkpoint_identity"];
  ASSERT_TRUE(identity.contains("weights_sha256") && identity.contains("config_sha256")) << identity;
  nlohmann::json marked = read_json_file(o.out);
  marked["tasks"][0]["images"] = 999;  // kept results are read back, not recomputed
  write_json_file_atomic(o.out, marked);

  o.resume = true;
  fs::copy(dir / "run", dir / "copy", fs::copy_options::recursive);
  o.model = (dir / "copy").string();  // the same checkpoint at another path
  EXPECT_EQ(eval::run_evaluation(o)["tasks"][0]["images"], 999);

  o.model = seeded_checkpoint(dir / "run", 4).string();  // retrained: same path and step, other weights
  const std::string refused = test::error_of([&] { eval::run_evaluation(o); });
  EXPECT_TRUE(test::contains(refused, "holds results of another checkpoint") &&
              test::contains(refused, "checkpoint_identity") && test::contains(refused, o.out))
      << refused;
  EXPECT_EQ(read_json_file(o.out)["tasks"][0]["images"], 999);  // refused: the file is untouched

  marked["config"].erase("checkpoint_identity");  // a results file of an older flame
  write_json_file_atomic(o.out, marked);
  const nlohmann::json rerun = eval::run_evaluation(o);
  EXPECT_EQ(rerun["tasks"][0]["images"], 6);  // recomputed, not trusted
  EXPECT_NE(rerun["config"]["checkpoint_identity"], identity);
}

// --resume with fewer tasks keeps the finished results of the others in the
// file (a results file is the union): nothing finished is lost.
TEST(Evaluate, ResumeWithFewerTasksKeepsTheOthersResults) {
  const fs::path dir = fresh_temp_dir();
  eval::EvalOptions o = tiny_eval_options(dir, write_benchmark(dir));
  o.data_root = (test::shared_dir() / "data").string();
  o.limit = 4;
  o.tasks = {"short", "zs"};
  o.out = (dir / "results.json").string();
  const nlohmann::json both = eval::run_evaluation(o);
  ASSERT_EQ(both["tasks"].size(), 2u);
  o.resume = true;
  o.tasks = {"zs", "probe"};
  o.limit = 4;
  const nlohmann::json fewer = eval::run_evaluation(o);
  const nlohmann::json file = read_json_file(o.out);
  std::vector<std::string> names;
  for (const auto& t : file["tasks"]) names.push_back(t["name"]);
  EXPECT_EQ(names, (std::vector<std::string>{"zs", "probe", "short"})) << file.dump();
  EXPECT_EQ(file["tasks"][2], both["tasks"][0]);  // the earlier result, as it was
  EXPECT_EQ(file, fewer);
  EXPECT_EQ(file["complete"], true);

  // A task whose definition changed is run again and replaces its old result (no stale twin).
  nlohmann::json bench = read_json_file(o.benchmarks[0]);
  bench["tasks"][2]["templates_note"] = "edited";
  write_json_file_atomic(dir / "edited.json", bench);
  o.benchmarks = {(dir / "edited.json").string()};
  o.tasks = {"zs"};
  const nlohmann::json edited = eval::run_evaluation(o);
  names.clear();
  for (const auto& t : edited["tasks"]) names.push_back(t["name"]);
  EXPECT_EQ(names, (std::vector<std::string>{"zs", "probe", "short"}));
  EXPECT_EQ(edited["tasks"][0]["task"]["templates_note"], "edited");
}

// One eval per results file: a second one on the same --out fails at once
// naming the holder. The results are handed out (the CLI prints the table)
// before the file is written, and a failed final write names the file.
TEST(Evaluate, OneEvalPerResultsFileAndTheTableBeforeTheWrite) {
  const fs::path dir = fresh_temp_dir();
  eval::EvalOptions o = tiny_eval_options(dir, write_benchmark(dir));
  o.data_root = (test::shared_dir() / "data").string();
  o.tasks = {"short"};
  o.out = (dir / "out" / "results.json").string();
  std::string second;
  bool shown = false;
  o.before_final_write = [&](const nlohmann::json& results) {
    shown = results["complete"] == true && results["tasks"].size() == 1;
    eval::EvalOptions other = o;
    other.before_final_write = nullptr;
    second = test::error_of([&] { eval::run_evaluation(other); });  // while the first holds the file
    // The disk fails now: the path became a folder, the final write cannot replace it.
    fs::remove(o.out);
    fs::create_directories(o.out);
  };
  const std::string failed = test::error_of([&] { eval::run_evaluation(o); });
  EXPECT_TRUE(shown);
  EXPECT_TRUE(test::contains(second, "results.json (flame eval --out) is in use by pid") &&
              test::contains(second, ".results.json.lock"))
      << second;
  EXPECT_TRUE(test::contains(failed, "the results were not written to " + o.out)) << failed;
  // The lock dies with the run: the next eval on that file goes ahead.
  fs::remove_all(o.out);
  o.before_final_write = nullptr;
  EXPECT_EQ(eval::run_evaluation(o)["complete"], true);
}

// --limit N means at most N images: spread over the classes (floor(N/C) each,
// one more for the first N % C), never a minimum per class; a probe too small
// to split is refused naming --limit.
TEST(Evaluate, LimitIsAtMostNImagesOnClassFolders) {
  EXPECT_EQ(eval::class_quotas(5, 3), (std::vector<int64_t>{2, 2, 1}));
  EXPECT_EQ(eval::class_quotas(1, 3), (std::vector<int64_t>{1, 0, 0}));
  EXPECT_EQ(eval::class_quotas(0, 2), (std::vector<int64_t>{0, 0}));
  EXPECT_EQ(eval::class_quotas(INT64_MAX, 2)[0], INT64_MAX / 2 + 1);
  const fs::path dir = fresh_temp_dir();
  eval::EvalOptions o = tiny_eval_options(dir, write_benchmark(dir));
  o.data_root = (test::shared_dir() / "data").string();
  for (const int64_t limit : {1, 3, 7}) {
    o.limit = limit;
    o.tasks = {"zs"};
    EXPECT_EQ(eval::run_evaluation(o)["tasks"][0]["images"], limit) << limit;
  }
  o.tasks = {"probe"};
  o.limit = 4;  // 2 a class: the split still gets a val and a test image
  const nlohmann::json probe = eval::run_evaluation(o)["tasks"][0];
  EXPECT_EQ(probe["images"], 4);
  EXPECT_GE(probe["val"], 1);
  EXPECT_GE(probe["test"], 1);
  o.limit = 2;
  const std::string small = test::error_of([&] { eval::run_evaluation(o); });
  EXPECT_TRUE(
      test::contains(
          small,
          "task 'probe': 2 images of 2 classes leave the probe's train, validation or test part empty") &&
      test::contains(small, "--limit 2 is too small"))
      << small;
  o.limit = -1;
  EXPECT_TRUE(
      test::contains(test::error_of([&] { eval::run_evaluation(o); }), "--limit must not be negative"));
  o.limit = 0;
  o.batch_size = 0;
  EXPECT_TRUE(
      test::contains(test::error_of([&] { eval::run_evaluation(o); }), "--batch-size must be positive"));
}

// A caption row the reader cannot use (invalid UTF-8, empty) is skipped,
// counted and named in the task's results; the evaluation goes on.
TEST(Evaluate, MalformedCaptionRowsAreSkippedAndCounted) {
  const fs::path dir = fresh_temp_dir();
  eval::EvalOptions o = tiny_eval_options(dir, write_benchmark(dir));
  o.data_root = (test::shared_dir() / "data").string();
  o.tasks = {"short"};
  std::string tsv = read_file(dir / "captions.tsv");
  const size_t row = tsv.find("A person in a red coat 0.");
  tsv.replace(row, 1, "\xff");  // one caption is not UTF-8
  write_file_atomic(dir / "captions.tsv", tsv);
  const nlohmann::json r = eval::run_evaluation(o)["tasks"][0];
  EXPECT_EQ(r["texts"], 11);
  EXPECT_EQ(r["skipped"]["count"], 1) << r["skipped"];
  EXPECT_TRUE(test::contains(r["skipped"]["examples"].dump(), "#1")) << r["skipped"];
}

// Eval's caption rule is the embed readers' (data::blank_caption): a caption of
// only Unicode whitespace or invisible characters is skipped too (it was
// scored as the bare prompt: only ASCII whitespace was caught).
TEST(Evaluate, BlankCaptionsAreTheReadersBlankCaptions) {
  for (const std::string& blank :
       std::vector<std::string>{"", "  \t", "\u3000\u00a0", "\u200b", std::string("\0 ", 2)})
    EXPECT_TRUE(test::contains(eval::caption_defect(blank), "empty caption")) << blank;
  EXPECT_EQ(eval::caption_defect("a dog \u3000"), "");
  EXPECT_TRUE(test::contains(eval::caption_defect("\xff"), "not valid UTF-8"));
}

// A malformed results file (what --resume reads) or benchmark entry is an
// error naming the file or task, never an escaping JSON exception.
TEST(Evaluate, MalformedResultsAndBenchmarkFilesAreNamed) {
  const fs::path dir = fresh_temp_dir();
  const fs::path bench = write_benchmark(dir);
  eval::EvalOptions o = tiny_eval_options(dir, bench);
  o.data_root = (test::shared_dir() / "data").string();
  o.tasks = {"short"};
  o.out = (dir / "results.json").string();
  o.resume = true;
  for (const auto& [text, expected] : std::vector<std::pair<std::string, std::string>>{
           {"[1, 2]", "has no \"config\" object"},
           {"{\"config\": 3, \"tasks\": []}", "has no \"config\" object"},
           {"{\"config\": {}, \"tasks\": {}}", "has no \"tasks\" list"},
           {"{\"config\": {}, \"tasks\": [1]}", "task result 1 lacks"},
           {"{\"config\": {}, \"tasks\": [{\"name\": 1, \"task\": {}}]}", "task result 1 lacks"},
           {"{\"config\": {", "invalid JSON in"}}) {
    write_file_atomic(o.out, text);
    const std::string e = test::error_of([&] { eval::run_evaluation(o); });
    EXPECT_TRUE(test::contains(e, expected) && test::contains(e, o.out)) << text << ": " << e;
  }
  o.resume = false;
  nlohmann::json b = read_json_file(bench);
  b["tasks"][0]["mode"] = 3;  // not a string
  b["tasks"][1]["name"] = 5;
  write_json_file_atomic(dir / "bad.json", b);
  o.benchmarks = {(dir / "bad.json").string()};
  o.tasks = {};
  const std::string named = test::error_of([&] { eval::run_evaluation(o); });
  EXPECT_TRUE(test::contains(named, "bad.json: every task needs 'name' and 'type' (strings); task 2"))
      << named;
  b["tasks"][1]["name"] = "long";
  write_json_file_atomic(dir / "bad.json", b);
  o.tasks = {"short"};
  const std::string mode = test::error_of([&] { eval::run_evaluation(o); });
  EXPECT_TRUE(test::contains(mode, "task 'short': field 'mode' must be a string, not 3") &&
              !test::contains(mode, "internal"))
      << mode;
}

}  // namespace
}  // namespace flame
