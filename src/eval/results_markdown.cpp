// `flame eval`'s Markdown: the paper-table layouts a benchmark file declares
// (one row for this model, one for the published figures when the file
// carries them), then every task by kind: retrieval, classification,
// multilingual retrieval, caption selection, and what readers skipped.
#include <sstream>
#include <vector>

#include "eval/evaluate.h"
#include "util/strings.h"

namespace flame::eval {

namespace {

std::string percent(const nlohmann::json& v) {
  return v.is_number() ? fmt::format("{:.1f}", 100 * v.get<double>()) : "–";
}

// A metric of a task result by a dotted path ("image_to_text.R@1",
// "languages.ar.text_to_image.R@1"); an array step picks the element whose
// "language" or "split" is the key. Null when absent.
nlohmann::json metric_at(const nlohmann::json& result, const std::string& path) {
  const nlohmann::json* at = &result;
  for (const auto& key : split(path, '.')) {
    if (at->is_object() && at->contains(key)) {
      at = &(*at)[key];
      continue;
    }
    const nlohmann::json* next = nullptr;
    if (at->is_array()) {
      for (const auto& e : *at)
        if (e.value("language", "") == key || e.value("split", "") == key) next = &e;
    }
    if (next == nullptr) return nullptr;
    at = next;
  }
  return *at;
}

// A layout: {"title", "columns": [{"header", "task", "metric"}], "reference":
// {"source", "values": [numbers, in percent, null where none]}}.
void layout_markdown(std::ostringstream& md, const nlohmann::json& layout, const nlohmann::json& results) {
  const auto& columns = layout.at("columns");
  md << "**" << layout.value("title", "") << "**\n\n| model |";
  for (const auto& c : columns) md << " " << c.at("header").get<std::string>() << " |";
  md << "\n|---|";
  for (size_t i = 0; i < columns.size(); ++i) md << "---:|";
  md << "\n| this run |";
  for (const auto& c : columns) {
    nlohmann::json value = nullptr;
    for (const auto& t : results["tasks"])
      if (t["name"] == c.at("task")) value = metric_at(t, c.at("metric").get<std::string>());
    md << " " << percent(value) << " |";
  }
  md << "\n";
  const auto& reference = layout.value("reference", nlohmann::json::object());
  if (reference.contains("values")) {
    md << "| " << reference.value("label", "published") << " |";
    for (const auto& v : reference["values"])
      md << " " << (v.is_number() ? fmt::format("{:.1f}", v.get<double>()) : "–") << " |";
    md << "\n\n_published figures: " << reference.value("source", "") << "_\n";
  }
  md << "\n";
}

void retrieval_markdown(std::ostringstream& md, const nlohmann::json& results) {
  bool header = false;
  for (const auto& t : results["tasks"]) {
    if (t["type"] != "retrieval") continue;
    if (!header) {
      md << "| retrieval | mode | images | texts | I→T R@1 | R@5 | R@10 | T→I R@1 | R@5 | R@10 |\n"
         << "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n";
      header = true;
    }
    const auto& i2t = t["image_to_text"];
    const auto& t2i = t["text_to_image"];
    md << fmt::format("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n", t["name"].get<std::string>(),
                      t["mode"].get<std::string>(), t["images"].get<int64_t>(), t["texts"].get<int64_t>(),
                      percent(i2t["R@1"]), percent(i2t["R@5"]), percent(i2t["R@10"]), percent(t2i["R@1"]),
                      percent(t2i["R@5"]), percent(t2i["R@10"]));
  }
}

// The mean per-class recall column only when a task reports it (CLIP_benchmark's
// tasks), so flame's own tables keep their columns.
void classification_markdown(std::ostringstream& md, const nlohmann::json& results) {
  std::vector<nlohmann::json> rows;
  bool balanced = false;
  for (const auto& t : results["tasks"]) {
    if (t["type"] != "zero-shot" && t["type"] != "linear-probe") continue;
    rows.push_back(t);
    balanced = balanced || t.contains("mean_per_class_recall");
  }
  if (rows.empty()) return;
  md << (md.tellp() > 0 ? "\n" : "") << "| classification | type | images | top-1 | top-5 |"
     << (balanced ? " mean per-class |" : "") << "\n|---|---|---:|---:|---:|" << (balanced ? "---:|" : "")
     << "\n";
  for (const auto& t : rows) {
    md << fmt::format("| {} | {} | {} | {} | {} |", t["name"].get<std::string>(),
                      t["type"].get<std::string>(), t["images"].get<int64_t>(), percent(t["top1"]),
                      t.contains("top5") ? percent(t["top5"]) : "");
    if (balanced) md << " " << percent(t.value("mean_per_class_recall", nlohmann::json())) << " |";
    md << "\n";
  }
}

void multilingual_markdown(std::ostringstream& md, const nlohmann::json& t) {
  md << (md.tellp() > 0 ? "\n" : "") << "| " << t["name"].get<std::string>()
     << " | images | I→T R@1 | T→I R@1 |\n|---|---:|---:|---:|\n";
  for (const auto& row : t["languages"]) {
    md << fmt::format("| {} | {} | {} | {} |\n", row["language"].get<std::string>(),
                      row["images"].get<int64_t>(), percent(row["image_to_text"]["R@1"]),
                      percent(row["text_to_image"]["R@1"]));
  }
  md << fmt::format("| mean | | {} | {} |\n", percent(t["mean"]["image_to_text"]["R@1"]),
                    percent(t["mean"]["text_to_image"]["R@1"]));
}

void caption_selection_markdown(std::ostringstream& md, const nlohmann::json& t) {
  md << (md.tellp() > 0 ? "\n" : "") << "| " << t["name"].get<std::string>()
     << " | pairs | accuracy |\n|---|---:|---:|\n";
  for (const auto& row : t["splits"])
    md << fmt::format("| {} | {} | {} |\n", row["split"].get<std::string>(), row["pairs"].get<int64_t>(),
                      percent(row["accuracy"]));
  md << fmt::format("| mean | | {} |\n", percent(t["mean_accuracy"]));
}

// Skipped items, per task, so a table computed on fewer items says so.
void skipped_markdown(std::ostringstream& md, const nlohmann::json& results) {
  for (const auto& t : results["tasks"]) {
    int64_t count = 0;
    std::string reasons;
    for (const char* key : {"skipped", "skipped_test"}) {
      if (!t.contains(key)) continue;
      count += t[key]["count"].get<int64_t>();
      for (const auto& [reason, n] : t[key]["by_reason"].items())
        reasons += (reasons.empty() ? "" : ", ") + fmt::format("{} {}", n.get<int64_t>(), reason);
    }
    if (count > 0)
      md << fmt::format("\n> {}: skipped {} ({})\n", t["name"].get<std::string>(), count, reasons);
  }
}

}  // namespace

std::string results_markdown(const nlohmann::json& results) {
  std::ostringstream md;
  // Warnings first: a table computed with another LLM must say so.
  for (const auto& w : results.value("warnings", nlohmann::json::array()))
    md << "> **warning:** " << w.get<std::string>() << "\n\n";
  for (const auto& layout : results.value("layouts", nlohmann::json::array()))
    layout_markdown(md, layout, results);
  retrieval_markdown(md, results);
  classification_markdown(md, results);
  for (const auto& t : results["tasks"]) {
    if (t["type"] == "multilingual-retrieval") multilingual_markdown(md, t);
    if (t["type"] == "caption-selection") caption_selection_markdown(md, t);
  }
  skipped_markdown(md, results);
  return md.str();
}

}  // namespace flame::eval
