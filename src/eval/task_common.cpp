#include "eval/task_common.h"

#include <spdlog/spdlog.h>

#include <fmt/ranges.h>

#include <algorithm>
#include <fstream>

#include "data/caption_source.h"
#include "util/config_files.h"
#include "util/error.h"
#include "util/file.h"
#include "util/strings.h"
#include "util/utf8.h"

namespace flame::eval {

namespace fs = std::filesystem;

std::string expand_placeholders(std::string value, const std::string& data_root) {
  const std::string configs = config_dir("benchmarks").parent_path().string();
  for (const auto& [key, replacement] :
       {std::pair<std::string, std::string>{"{data}", data_root}, {"{configs}", configs}}) {
    for (size_t at = value.find(key); at != std::string::npos; at = value.find(key))
      value.replace(at, key.size(), replacement);
  }
  return value;
}

std::string task_field(const nlohmann::json& task, const char* name, const std::string& data_root) {
  if (!task.contains(name) || !task[name].is_string()) {
    fail("task '{}': missing string field '{}'", task.value("name", "?"), name);
  }
  return expand_placeholders(task[name].get<std::string>(), data_root);
}

torch::Tensor l2_normalize(const torch::Tensor& x) {
  return torch::nn::functional::normalize(x, torch::nn::functional::NormalizeFuncOptions().dim(-1));
}

std::vector<std::string> read_lines(const fs::path& path) {
  std::ifstream in(path);
  if (!in) fail("cannot read {}", path.string());
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!trim(line).empty()) lines.emplace_back(trim(line));
  }
  return lines;
}

std::vector<std::string> read_name_list(const fs::path& path, const std::string& dataset,
                                        const std::string& fallback) {
  if (path.extension() != ".json") {
    std::vector<std::string> lines = read_lines(path);
    check_utf8_lines(lines, path);
    if (lines.empty()) fail("{}: the file is empty (one name per line expected)", path.string());
    return lines;
  }
  const nlohmann::json j = read_json_file(path);
  const nlohmann::json* list = &j;
  if (j.is_object()) {
    const std::string key = j.contains(dataset) || fallback.empty() ? dataset : fallback;
    if (!j.contains(key)) {
      std::vector<std::string> keys;
      for (const auto& [k, v] : j.items()) keys.push_back(k);
      fail("{}: no list for dataset '{}' (it has: {})", path.string(), dataset, fmt::join(keys, ", "));
    }
    list = &j[key];
  }
  if (!list->is_array()) fail("{}: expected a list of strings (or lists by dataset)", path.string());
  std::vector<std::string> out;
  for (size_t i = 0; i < list->size(); ++i) {
    if (!(*list)[i].is_string()) fail("{}: entry {} is not a string", path.string(), i);
    out.push_back((*list)[i].get<std::string>());
  }
  if (out.empty()) fail("{}: the list for '{}' is empty", path.string(), dataset);
  return out;
}

nlohmann::json recall_json(const RetrievalRecall& r) {
  nlohmann::json j;
  for (const auto& [k, v] : r.image_to_text) j["image_to_text"]["R@" + std::to_string(k)] = v;
  for (const auto& [k, v] : r.text_to_image) j["text_to_image"]["R@" + std::to_string(k)] = v;
  return j;
}

std::string fill_template(const std::string& templ, const std::string& class_name) {
  for (const std::string slot : {"{c}", "{}"}) {
    const size_t at = templ.find(slot);
    if (at != std::string::npos) return templ.substr(0, at) + class_name + templ.substr(at + slot.size());
  }
  fail("template '{}' has no {{c}} or {{}} for the class name", templ);
}

FacetPooling facet_pooling(const nlohmann::json& task) {
  return parse_facet_pooling(task.value("facet_pooling", "mean_cosine"),
                             fmt::format("task '{}': facet_pooling", task.value("name", "?")));
}

FacetPooling parse_facet_pooling(const std::string& value, const std::string& where) {
  if (value == "mean_cosine") return FacetPooling::kMeanCosine;
  if (value == "mean_embedding") return FacetPooling::kMeanEmbedding;
  fail("{} must be mean_cosine or mean_embedding, not '{}'", where, value);
}

const char* to_string(FacetPooling pooling) {
  return pooling == FacetPooling::kMeanCosine ? "mean_cosine" : "mean_embedding";
}

torch::Tensor pool_facets(const torch::Tensor& text, FacetPooling pooling) {
  if (pooling == FacetPooling::kMeanCosine) return text;
  return l2_normalize(text.mean(1)).unsqueeze(1);
}

torch::Tensor facet_similarity(const torch::Tensor& image, const torch::Tensor& text) {
  if (image.dim() != 2 || text.dim() != 3 || image.size(1) != text.size(2)) {
    fail("facet_similarity: expected image [N, D] and text [T, K, D], got {} and {} dimensions", image.dim(),
         text.dim());
  }
  return torch::einsum("id,tkd->it", {image, text}) / text.size(1);
}

std::vector<int64_t> class_quotas(int64_t limit, int64_t classes) {
  std::vector<int64_t> quotas(static_cast<size_t>(std::max<int64_t>(classes, 0)), 0);
  if (limit <= 0) return quotas;
  for (int64_t c = 0; c < classes; ++c) quotas[c] = limit / classes + (c < limit % classes ? 1 : 0);
  return quotas;
}

std::string caption_defect(const std::string& caption) {
  size_t bad = 0;
  if (!utf8::is_valid(caption, &bad)) return fmt::format("caption not valid UTF-8 (byte {})", bad);
  if (data::blank_caption(caption)) return "empty caption";  // whitespace and invisible characters included
  return "";
}

void check_utf8_lines(const std::vector<std::string>& lines, const fs::path& file) {
  for (size_t i = 0; i < lines.size(); ++i) {
    size_t bad = 0;
    if (!utf8::is_valid(lines[i], &bad))
      fail("{}: entry {} is not valid UTF-8 (byte {}); save the file as UTF-8", file.string(), i + 1, bad);
  }
}

void Skipped::add(const std::string& reason, const std::string& item) {
  ++total_;
  // Names from the data may be any bytes: the results JSON needs UTF-8.
  const std::string why = utf8::sanitize(reason);
  ++by_reason_[why];
  if (examples_.size() >= 10) return;  // counted; the first few are named (and logged)
  const std::string named = utf8::sanitize(item);
  examples_.push_back(why + ": " + named);
  spdlog::warn("skipped ({}): {}", why, named);
}

nlohmann::json Skipped::json() const {
  return {{"count", total_}, {"by_reason", by_reason_}, {"examples", examples_}};
}

}  // namespace flame::eval
