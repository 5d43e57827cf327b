#include "data/caption_source.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <unordered_map>

#include "data/brace_expand.h"
#include "data/tar_reader.h"
#include "llm/unicode.h"
#include "util/error.h"
#include "util/strings.h"
#include "util/utf8.h"

namespace flame::data {

// One rule for every reader; it used to drop ASCII whitespace only, and embed
// a caption of U+3000s.
bool blank_caption(std::string_view text) {
  for (size_t pos = 0; pos < text.size();) {
    const uint32_t cp = utf8::next_code_point(text, &pos);
    const auto category = llm::unicode::category(cp);
    const bool invisible = category == llm::unicode::Category::Cc || category == llm::unicode::Category::Cf;
    if (!llm::unicode::is_whitespace(cp) && !invisible) return false;
  }
  return true;
}

namespace {

using nlohmann::json;

// Applies the checks shared by all formats to each record read, and passes
// the usable ones on: invalid or empty fields are removed, then records lacking
// required fields or repeating an earlier key are dropped. Records (and
// problems) whose key the sink does not select are skipped before any
// bookkeeping, so a part of a scale-out job remembers only its own keys.
class Collector {
 public:
  Collector(const CaptionSourceOptions& options, const CaptionSink& sink) : options_(options), sink_(sink) {}

  // Problems quote input bytes (keys, paths, cells); they are made valid UTF-8
  // so they can be logged and written as JSON.
  void problem(const std::string& key, const std::string& source, const std::string& reason, bool dropped) {
    if (!selected(key)) return;
    sink_.problem(InputProblem{utf8::sanitize(key), utf8::sanitize(source), utf8::sanitize(reason), dropped});
  }

  // One problem per defective record, its reasons joined, so problems can be
  // counted per key.
  void add(CaptionRecord record) {
    if (!selected(record.key)) return;
    // Keys end up in JSON (store shards, logs), which must be UTF-8.
    if (!utf8::is_valid(record.key)) {
      problem(record.key, record.source, "key is not valid UTF-8", true);
      return;
    }
    std::vector<std::string> reasons = clean_fields(&record);
    const bool usable = usable_record(record, &reasons);
    if (!reasons.empty())
      problem(record.key, record.source, fmt::format("{}", fmt::join(reasons, "; ")), !usable);
    if (usable) sink_.record(std::move(record));
  }

  bool selected(const std::string& key) const { return !sink_.selects || sink_.selects(key); }

 private:
  // Removes invalid and empty fields, returning why.
  static std::vector<std::string> clean_fields(CaptionRecord* record) {
    std::vector<std::string> reasons;
    for (auto it = record->fields.begin(); it != record->fields.end();) {
      size_t bad = 0;
      if (!utf8::is_valid(it->second, &bad)) {
        reasons.push_back(fmt::format("field '{}' is not valid UTF-8 (byte {})", it->first, bad));
        it = record->fields.erase(it);
      } else if (blank_caption(it->second)) {
        reasons.push_back(
            fmt::format("field '{}' is empty (or only whitespace / invisible characters)", it->first));
        it = record->fields.erase(it);
      } else {
        ++it;
      }
    }
    return reasons;
  }

  bool usable_record(const CaptionRecord& record, std::vector<std::string>* reasons) {
    bool usable = true;
    for (const auto& field : options_.required_fields) {
      if (record.fields.count(field) == 0) {
        reasons->push_back(fmt::format("missing field '{}'", field));
        usable = false;
      }
    }
    if (usable && record.fields.empty()) {
      reasons->push_back("no non-empty text field");
      usable = false;
    }
    if (usable) {
      const auto [it, inserted] = first_source_.emplace(record.key, record.source);
      if (!inserted) {
        reasons->push_back(fmt::format("duplicate key (first seen at {})", it->second));
        usable = false;
      }
    }
    return usable;
  }

  const CaptionSourceOptions& options_;
  const CaptionSink& sink_;
  std::unordered_map<std::string, std::string> first_source_;  // key -> where it was first read
};

std::ifstream open_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open caption file '{}': {}", path, std::strerror(errno));
  return in;
}

// One line without its line ending; a byte order mark before the first line
// (as spreadsheet exports write) is dropped.
bool read_line(std::ifstream& in, std::string* line, bool first = false) {
  if (!std::getline(in, *line)) return false;
  if (!line->empty() && line->back() == '\r') line->pop_back();
  if (first && starts_with(*line, "\xEF\xBB\xBF")) line->erase(0, 3);
  return true;
}

void read_jsonl(const std::string& path, const CaptionSourceOptions& options, Collector* out) {
  std::ifstream in = open_text_file(path);
  std::string line;
  for (int64_t number = 1; read_line(in, &line, number == 1); ++number) {
    if (trim(line).empty()) continue;
    const std::string source = fmt::format("{}:{}", path, number);
    size_t bad = 0;
    const bool valid_utf8 = utf8::is_valid(line, &bad);
    // The JSON parser refuses invalid UTF-8; parse a repaired copy so the
    // problem can still name the key.
    const json value = json::parse(valid_utf8 ? line : utf8::sanitize(line), nullptr, false);
    if (value.is_discarded()) {
      out->problem("", source, "not valid JSON", true);
      continue;
    }
    if (!value.is_object()) {
      out->problem("", source, "not a JSON object", true);
      continue;
    }
    const auto key_it = value.find(options.jsonl_key_field);
    std::string key;
    if (key_it != value.end() && key_it->is_string()) {
      key = key_it->get<std::string>();
    } else if (key_it != value.end() && key_it->is_number_integer()) {
      key = key_it->dump();
    }
    if (key.empty()) {
      out->problem("", source, fmt::format("missing or invalid key field '{}'", options.jsonl_key_field),
                   true);
      continue;
    }
    if (!valid_utf8) {
      out->problem(key, source, fmt::format("line is not valid UTF-8 (byte {})", bad), true);
      continue;
    }
    CaptionRecord record{key, {}, source};
    for (const auto& [name, field] : value.items()) {
      if (name != options.jsonl_key_field && field.is_string())
        record.fields[name] = field.get<std::string>();
    }
    out->add(std::move(record));
  }
}

// WebDataset: a member "dir/KEY.EXT" belongs to sample "dir/KEY", where KEY ends
// at the first dot of the file name; consecutive members with the same key form
// one sample. Returns false for names without an extension.
void read_tar(const std::string& path, Collector* out) {
  TarReader tar(path);
  struct Sample {
    std::string key;
    std::map<std::string, std::string> members;  // ext -> bytes
  };
  Sample sample;
  const auto flush = [&]() {
    if (sample.key.empty()) return;
    const std::string source = fmt::format("{}:{}", path, sample.key);
    CaptionRecord record{sample.key, {}, source};
    const auto json_it = sample.members.find("json");
    if (json_it != sample.members.end()) {
      const json value = json::parse(json_it->second, nullptr, false);
      if (value.is_discarded() || !value.is_object()) {
        out->problem(sample.key, source, "member .json is not a JSON object", false);
      } else {
        for (const auto& [name, field] : value.items())
          if (field.is_string()) record.fields[name] = field.get<std::string>();
      }
    }
    const auto txt_it = sample.members.find("txt");
    if (txt_it != sample.members.end()) {
      record.fields["txt"] = txt_it->second;
      record.fields["caption"] = txt_it->second;
    }
    if (json_it == sample.members.end() && txt_it == sample.members.end()) {
      out->problem(sample.key, source, "no .txt or .json member", true);
    } else {
      out->add(std::move(record));
    }
    sample = Sample{};
  };
  const auto is_text = [](const std::string& member_path) {
    std::string key, ext;
    return split_member_path(member_path, &key, &ext) && (ext == "txt" || ext == "json");
  };
  TarMember member;
  while (tar.next(&member, is_text)) {
    std::string key, ext;
    if (!split_member_path(member.path, &key, &ext)) continue;  // not part of a sample, as in WebDataset
    if (key.empty() || key.back() == '/') {
      flush();  // keeps problems in archive order
      if (is_text(member.path)) {
        out->problem("", fmt::format("{}:{}", path, member.path),
                     "member name has no key before its extension", true);
      }
      continue;
    }
    if (key != sample.key) flush();
    sample.key = key;
    if (!sample.members.emplace(ext, std::move(member.data)).second) {
      out->problem(key, fmt::format("{}:{}", path, member.path), "member repeated; the later copy is ignored",
                   false);
    }
  }
  flush();
}

// Where a TSV file keeps what the reader needs, from its header row.
struct TsvColumns {
  size_t count = 0;      // columns in the header
  std::vector<int> key;  // joined with '#'
  int text = -1;
  int order = -1;  // tsv_join: the rows' order within a key; -1: file order
  std::string field;
};

TsvColumns tsv_columns(const std::string& header_line, const std::string& path,
                       const CaptionSourceOptions& options) {
  const std::vector<std::string> header = split(header_line, '\t');
  const auto column = [&](const std::string& name, bool required) -> int {
    const auto it = std::find(header.begin(), header.end(), name);
    if (it == header.end()) {
      if (required)
        fail("{}: no column '{}' in the header (columns: {})", path, name, fmt::join(header, ", "));
      return -1;
    }
    // Two columns of one name: which one is meant cannot be known (it was silently the first).
    if (std::find(it + 1, header.end(), name) != header.end())
      fail("{}: the header names column '{}' twice", path, name);
    return static_cast<int>(it - header.begin());
  };
  TsvColumns c;
  c.count = header.size();
  for (const auto& name : options.tsv_key_columns) c.key.push_back(column(name, true));
  if (c.key.empty()) fail("{}: no key columns given", path);
  c.text = column(options.tsv_text_column, true);
  c.order = options.tsv_join ? column(options.tsv_order_column, false) : -1;
  c.field = options.tsv_field.empty() ? options.tsv_text_column : options.tsv_field;
  return c;
}

// With tsv_join: the rows of each key, grouped in order of the key's first
// appearance, then joined into one caption per key.
class TsvGroups {
 public:
  TsvGroups(const TsvColumns& columns, const CaptionSourceOptions& options)
      : columns_(columns), options_(options) {}

  void add(const std::string& key, const std::string& source, const std::vector<std::string>& cells,
           Collector* out) {
    auto [it, inserted] = group_of_.emplace(key, groups_.size());
    if (inserted) groups_.push_back(Group{key, source, {}});
    Group& group = groups_[it->second];
    int64_t order = static_cast<int64_t>(group.rows.size());
    if (columns_.order >= 0 && !parse_order(group, cells[columns_.order], key, source, &order, out)) return;
    const std::string& text = cells[columns_.text];
    size_t bad = 0;
    if (!utf8::is_valid(text, &bad)) {
      out->problem(key, source, fmt::format("caption is not valid UTF-8 (byte {}); row left out", bad),
                   false);
    } else if (blank_caption(text)) {
      out->problem(key, source, "empty caption (or only whitespace / invisible characters); row left out",
                   false);
    } else {
      group.rows.push_back(Row{order, std::string(trim(text))});
    }
  }

  void emit(Collector* out) {
    for (Group& group : groups_) {
      std::stable_sort(group.rows.begin(), group.rows.end(),
                       [](const Row& a, const Row& b) { return a.order < b.order; });
      std::string joined;
      for (const Row& row : group.rows) joined += (joined.empty() ? "" : " ") + row.text;
      // A group whose rows were all left out arrives empty and is dropped, with a problem.
      out->add(CaptionRecord{group.key, {{columns_.field, joined}}, group.source});
    }
  }

 private:
  struct Row {
    int64_t order;
    std::string text;
  };
  struct Group {
    std::string key, source;
    std::vector<Row> rows;
  };

  bool parse_order(const Group& group, const std::string& cell, const std::string& key,
                   const std::string& source, int64_t* order, Collector* out) const {
    char* end = nullptr;
    errno = 0;
    *order = std::strtoll(cell.c_str(), &end, 10);
    if (cell.empty() || *end != '\0' || errno != 0) {
      out->problem(key, source,
                   fmt::format("{} '{}' is not an integer; row left out", options_.tsv_order_column, cell),
                   false);
      return false;
    }
    const bool repeated =
        std::any_of(group.rows.begin(), group.rows.end(), [&](const Row& r) { return r.order == *order; });
    if (repeated) {
      out->problem(key, source,
                   fmt::format("duplicate {} {}; row left out", options_.tsv_order_column, *order), false);
      return false;
    }
    return true;
  }

  const TsvColumns& columns_;
  const CaptionSourceOptions& options_;
  std::vector<Group> groups_;
  std::unordered_map<std::string, size_t> group_of_;
};

void read_tsv(const std::string& path, const CaptionSourceOptions& options, Collector* out) {
  std::ifstream in = open_text_file(path);
  std::string line;
  if (!read_line(in, &line, true)) fail("{}: empty TSV file, expected a header row", path);
  const TsvColumns columns = tsv_columns(line, path, options);
  TsvGroups groups(columns, options);
  for (int64_t number = 2; read_line(in, &line); ++number) {
    if (line.empty()) continue;
    const std::string source = fmt::format("{}:{}", path, number);
    const std::vector<std::string> cells = split(line, '\t');
    if (cells.size() != columns.count) {
      out->problem("", source, fmt::format("{} columns, the header has {}", cells.size(), columns.count),
                   true);
      continue;
    }
    std::string key;
    for (size_t i = 0; i < columns.key.size(); ++i) key += (i > 0 ? "#" : "") + cells[columns.key[i]];
    if (trim(key).empty()) {
      out->problem("", source, "empty key", true);
    } else if (!options.tsv_join) {
      out->add(CaptionRecord{key, {{columns.field, cells[columns.text]}}, source});
    } else if (out->selected(key)) {  // another part's rows are not held
      groups.add(key, source, cells, out);
    }
  }
  groups.emit(out);
}

std::string detect_format(const std::string& path, const CaptionSourceOptions& options) {
  if (options.format != "auto") {
    if (options.format != "jsonl" && options.format != "tsv" && options.format != "tar") {
      fail("unknown caption format '{}' (use auto, jsonl, tsv or tar)", options.format);
    }
    return options.format;
  }
  const std::string name = lowercase(std::filesystem::path(path).filename().string());
  if (ends_with(name, ".jsonl") || ends_with(name, ".ndjson")) return "jsonl";
  if (ends_with(name, ".tsv")) return "tsv";
  if (ends_with(name, ".tar") || ends_with(name, ".tar.gz") || ends_with(name, ".tgz")) return "tar";
  fail("cannot tell the format of '{}' from its extension (.jsonl, .ndjson, .tsv, .tar, .tar.gz, .tgz)",
       path);
}

}  // namespace

int64_t CaptionInput::dropped_count() const {
  return std::count_if(problems.begin(), problems.end(), [](const InputProblem& p) { return p.dropped; });
}

std::vector<std::string> check_caption_inputs(const std::vector<std::string>& inputs,
                                              const CaptionSourceOptions& options) {
  std::vector<std::string> paths;
  for (const auto& input : inputs)
    for (auto& path : expand_braces(input)) paths.push_back(std::move(path));
  for (const auto& path : paths) {
    if (!std::filesystem::is_regular_file(path))
      fail("caption input '{}' does not exist or is not a file", path);
    detect_format(path, options);
  }
  return paths;
}

void stream_captions(const std::vector<std::string>& inputs, const CaptionSourceOptions& options,
                     const CaptionSink& sink) {
  // Fail before reading anything when an input is absent: a job should not
  // spend hours on the first shards and then stop.
  const std::vector<std::string> paths = check_caption_inputs(inputs, options);
  Collector collector(options, sink);
  try {
    for (const auto& path : paths) {
      const std::string format = detect_format(path, options);
      if (format == "jsonl") read_jsonl(path, options, &collector);
      if (format == "tsv") read_tsv(path, options, &collector);
      if (format == "tar") read_tar(path, &collector);
    }
  } catch (const StopStreaming&) {
    // the sink has what it wanted
  }
}

CaptionInput read_captions(const std::vector<std::string>& inputs, const CaptionSourceOptions& options) {
  CaptionInput input;
  CaptionSink sink;
  sink.record = [&](CaptionRecord&& r) { input.records.push_back(std::move(r)); };
  sink.problem = [&](InputProblem&& p) { input.problems.push_back(std::move(p)); };
  stream_captions(inputs, options, sink);
  return input;
}

void log_problem_examples(const std::vector<InputProblem>& problems, size_t count) {
  for (size_t i = 0; i < std::min(problems.size(), count); ++i) {
    const InputProblem& p = problems[i];
    spdlog::warn("input problem: key '{}' ({}): {}{}", p.key, p.source, p.reason,
                 p.dropped ? " (dropped)" : "");
  }
}

uint64_t key_hash(const std::string& key) {
  uint64_t hash = 0xcbf29ce484222325ull;
  for (unsigned char c : key) {
    hash ^= c;
    hash *= 0x100000001b3ull;
  }
  return hash;
}

std::vector<CaptionRecord> part_records(const std::vector<CaptionRecord>& records,
                                        const PartSelection& part) {
  part.validate("part_records");
  std::vector<CaptionRecord> out;
  for (const auto& record : records) {
    if (in_part(record.key, part)) out.push_back(record);
  }
  return out;
}

bool in_part(const std::string& key, const PartSelection& part) {
  return key_hash(key) % static_cast<uint64_t>(part.count) == static_cast<uint64_t>(part.index);
}

}  // namespace flame::data
