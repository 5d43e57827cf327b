#include "eval/long_caption_sets.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <map>

#include "eval/metrics.h"
#include "util/error.h"
#include "util/file.h"
#include "util/json_fields.h"
#include "util/strings.h"

namespace flame::eval {

namespace fs = std::filesystem;

namespace {

// Where each set is published, for the missing-data line.
const std::map<std::string, std::string>& published() {
  static const std::map<std::string, std::string> urls = {
      {"urban1k", "https://huggingface.co/datasets/BeichenZhang/Urban1k (Urban1k.zip)"},
      {"sharegpt4v",
       "https://huggingface.co/datasets/Lin-Chen/ShareGPT4V (the JSON; its images: COCO, SAM, "
       "LLaVA-Pretrain)"},
      {"dci", "https://github.com/facebookresearch/DCI (densely_captioned_images)"},
      {"docci", "https://google.github.io/docci/#downloads (descriptions and images)"}};
  return urls;
}

[[noreturn]] void fail_missing(const std::string& format, const fs::path& expected) {
  fail("no {} data: expected {}; published at {}", format, expected.string(), published().at(format));
}

}  // namespace

std::string long_caption_published(const std::string& format) {
  const auto it = published().find(format);
  return it == published().end() ? "" : it->second;
}

namespace {

std::string newlines_to_spaces(std::string text) {
  std::replace(text.begin(), text.end(), '\n', ' ');
  return text;
}

// Adds the pair, or counts it as skipped when the caption is not usable
// (invalid UTF-8, empty) or the image file is missing. `where` names the entry.
void add_pair(CaptionedImages* out, const fs::path& image, std::string caption, const std::string& where) {
  const std::string defect = caption_defect(caption);
  if (!defect.empty()) {
    out->skipped.add(defect, where);
    return;
  }
  if (!fs::is_regular_file(image)) {
    out->skipped.add("missing image file", image.string());
    return;
  }
  out->images.push_back(image);
  out->captions.push_back(std::move(caption));
}

void read_urban1k(const fs::path& root, CaptionedImages* out) {
  if (!fs::is_directory(root / "caption")) fail_missing("urban1k", root / "caption");
  std::vector<fs::path> captions;
  for (const auto& e : fs::directory_iterator(root / "caption"))
    if (e.is_regular_file() && e.path().extension() == ".txt") captions.push_back(e.path());
  std::sort(captions.begin(), captions.end());  // the script's os.listdir order is arbitrary: ours is fixed
  for (const auto& c : captions) {
    const std::string text = read_file(c);
    std::string first = text.substr(0, text.find('\n'));  // readlines()[0], its newline dropped
    if (!first.empty() && first.back() == '\r') first.pop_back();
    add_pair(out, root / "image" / (c.stem().string() + ".jpg"), first, c.string());
  }
}

// The first `count` elements of the JSON array in `path`, parsed one at a
// time: the ShareGPT4V file holds 1.2M entries (GBs), the subset needs 1000.
std::vector<nlohmann::json> json_array_prefix(const fs::path& path, size_t count) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot read {}", path.string());
  char c = 0;
  while (in.get(c) && c != '[') {
    if (!std::isspace(static_cast<unsigned char>(c))) fail("{}: not a JSON array", path.string());
  }
  std::vector<nlohmann::json> items;
  std::string item;
  int depth = 0;
  bool in_string = false, escaped = false;
  while (items.size() < count && in.get(c)) {
    if (depth == 0 && (c == ',' || std::isspace(static_cast<unsigned char>(c)))) continue;
    if (depth == 0 && c == ']') break;
    item += c;
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    if (c == '{' || c == '[') ++depth;
    if (c == '}' || c == ']') --depth;
    if (depth == 0) {
      items.push_back(nlohmann::json::parse(item, nullptr, false));
      if (items.back().is_discarded()) fail("{}: entry {} is not valid JSON", path.string(), items.size());
      item.clear();
    }
  }
  return items;
}

void read_sharegpt4v(const fs::path& root, const nlohmann::json& given, CaptionedImages* out) {
  const nlohmann::json task = given.is_object() ? given : nlohmann::json::object();
  const fs::path file = root / task.value("annotations", "share-captioner_coco_lcs_sam_1246k_1107.json");
  if (!fs::is_regular_file(file)) fail_missing("sharegpt4v", file);
  const fs::path image_dir = task.value("image_dir", root.string());
  const auto count =
      static_cast<size_t>(json_uint(task, "count", "task '" + task.value("name", "?") + "'", 1000));
  size_t index = 0;
  for (const auto& entry : json_array_prefix(file, count)) {
    const std::string where = fmt::format("{} entry {}", file.string(), ++index);
    const nlohmann::json turns =
        entry.is_object() ? entry.value("conversations", nlohmann::json::array()) : nlohmann::json();
    if (!entry.is_object() || !entry.contains("image") || !entry["image"].is_string() || !turns.is_array() ||
        turns.size() < 2 || !turns[1].is_object() || !turns[1].contains("value") ||
        !turns[1]["value"].is_string()) {
      out->skipped.add("entry without image or caption", where);
      continue;
    }
    add_pair(out, image_dir / entry["image"].get<std::string>(),
             newlines_to_spaces(turns[1]["value"].get<std::string>()), where);
  }
}

void read_dci(const fs::path& root, CaptionedImages* out) {
  const fs::path base = root / "densely_captioned_images";
  if (!fs::is_regular_file(base / "splits.json")) fail_missing("dci", base / "splits.json");
  // Every split, in the file's order (as the script's dict iteration).
  const nlohmann::ordered_json splits =
      nlohmann::ordered_json::parse(read_file(base / "splits.json"), nullptr, false);
  if (!splits.is_object())
    fail("{}: expected an object of file lists by split", (base / "splits.json").string());
  for (const auto& [split, files] : splits.items()) {
    if (!files.is_array())
      fail("{}: split '{}' is not a list of files", (base / "splits.json").string(), split);
    for (const auto& f : files) {
      if (!f.is_string()) {
        out->skipped.add("annotation name not a string", fmt::format("split '{}': {}", split, f.dump()));
        continue;
      }
      const fs::path annotation = base / "annotations" / f.get<std::string>();
      if (!fs::is_regular_file(annotation)) {
        out->skipped.add("missing annotation file", annotation.string());
        continue;
      }
      const nlohmann::json a = nlohmann::json::parse(read_file(annotation), nullptr, false);
      const auto text = [&a](const char* key) {
        return a.contains(key) && a[key].is_string() ? a[key].get<std::string>() : std::string();
      };
      if (!a.is_object() || !a.contains("image") || !a["image"].is_string()) {
        out->skipped.add("annotation not JSON or without \"image\"", annotation.string());
        continue;
      }
      add_pair(out, base / "photos" / a["image"].get<std::string>(),
               dci_caption(text("short_caption"), text("extra_caption")), annotation.string());
    }
  }
}

void read_docci(const fs::path& root, CaptionedImages* out) {
  const fs::path file = root / "docci_descriptions.jsonlines";
  if (!fs::is_regular_file(file)) fail_missing("docci", file);
  std::ifstream in(file);
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    if (trim(line).empty()) continue;
    const std::string where = fmt::format("{}:{}", file.string(), number);
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    const auto is_string = [&j](const char* key) { return j.contains(key) && j[key].is_string(); };
    if (!j.is_object() || !is_string("split") || !is_string("image_file") || !is_string("description")) {
      out->skipped.add("line not JSON with split, image_file and description", where);
      continue;
    }
    if (j["split"] != "test") continue;
    add_pair(out, root / "images" / j["image_file"].get<std::string>(),
             newlines_to_spaces(j["description"].get<std::string>()), where);
  }
}

}  // namespace

std::string dci_caption(const std::string& short_caption, const std::string& extra_caption) {
  std::string text = short_caption + "\n" + extra_caption;
  for (size_t at = text.find("</s>"); at != std::string::npos; at = text.find("</s>"))
    text.replace(at, 4, "\n");
  std::replace(text.begin(), text.end(), '.', '\n');
  std::string joined;
  for (const auto& piece : split(text, '\n')) {
    const std::string_view t = trim(piece);
    if (t.empty()) continue;
    if (!joined.empty()) joined += ". ";
    joined += t;
  }
  return joined;
}

CaptionedImages read_long_caption_set(const std::string& format, const fs::path& root,
                                      const nlohmann::json& task) {
  CaptionedImages out;
  if (format == "urban1k")
    read_urban1k(root, &out);
  else if (format == "sharegpt4v")
    read_sharegpt4v(root, task, &out);
  else if (format == "dci")
    read_dci(root, &out);
  else if (format == "docci")
    read_docci(root, &out);
  else
    fail("unknown long-caption set format '{}' (urban1k, sharegpt4v, dci, docci)", format);
  if (out.images.empty()) fail("{}: no image-caption pair in {}", format, root.string());
  return out;
}

nlohmann::json run_long_caption_retrieval(EvalModels& m, const nlohmann::json& task,
                                          const std::string& data_root, int64_t limit) {
  const std::string name = task.at("name");
  CaptionedImages set =
      read_long_caption_set(task_field(task, "format", data_root), task_field(task, "root", data_root), task);
  if (limit > 0 && static_cast<int64_t>(set.images.size()) > limit) {
    set.images.resize(limit);
    set.captions.resize(limit);
  }
  const torch::Tensor image = m.image_features(file_inputs(set.images), name);
  spdlog::info("{}: embedding {} long captions", name, set.captions.size());
  int64_t truncated = 0;
  const FacetPooling pooling = facet_pooling(task);
  const torch::Tensor text =
      m.text_features(set.captions, "long", &truncated, pooling == FacetPooling::kMeanCosine);
  std::vector<int64_t> text_image(set.captions.size());
  for (size_t i = 0; i < text_image.size(); ++i) text_image[i] = static_cast<int64_t>(i);
  const RetrievalRecall recall = retrieval_recall(facet_similarity(image, pool_facets(text, pooling)),
                                                  text_image, {1, 5, 10}, TieRule::kFirstIndex);
  nlohmann::json out = {{"name", name},
                        {"type", "retrieval"},
                        {"mode", "long"},
                        {"source", task.at("format")},
                        {"images", set.images.size()},
                        {"texts", set.captions.size()},
                        {"facets", text.size(1)},
                        {"facet_pooling", to_string(pooling)},
                        {"tie_rule", "first index (argmax, as the method's scripts)"}};
  if (m.is_clip()) out["truncated_texts"] = truncated;
  out.update(recall_json(recall));
  out["skipped"] = set.skipped.json();
  return out;
}

}  // namespace flame::eval
