#include "eval/clip_benchmark_source.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <unordered_map>

#include "data/brace_expand.h"
#include "data/tar_reader.h"
#include "util/error.h"
#include "util/file.h"
#include "util/strings.h"

namespace flame::eval {

namespace fs = std::filesystem;

namespace {

constexpr const char* kPublished =
    "CLIP_benchmark's WebDataset exports are published at https://huggingface.co/clip-benchmark "
    "(wds_<dataset>), or made with clip_benchmark_export_wds";

std::string dataset_name(const fs::path& root) {
  const fs::path normal = root.lexically_normal();
  return normal.has_filename() ? normal.filename().string() : normal.parent_path().filename().string();
}

[[noreturn]] void fail_missing(const fs::path& expected, const fs::path& root) {
  fail(
      "no CLIP_benchmark dataset at {}: expected {} (and classnames.txt, "
      "zeroshot_classification_templates.txt for classification); {}",
      root.string(), expected.string(), kPublished);
}

// The split's shards as one ImageSource pattern: "{0..N-1}.tar" from
// nshards.txt, as CLIP_benchmark reads them, else every *.tar, sorted.
std::string shard_pattern(const fs::path& dir, const fs::path& root) {
  if (!fs::is_directory(dir)) fail_missing(dir / "nshards.txt", root);
  if (fs::exists(dir / "nshards.txt")) {
    const std::string text(trim(read_file(dir / "nshards.txt")));
    int64_t n = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
    if (ec != std::errc() || end != text.data() + text.size() || n <= 0)
      fail("{}: expected a positive shard count, found '{}'", (dir / "nshards.txt").string(), text);
    return (dir / fmt::format("{{0..{}}}.tar", n - 1)).string();
  }
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && e.path().extension() == ".tar") names.push_back(e.path().filename().string());
  if (names.empty()) fail_missing(dir / "nshards.txt", root);
  std::sort(names.begin(), names.end());
  for (const auto& n : names) {
    if (n.find_first_of("{},") != std::string::npos)
      fail("{}: shard name '{}' has a brace or comma; add nshards.txt", dir.string(), n);
  }
  if (names.size() == 1) return (dir / names[0]).string();
  std::string list;
  for (const auto& n : names) list += (list.empty() ? "" : ",") + n;
  return (dir / ("{" + list + "}")).string();
}

// The .cls and .txt members of every shard, by key (images are left unread).
struct SampleText {
  std::string cls, txt, shard;
  bool has_cls = false, has_txt = false;
};

std::unordered_map<std::string, SampleText> read_sample_texts(const std::vector<std::string>& shards) {
  std::unordered_map<std::string, SampleText> texts;
  for (const auto& shard : shards) {
    data::TarReader reader(shard);
    data::TarMember member;
    const auto wanted = [](const std::string& path) {
      std::string key, ext;
      return data::split_member_path(path, &key, &ext) && (ext == "cls" || ext == "txt");
    };
    while (reader.next(&member, wanted)) {
      std::string key, ext;
      if (!data::split_member_path(member.path, &key, &ext) || (ext != "cls" && ext != "txt")) continue;
      SampleText& t = texts[key];
      t.shard = shard;
      (ext == "cls" ? t.cls : t.txt) = member.data;
      (ext == "cls" ? t.has_cls : t.has_txt) = true;
    }
  }
  return texts;
}

// The class index of a .cls member, or a reason it is not one.
bool parse_label(const std::string& text, int64_t classes, int64_t* label, std::string* why) {
  const std::string_view t = trim(text);
  const auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), *label);
  if (t.empty() || ec != std::errc() || end != t.data() + t.size()) {
    *why = fmt::format("bad label '{}' in .cls", std::string(t.substr(0, 40)));
    return false;
  }
  if (classes > 0 && (*label < 0 || *label >= classes)) {
    *why = fmt::format("label {} outside the {} classes", *label, classes);
    return false;
  }
  return true;
}

std::vector<std::string> caption_lines(const std::string& text) {
  std::vector<std::string> lines;
  for (const auto& line : split(text, '\n'))
    if (!trim(line).empty()) lines.emplace_back(trim(line));
  return lines;
}

}  // namespace

std::string clip_benchmark_published(const fs::path& root) {
  const std::string name = dataset_name(root);
  if (starts_with(name, "wds_")) return "https://huggingface.co/datasets/clip-benchmark/" + name;
  return "https://huggingface.co/clip-benchmark (wds_<dataset>), or made with clip_benchmark_export_wds";
}

ClipBenchmarkInfo open_clip_benchmark(const fs::path& root) {
  if (!fs::is_directory(root / "test")) fail_missing(root / "test" / "nshards.txt", root);
  ClipBenchmarkInfo info;
  info.root = root;
  info.name = dataset_name(root);
  info.type = "classification";
  if (fs::exists(root / "dataset_type.txt"))
    info.type = lowercase(std::string(trim(read_file(root / "dataset_type.txt"))));
  if (info.type == "multilabel")
    fail("{}: multi-label datasets (KEY.npy labels) are not supported", root.string());
  if (info.type != "classification" && info.type != "retrieval")
    fail("{}: unknown dataset type '{}' (classification, retrieval)", (root / "dataset_type.txt").string(),
         info.type);
  // Lines as CLIP_benchmark takes them: stripped, blank ones dropped here too.
  for (const auto& [file, list] : {std::pair{"classnames.txt", &info.classnames},
                                   {"zeroshot_classification_templates.txt", &info.templates}}) {
    if (!fs::exists(root / file)) continue;
    *list = read_lines(root / file);
    check_utf8_lines(*list, root / file);
    // An empty file is told apart from a missing one when a task needs it.
    if (list->empty()) info.empty_files.push_back(file);
  }
  return info;
}

std::vector<ImageInput> ClipBenchmarkSplit::image_inputs() const {
  std::vector<ImageInput> inputs;
  inputs.reserve(samples.size());
  for (const auto& s : samples) {
    const data::ImageSource* source = &images;  // the split outlives the inputs
    const int64_t record = s.record;
    inputs.push_back({images.location(record), [source, record] { return source->read_bytes(record); }});
  }
  return inputs;
}

ClipBenchmarkSplit read_clip_benchmark_split(const ClipBenchmarkInfo& info, const std::string& split,
                                             bool labels) {
  const std::string pattern = shard_pattern(info.root / split, info.root);
  ClipBenchmarkSplit out;
  out.images = data::ImageSource::open(pattern);
  std::unordered_map<std::string, SampleText> texts = read_sample_texts(data::expand_braces(pattern));
  const auto classes = static_cast<int64_t>(info.classnames.size());
  for (int64_t r = 0; r < out.images.size(); ++r) {
    const std::string& key = out.images.record(r).key;
    const auto found = texts.find(key);
    const SampleText* t = found == texts.end() ? nullptr : &found->second;
    ClipBenchmarkSample sample{key, r, -1, {}};
    std::string why;
    if (labels && (t == nullptr || !t->has_cls)) {
      out.skipped.add("missing .cls", out.images.location(r));
    } else if (labels && !parse_label(t->cls, classes, &sample.label, &why)) {
      out.skipped.add(why, out.images.location(r));
    } else if (!labels && (t == nullptr || !t->has_txt)) {
      out.skipped.add("missing .txt", out.images.location(r));
    } else if (!labels && !(why = caption_defect(t->txt)).empty() && why != "empty caption") {
      out.skipped.add(why + " in .txt", out.images.location(r));  // a bad line spoils the sample
    } else if (!labels && (sample.captions = caption_lines(t->txt)).empty()) {
      out.skipped.add("no caption in .txt", out.images.location(r));
    } else {
      out.samples.push_back(std::move(sample));
    }
    if (t != nullptr) texts.erase(found);
  }
  // Labels or captions whose image member is missing (or in a format not read).
  std::vector<std::string> orphans;
  for (const auto& [key, t] : texts)
    if (labels ? t.has_cls : t.has_txt) orphans.push_back(t.shard + ":" + key);
  std::sort(orphans.begin(), orphans.end());
  for (const auto& o : orphans) out.skipped.add("no image member", o);
  if (out.samples.empty())
    fail("{}: no usable sample in {} ({} skipped)", info.root.string(), pattern, out.skipped.total());
  spdlog::info("{} {}: {} samples, {} skipped", info.name, split, out.samples.size(), out.skipped.total());
  return out;
}

}  // namespace flame::eval
