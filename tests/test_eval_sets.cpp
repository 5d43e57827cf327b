// The long-caption (Urban-1k, ShareGPT4V, DCI, DOCCI), multilingual
// (Crossmodal-3600) and compositionality (SugarCrepe) sets: synthetic copies
// of their released layouts, the method's selection and caption rules, the
// missing-data lines, caption-selection accuracy by hand, and one evaluation
// of all three task kinds with a paper-table layout on a tiny model.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "data/image_encode.h"
#include "eval/eval_models.h"
#include "eval/evaluate.h"
#include "eval/long_caption_sets.h"
#include "eval/multilingual_compositional.h"
#include "test_helpers.h"
#include "train/checkpoint.h"
#include "util/file.h"
#include "vision/image_encoder.h"

namespace flame {
namespace {

namespace fs = std::filesystem;
using test::contains;
using test::error_of;

// A decodable image at `path` (PNG bytes: the decoder goes by content, not name).
void write_image(const fs::path& path, int seed) {
  torch::manual_seed(seed);
  fs::create_directories(path.parent_path());
  write_file_atomic(path, data::encode_png(torch::randint(0, 255, {20, 20, 3}, torch::kUInt8)));
}

fs::path write_urban1k(const fs::path& root) {
  fs::create_directories(root / "caption");
  write_file_atomic(root / "caption" / "b.txt", "The second picture, long.\nnot this line\n");
  write_file_atomic(root / "caption" / "a.txt", "The first picture.\r\n");
  write_file_atomic(root / "caption" / "c.txt", "An image that is missing.");
  write_image(root / "image" / "a.jpg", 1);
  write_image(root / "image" / "b.jpg", 2);
  return root;
}

TEST(LongCaptionSets, SelectionAndCaptionRules) {
  const fs::path dir = test::fresh_temp_dir();
  const eval::CaptionedImages urban =
      eval::read_long_caption_set("urban1k", write_urban1k(dir / "Urban1k"), {});
  EXPECT_EQ(urban.captions, (std::vector<std::string>{"The first picture.", "The second picture, long."}));
  EXPECT_EQ(urban.images[1], dir / "Urban1k" / "image" / "b.jpg");
  EXPECT_EQ(urban.skipped.json()["by_reason"]["missing image file"], 1);

  // ShareGPT4V: the first `count` entries of the array (streamed), newlines as spaces.
  const fs::path share = dir / "sharegpt4v";
  write_image(share / "coco" / "x.png", 3);
  write_image(share / "sam" / "y.png", 4);
  write_file_atomic(share / "share-captioner_coco_lcs_sam_1246k_1107.json",
                    R"([ {"id": "1", "image": "coco/x.png", "conversations": [{"from": "human", "value": "q"},
                           {"from": "gpt", "value": "A \"quoted\" [bracket] {brace}\nsecond line"}]},
                         {"id": "2", "image": "sam/y.png", "conversations": [{"value": "q"}, {"value": "Two."}]},
                         {"id": "3", "image": "sam/y.png", "conversations": [{"value": "q"}, {"value": "Three."}]},
                         not even json])");
  const eval::CaptionedImages s = eval::read_long_caption_set("sharegpt4v", share, {{"count", 2}});
  EXPECT_EQ(s.captions, (std::vector<std::string>{"A \"quoted\" [bracket] {brace} second line", "Two."}));
  EXPECT_EQ(s.images[0], share / "coco" / "x.png");

  // DCI: every split in file order; the caption cut at newlines, </s> and dots.
  EXPECT_EQ(eval::dci_caption("A dog. On grass", "It runs</s>fast.\n\n  Very fast  "),
            "A dog. On grass. It runs. fast. Very fast");
  const fs::path dci = dir / "DCI" / "densely_captioned_images";
  write_file_atomic(dci / "splits.json", R"({"train": ["b.json"], "valid": ["a.json", "gone.json"]})");
  write_file_atomic(dci / "annotations" / "a.json",
                    R"({"image": "a.png", "short_caption": "Short A.", "extra_caption": "Extra A"})");
  write_file_atomic(dci / "annotations" / "b.json",
                    R"({"image": "b.png", "short_caption": "Short B", "extra_caption": ""})");
  write_image(dci / "photos" / "a.png", 5);
  write_image(dci / "photos" / "b.png", 6);
  const eval::CaptionedImages d = eval::read_long_caption_set("dci", dir / "DCI", {});
  EXPECT_EQ(d.captions, (std::vector<std::string>{"Short B", "Short A. Extra A"}));
  EXPECT_EQ(d.skipped.json()["by_reason"]["missing annotation file"], 1);

  // DOCCI: the test split only.
  const fs::path docci = dir / "docci";
  write_file_atomic(docci / "docci_descriptions.jsonlines",
                    "{\"example_id\": \"train_1\", \"split\": \"train\", \"image_file\": \"t.jpg\", "
                    "\"description\": \"no\"}\n"
                    "{\"example_id\": \"test_1\", \"split\": \"test\", \"image_file\": \"u.jpg\", "
                    "\"description\": \"A cat.\\nSleeping.\"}\n"
                    "{\"example_id\": \"qual_1\", \"split\": \"qual_test\", \"image_file\": \"v.jpg\", "
                    "\"description\": \"no\"}\n");
  write_image(docci / "images" / "u.jpg", 7);
  const eval::CaptionedImages c = eval::read_long_caption_set("docci", docci, {});
  EXPECT_EQ(c.captions, (std::vector<std::string>{"A cat. Sleeping."}));

  const std::string missing = error_of([&] { eval::read_long_caption_set("docci", dir / "none", {}); });
  EXPECT_TRUE(contains(missing, (dir / "none" / "docci_descriptions.jsonlines").string()) &&
              contains(missing, "https://google.github.io/docci"))
      << missing;
  EXPECT_TRUE(contains(error_of([&] { eval::read_long_caption_set("urban1k", dir / "none", {}); }),
                       "huggingface.co/datasets/BeichenZhang/Urban1k"));
}

fs::path write_xm3600(const fs::path& root) {
  write_file_atomic(root / "captions.jsonl",
                    "{\"image/key\": \"k1\", \"en\": {\"caption\": [\"one\", \"two\"]}, \"de\": "
                    "{\"caption\": [\"eins\"]}}\n"
                    "{\"image/key\": \"k2\", \"en\": {\"caption\": [\"three\"]}}\n"
                    "{\"image/key\": \"k3\", \"en\": {\"caption\": [\"gone\"]}}\n");
  write_image(root / "images" / "k1.jpg", 8);
  write_image(root / "images" / "k2.jpg", 9);
  return root;
}

fs::path write_sugarcrepe(const fs::path& root, const fs::path& coco) {
  write_image(coco / "000000000001.jpg", 10);
  write_image(coco / "000000000002.jpg", 11);
  write_file_atomic(
      root / "add_att.json",
      R"({"7": {"filename": "000000000002.jpg", "caption": "a red car", "negative_caption": "a car"},
                        "3": {"filename": "000000000001.jpg", "caption": "a dog", "negative_caption": "a big dog"},
                        "9": {"filename": "000000000404.jpg", "caption": "x", "negative_caption": "y"}})");
  return root;
}

TEST(MultilingualCompositional, ReadersAndAccuracy) {
  const fs::path dir = test::fresh_temp_dir();
  const fs::path xm = write_xm3600(dir / "xm3600");
  const eval::LanguagePairs en = eval::read_crossmodal3600(xm, "en");
  EXPECT_EQ(en.captions, (std::vector<std::string>{"one", "three"}));  // the first caption
  EXPECT_EQ(en.skipped.json()["by_reason"]["missing image file"], 1);
  const eval::LanguagePairs de = eval::read_crossmodal3600(xm, "de");
  EXPECT_EQ(de.captions, (std::vector<std::string>{"eins"}));
  EXPECT_EQ(de.skipped.json()["by_reason"]["no de caption"], 1);
  EXPECT_EQ(eval::crossmodal3600_languages().size(), 36u);
  EXPECT_TRUE(contains(error_of([&] { eval::read_crossmodal3600(dir / "none", "en"); }),
                       "google.github.io/crossmodal-3600"));

  const fs::path sc = write_sugarcrepe(dir / "sugar_crepe", dir / "coco" / "val2017");
  const eval::CaptionPairs pairs = eval::read_sugarcrepe_split(sc, dir / "coco" / "val2017", "add_att");
  EXPECT_EQ(pairs.positives, (std::vector<std::string>{"a red car", "a dog"}));  // file order
  EXPECT_EQ(pairs.negatives, (std::vector<std::string>{"a car", "a big dog"}));
  EXPECT_EQ(pairs.skipped.total(), 1);
  EXPECT_TRUE(
      contains(error_of([&] { eval::read_sugarcrepe_split(sc, dir / "coco" / "val2017", "swap_obj"); }),
               (sc / "swap_obj.json").string()));
  // A tie counts as a hit (argmax picks the positive, index 0): 2 of 3.
  EXPECT_DOUBLE_EQ(
      eval::caption_selection_accuracy(torch::tensor({0.5, 0.2, 0.3}), torch::tensor({0.4, 0.2, 0.9})),
      2.0 / 3);
}

// A tiny FLAME run in DIR/run (random vit-micro-32 into the tiny LLM's 64
// dimensions) and eval options for it in fp32.
eval::EvalOptions tiny_model_options(const fs::path& dir) {
  torch::manual_seed(3);
  vision::ImageEncoder encoder(vision::load_vit_config("vit-micro-32"), 64);
  torch::optim::AdamW optimizer(encoder->parameters());
  train::save_checkpoint(dir / "run", 0, *encoder, optimizer,
                         {{{"vit", vision::to_json(encoder->config())}, {"text_dim", 64}}, {{"step", 0}}}, 1);
  eval::EvalOptions o;
  o.model = (dir / "run").string();
  o.llm = test::tiny_checkpoint("llama", "f32").string();
  o.dtype = "f32";
  return o;
}

// The LLM's facet vectors as they come (for facet_pooling mean_embedding) are
// not unit vectors; the default ones are; a task with mean_embedding records it.
TEST(EvalSets, RawFacetsForTheMeanEmbedding) {
  const fs::path dir = test::fresh_temp_dir();
  eval::EvalOptions o = tiny_model_options(dir);
  eval::EvalModels models(o, true);
  const std::vector<std::string> texts = {"A dog runs on the grass.", "Two people sit on a red bench."};
  const torch::Tensor unit = models.text_features(texts, "long");
  const torch::Tensor raw = models.text_features(texts, "long", nullptr, false);
  ASSERT_EQ(raw.sizes(), unit.sizes());
  EXPECT_TRUE(torch::allclose(unit.norm(2, -1), torch::ones({2, unit.size(1)}), 1e-4, 1e-4));
  EXPECT_GT((raw.norm(2, -1) - 1).abs().max().item<float>(), 0.1);
  EXPECT_TRUE(torch::allclose(raw / raw.norm(2, -1, true), unit, 1e-4, 1e-4));  // the same directions

  write_urban1k(dir / "Urban1k");
  write_json_file_atomic(dir / "u.json", {{"name", "u"},
                                          {"tasks",
                                           {{{"name", "urban1k"},
                                             {"type", "long-caption-retrieval"},
                                             {"format", "urban1k"},
                                             {"root", "{data}/Urban1k"},
                                             {"facet_pooling", "mean_embedding"}}}}});
  o.data_root = dir.string();
  o.benchmarks = {(dir / "u.json").string()};
  const nlohmann::json r = eval::run_evaluation(o);
  EXPECT_EQ(r["tasks"][0]["facet_pooling"], "mean_embedding");
  EXPECT_EQ(r["tasks"][0]["facets"], 7);
}

TEST(EvalSets, AllKindsWithAPaperLayoutOnATinyModel) {
  const fs::path dir = test::fresh_temp_dir();
  write_urban1k(dir / "Urban1k");
  write_xm3600(dir / "xm3600");
  write_sugarcrepe(dir / "sugar_crepe", dir / "coco" / "val2017");
  const nlohmann::json bench = {
      {"name", "sets"},
      {"tasks",
       {{{"name", "urban1k"},
         {"type", "long-caption-retrieval"},
         {"format", "urban1k"},
         {"root", "{data}/Urban1k"}},
        {{"name", "xm3600"},
         {"type", "crossmodal3600"},
         {"root", "{data}/xm3600"},
         {"languages", {"en", "de"}}},
        {{"name", "sugarcrepe"},
         {"type", "sugarcrepe"},
         {"root", "{data}/sugar_crepe"},
         {"image_dir", "{data}/coco/val2017"},
         {"splits", {"add_att"}}}}},
      {"layout",
       {{"title", "Table X"},
        {"columns",
         {{{"header", "Urban-1k I→T"}, {"task", "urban1k"}, {"metric", "image_to_text.R@1"}},
          {{"header", "XM3600 de T→I"}, {"task", "xm3600"}, {"metric", "languages.de.text_to_image.R@1"}},
          {{"header", "absent"}, {"task", "nope"}, {"metric", "top1"}}}},
        {"reference", {{"source", "the paper, table X"}, {"values", {12.5, nullptr, 3}}}}}}};
  write_json_file_atomic(dir / "sets.json", bench);

  eval::EvalOptions o = tiny_model_options(dir);
  o.data_root = dir.string();
  o.benchmarks = {(dir / "sets.json").string()};
  const nlohmann::json r = eval::run_evaluation(o);
  ASSERT_EQ(r["tasks"].size(), 3u);
  const auto& urban = r["tasks"][0];
  EXPECT_EQ(urban["images"], 2);
  EXPECT_EQ(urban["facets"], 7);  // the long prompt set's K facets
  EXPECT_DOUBLE_EQ(urban["image_to_text"]["R@5"].get<double>(), 1.0);
  const auto& xm = r["tasks"][1];
  ASSERT_EQ(xm["languages"].size(), 2u);
  EXPECT_EQ(xm["languages"][1]["images"], 1);
  EXPECT_DOUBLE_EQ(xm["languages"][1]["text_to_image"]["R@1"].get<double>(), 1.0);  // one image
  const double mean = (xm["languages"][0]["image_to_text"]["R@1"].get<double>() + 1.0) / 2;
  EXPECT_DOUBLE_EQ(xm["mean"]["image_to_text"]["R@1"].get<double>(), mean);
  const auto& sc = r["tasks"][2];
  EXPECT_EQ(sc["splits"][0]["pairs"], 2);
  const double acc = sc["splits"][0]["accuracy"].get<double>();
  EXPECT_TRUE(acc == 0.0 || acc == 0.5 || acc == 1.0) << acc;

  const std::string md = eval::results_markdown(r);
  EXPECT_TRUE(contains(md, "**Table X**") &&
              contains(md, "| model | Urban-1k I→T | XM3600 de T→I | absent |"))
      << md;
  EXPECT_TRUE(contains(md, fmt::format("| this run | {:.1f} | 100.0 | – |",
                                       100 * urban["image_to_text"]["R@1"].get<double>())))
      << md;
  EXPECT_TRUE(contains(md, "| published | 12.5 | – | 3.0 |") && contains(md, "the paper, table X")) << md;
  EXPECT_TRUE(contains(md, "| de | 1 |") && contains(md, "| add_att | 2 |")) << md;
  EXPECT_TRUE(contains(md, "> urban1k: skipped 1 (1 missing image file)")) << md;
}

// The shipped paper-table files: every layout column names a task of its file
// and a metric that task kind reports; without the data, one line names the
// expected path and where the data is published.
TEST(EvalSets, PaperTableFilesAreConsistent) {
  const fs::path configs = fs::path(FLAME_SOURCE_DIR) / "configs" / "benchmarks";
  for (int table = 1; table <= 5; ++table) {
    const nlohmann::json bench = read_json_file(configs / fmt::format("paper-table{}.json", table));
    std::set<std::string> names;
    for (const auto& t : bench.at("tasks")) names.insert(t.at("name").get<std::string>());
    ASSERT_TRUE(bench.contains("layout")) << table;
    for (const auto& c : bench["layout"].at("columns")) {
      EXPECT_TRUE(names.count(c.at("task").get<std::string>())) << table << ": " << c;
      const std::string metric = c.at("metric");
      EXPECT_TRUE(metric == "top1" || metric.rfind("image_to_text.R@", 0) == 0 ||
                  metric.rfind("text_to_image.R@", 0) == 0)
          << metric;
    }
  }
  const fs::path dir = test::fresh_temp_dir();
  eval::EvalOptions o = tiny_model_options(dir);
  o.data_root = (dir / "no-data").string();
  // Each table's first task alone: its one line. The whole table: a line for
  // each of its tasks, under one heading, before any model is loaded.
  const fs::path none = dir / "no-data";
  const std::map<std::string, std::string> expected = {
      {"paper-table1", "task 'urban1k': no " + (none / "Urban1k").string() +
                           " (its root); published at https://huggingface.co/datasets/BeichenZhang/Urban1k"},
      {"paper-table2", "task 'mscoco-5k': no " + (none / "clip_benchmark" / "wds_mscoco_captions").string() +
                           " (its root); published at https://huggingface.co/datasets/clip-benchmark/"
                           "wds_mscoco_captions"},
      {"paper-table3",
       "wds_imagenet1k (its root); published at "
       "https://huggingface.co/datasets/clip-benchmark/wds_imagenet1k"},
      {"paper-table4", "task 'imagenet-zero-shot-en': no " + (none / "imagenet" / "val").string() +
                           " (its root); published at ImageNet ILSVRC2012 validation images"},
      {"paper-table5",
       "wds_cifar10 (its root); published at "
       "https://huggingface.co/datasets/clip-benchmark/wds_cifar10"},
      {"crossmodal3600", "xm3600 (its root); published at https://google.github.io/crossmodal-3600"},
      {"sugarcrepe", "sugar_crepe (its root); published at https://github.com/RAIVNLab/sugar-crepe"}};
  for (const auto& [bench, line] : expected) {
    o.benchmarks = {bench};
    const nlohmann::json tasks = read_json_file(configs / (bench + ".json")).at("tasks");
    o.tasks = {tasks[0].at("name").get<std::string>()};
    std::string message = error_of([&] { eval::run_evaluation(o); });
    EXPECT_TRUE(contains(message, line) && message.find('\n') == std::string::npos)
        << bench << ": " << message;
    o.tasks.clear();
    message = error_of([&] { eval::run_evaluation(o); });
    if (tasks.size() == 1) continue;
    EXPECT_TRUE(
        contains(message, fmt::format("{} of the {} tasks lack their data", tasks.size(), tasks.size())) &&
        std::count(message.begin(), message.end(), '\n') == static_cast<long>(tasks.size()))
        << bench << ": " << message;
  }
  // Table 4's other languages name CLIP_benchmark's files and where to clone it.
  fs::create_directories(none / "imagenet" / "val");
  o.benchmarks = {"paper-table4"};
  o.tasks = {"imagenet-zero-shot-ja"};
  const std::string ja = error_of([&] { eval::run_evaluation(o); });
  EXPECT_TRUE(
      contains(ja, (none / "CLIP_benchmark" / "clip_benchmark" / "datasets" / "jp_classnames.json").string() +
                       " (its classes)") &&
      contains(ja,
               "git clone https://github.com/LAION-AI/CLIP_benchmark " + (none / "CLIP_benchmark").string()))
      << ja;
}

}  // namespace
}  // namespace flame
