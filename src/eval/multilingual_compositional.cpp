#include "eval/multilingual_compositional.h"

#include <spdlog/spdlog.h>

#include <fstream>

#include "eval/metrics.h"
#include "util/error.h"
#include "util/file.h"
#include "util/strings.h"

namespace flame::eval {

namespace fs = std::filesystem;

namespace {

std::vector<std::string> languages_of(const nlohmann::json& task) {
  if (!task.contains("languages")) return crossmodal3600_languages();
  return task["languages"].get<std::vector<std::string>>();
}

}  // namespace

const std::vector<std::string>& crossmodal3600_languages() {
  static const std::vector<std::string> codes = {"ar", "bn",  "cs", "da", "de", "el", "en", "es",  "fa",
                                                 "fi", "fil", "fr", "he", "hi", "hr", "hu", "id",  "it",
                                                 "ja", "ko",  "mi", "nl", "no", "pl", "pt", "quz", "ro",
                                                 "ru", "sv",  "sw", "te", "th", "tr", "uk", "vi",  "zh"};
  return codes;
}

LanguagePairs read_crossmodal3600(const fs::path& root, const std::string& language) {
  const fs::path file = root / "captions.jsonl";
  if (!fs::is_regular_file(file))
    fail("no Crossmodal-3600 data: expected {}; published at {}", file.string(), kCrossmodalSource);
  LanguagePairs out;
  std::ifstream in(file);
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    if (trim(line).empty()) continue;
    const std::string where = fmt::format("{}:{}", file.string(), number);
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_object() || !j.contains("image/key") || !j["image/key"].is_string()) {
      out.skipped.add("line not JSON with a string \"image/key\"", where);
      continue;
    }
    const std::string key = j["image/key"].get<std::string>();
    const fs::path image = root / "images" / (key + ".jpg");
    if (!fs::is_regular_file(image)) {
      out.skipped.add("missing image file", image.string());
      continue;
    }
    const nlohmann::json captions = j.contains(language) && j[language].is_object()
                                        ? j[language].value("caption", nlohmann::json::array())
                                        : nlohmann::json::array();
    if (!captions.is_array() || captions.empty() || !captions[0].is_string()) {
      out.skipped.add("no " + language + " caption", key);
      continue;
    }
    const std::string defect = caption_defect(captions[0].get<std::string>());
    if (!defect.empty()) {
      out.skipped.add(defect + " (" + language + ")", where);
      continue;
    }
    out.images.push_back(image);
    out.captions.push_back(captions[0].get<std::string>());  // the first, as CLIP_benchmark takes it
  }
  return out;
}

CaptionPairs read_sugarcrepe_split(const fs::path& root, const fs::path& image_dir,
                                   const std::string& split) {
  const fs::path file = root / (split + ".json");
  if (!fs::is_regular_file(file))
    fail("no SugarCrepe split {}: expected {}; published at {}", split, file.string(), kSugarCrepeSource);
  if (!fs::is_directory(image_dir))
    fail("no COCO val2017 images for SugarCrepe: expected {}; published at {}", image_dir.string(),
         kSugarCrepeSource);
  CaptionPairs out;
  const nlohmann::ordered_json items = nlohmann::ordered_json::parse(read_file(file), nullptr, false);
  if (!items.is_object()) fail("{}: expected a JSON object of items by id", file.string());
  for (const auto& [id, item] : items.items()) {
    const auto text = [&item](const char* key) {
      return item.is_object() && item.contains(key) && item[key].is_string() ? item[key].get<std::string>()
                                                                             : std::string();
    };
    if (text("filename").empty() || text("caption").empty() || text("negative_caption").empty()) {
      out.skipped.add("item without filename, caption and negative_caption", file.string() + " item " + id);
      continue;
    }
    const std::string defect = caption_defect(text("caption")).empty()
                                   ? caption_defect(text("negative_caption"))
                                   : caption_defect(text("caption"));
    if (!defect.empty()) {
      out.skipped.add(defect, file.string() + " item " + id);
      continue;
    }
    const fs::path image = image_dir / text("filename");
    if (!fs::is_regular_file(image)) {
      out.skipped.add("missing image file", image.string());
      continue;
    }
    out.images.push_back(image);
    out.positives.push_back(text("caption"));
    out.negatives.push_back(text("negative_caption"));
  }
  return out;
}

double caption_selection_accuracy(const torch::Tensor& positive, const torch::Tensor& negative) {
  if (positive.numel() == 0 || positive.sizes() != negative.sizes())
    fail("caption_selection_accuracy: expected two equal, non-empty score vectors");
  return (positive >= negative).to(torch::kDouble).mean().item<double>();
}

nlohmann::json run_crossmodal3600(EvalModels& m, const nlohmann::json& task, const std::string& data_root,
                                  int64_t limit) {
  const std::string name = task.at("name");
  const fs::path root = task_field(task, "root", data_root);
  nlohmann::json rows = nlohmann::json::array();
  double mean_i2t = 0, mean_t2i = 0;
  for (const auto& language : languages_of(task)) {
    LanguagePairs pairs = read_crossmodal3600(root, language);
    if (pairs.images.empty()) fail("{}: no image with a {} caption in {}", name, language, root.string());
    if (limit > 0 && static_cast<int64_t>(pairs.images.size()) > limit) {
      pairs.images.resize(limit);
      pairs.captions.resize(limit);
    }
    const torch::Tensor image = m.image_features(file_inputs(pairs.images), name);  // shared by the languages
    const torch::Tensor text = m.text_features(pairs.captions, "raw");
    std::vector<int64_t> text_image(pairs.captions.size());
    for (size_t i = 0; i < text_image.size(); ++i) text_image[i] = static_cast<int64_t>(i);
    const RetrievalRecall r =
        retrieval_recall(facet_similarity(image, text), text_image, {1, 5, 10}, TieRule::kFirstIndex);
    nlohmann::json row = {{"language", language}, {"images", pairs.images.size()}};
    row.update(recall_json(r));
    row["skipped"] = pairs.skipped.json();
    rows.push_back(row);
    mean_i2t += r.image_to_text.at(1);
    mean_t2i += r.text_to_image.at(1);
  }
  const auto n = static_cast<double>(rows.size());
  return {{"name", name},
          {"type", "multilingual-retrieval"},
          {"languages", rows},
          {"mean", {{"image_to_text", {{"R@1", mean_i2t / n}}}, {"text_to_image", {{"R@1", mean_t2i / n}}}}},
          {"tie_rule", "first index (CLIP_benchmark: torch topk/argmax)"}};
}

nlohmann::json run_sugarcrepe(EvalModels& m, const nlohmann::json& task, const std::string& data_root,
                              int64_t limit) {
  const std::string name = task.at("name");
  const FacetPooling pooling = facet_pooling(task);
  const fs::path root = task_field(task, "root", data_root);
  const fs::path image_dir = task_field(task, "image_dir", data_root);
  const std::string mode = task.value("mode", "long");
  if (mode != "short" && mode != "long") fail("task '{}': mode must be short or long, not '{}'", name, mode);
  const std::vector<std::string> splits = task.value("splits", kSugarCrepeSplits);
  nlohmann::json rows = nlohmann::json::array();
  double mean = 0;
  for (const auto& split : splits) {
    CaptionPairs pairs = read_sugarcrepe_split(root, image_dir, split);
    if (pairs.images.empty())
      fail("{}: no SugarCrepe {} pair has its image in {}", name, split, image_dir.string());
    if (limit > 0 && static_cast<int64_t>(pairs.images.size()) > limit) {
      pairs.images.resize(limit);
      pairs.positives.resize(limit);
      pairs.negatives.resize(limit);
    }
    const torch::Tensor image = m.image_features(file_inputs(pairs.images), name + " " + split);
    const std::string prompts = mode == "long" ? "long" : "raw";
    // Each image against its own two captions: the diagonal of facet_similarity, row by row.
    const auto own = [&](const std::vector<std::string>& texts) {
      const torch::Tensor t = pool_facets(
          m.text_features(texts, prompts, nullptr, pooling == FacetPooling::kMeanCosine), pooling);
      return torch::einsum("nd,nkd->n", {image, t}) / t.size(1);
    };
    const double accuracy = caption_selection_accuracy(own(pairs.positives), own(pairs.negatives));
    rows.push_back({{"split", split},
                    {"pairs", pairs.images.size()},
                    {"accuracy", accuracy},
                    {"skipped", pairs.skipped.json()}});
    mean += accuracy;
  }
  return {{"name", name},   {"type", "caption-selection"},
          {"mode", mode},   {"facet_pooling", to_string(pooling)},
          {"splits", rows}, {"mean_accuracy", mean / static_cast<double>(rows.size())}};
}

}  // namespace flame::eval
