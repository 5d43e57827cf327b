#include "eval/evaluate.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <sstream>

#include "data/caption_source.h"
#include "eval/clip_benchmark_source.h"
#include "eval/clip_benchmark_tasks.h"
#include "eval/eval_models.h"
#include "eval/linear_probe.h"
#include "eval/long_caption_sets.h"
#include "eval/metrics.h"
#include "eval/multilingual_compositional.h"
#include "eval/task_common.h"
#include "llm/load_llm.h"
#include "train/checkpoint.h"
#include "util/config_files.h"
#include "util/error.h"
#include "util/file.h"
#include "util/hash.h"
#include "util/strings.h"

namespace flame::eval {

namespace fs = std::filesystem;

namespace {

// The task's string field, {data} and {configs} expanded.
std::string field(const nlohmann::json& task, const char* name, const std::string& data_root) {
  return task_field(task, name, data_root);
}

nlohmann::json run_retrieval(EvalModels& m, const nlohmann::json& task, const std::string& data_root,
                             int64_t limit) {
  const std::string name = task.at("name");
  const std::string mode = task.value("mode", "short");
  if (mode != "short" && mode != "long") fail("task '{}': mode must be short or long, not '{}'", name, mode);
  const bool join = task.value("join_captions", false);
  data::CaptionSourceOptions o;
  o.format = "tsv";
  o.tsv_text_column = field(task, "text_column", data_root);
  o.tsv_join = join;
  const std::string index_column = task.value("caption_index_column", "");
  o.tsv_key_columns = {"image"};
  if (!join && !index_column.empty()) o.tsv_key_columns.push_back(index_column);
  if (join) o.tsv_order_column = index_column;
  const data::CaptionInput input = data::read_captions({field(task, "captions", data_root)}, o);
  // Rows the reader left out (invalid UTF-8, empty caption, ...) are counted and named, never fatal.
  Skipped skipped;
  for (const auto& p : input.problems)
    if (p.dropped) skipped.add(p.reason, p.key.empty() ? p.source : p.key + " (" + p.source + ")");

  // Images of the split, in its order, that have captions; the captions of each.
  std::map<std::string, std::vector<std::string>> captions_of;
  for (const auto& r : input.records) {
    const std::string image = r.key.substr(0, r.key.find('#'));
    captions_of[image].push_back(r.fields.begin()->second);
  }
  std::vector<std::string> images;
  for (const auto& image : read_lines(field(task, "split", data_root))) {
    if (captions_of.count(image)) images.push_back(image);
    if (limit > 0 && static_cast<int64_t>(images.size()) == limit) break;
  }
  if (images.empty()) fail("task '{}': no image of the split has a caption", name);
  std::vector<fs::path> files;
  std::vector<std::string> texts;
  std::vector<int64_t> text_image;
  const fs::path image_dir = field(task, "image_dir", data_root);
  for (size_t i = 0; i < images.size(); ++i) {
    files.push_back(image_dir / images[i]);
    for (const auto& c : captions_of[images[i]]) {
      texts.push_back(c);
      text_image.push_back(static_cast<int64_t>(i));
    }
  }
  const torch::Tensor image = m.image_features(file_inputs(files), name);
  spdlog::info("{}: embedding {} captions ({})", name, texts.size(),
               m.is_clip()      ? "CLIP text tower"
               : mode == "long" ? "long prompts"
                                : "raw prompts");
  int64_t truncated = 0;
  const std::string role = mode == "long" ? "long" : "raw";
  const FacetPooling pooling = facet_pooling(task);
  const torch::Tensor text =
      m.text_features(texts, role, &truncated, pooling == FacetPooling::kMeanCosine);  // [T, K, D]
  const torch::Tensor similarity = facet_similarity(image, pool_facets(text, pooling));
  const RetrievalRecall recall = retrieval_recall(similarity, text_image);
  nlohmann::json out = {{"name", name},
                        {"type", "retrieval"},
                        {"mode", mode},
                        {"images", images.size()},
                        {"texts", texts.size()},
                        {"facets", text.size(1)},
                        {"facet_pooling", to_string(pooling)}};
  if (m.is_clip()) out["truncated_texts"] = truncated;
  if (!m.is_clip()) out["text_encoding"] = m.text_encoding(role);
  out.update(recall_json(recall));
  out["skipped"] = skipped.json();
  return out;
}

// A classification task's classes: the folder under "root" that holds each
// class's images, and the name its text prompts use. The "classes" file is
// either one name per line (folders named by class, as CIFAR-10 here),
// "FOLDER<TAB>name" lines (ImageNet: n01440764<TAB>tench), or CLIP_benchmark's
// `<lang>_classnames.json` (the list of "dataset_key", default imagenet1k).
// With "folders": "sorted", name i is the i-th folder's in sorted order
// (torchvision's ImageFolder numbering, which OpenAI's ImageNet class names and
// CLIP_benchmark's follow). Several files can name one folder tree in several
// languages.
struct ClassList {
  std::vector<std::string> folders, names;
};

// The dataset whose lists CLIP_benchmark's JSON class-name and template files give.
std::string dataset_key(const nlohmann::json& task) {
  return task.value("dataset_key", "imagenet1k");
}

ClassList read_classes(const nlohmann::json& task, const std::string& data_root) {
  const std::string file = field(task, "classes", data_root);
  ClassList c;
  const bool tabbed = fs::path(file).extension() != ".json";
  for (const std::string& line : read_name_list(file, dataset_key(task))) {
    const size_t tab = tabbed ? line.find('\t') : std::string::npos;
    c.folders.push_back(tab == std::string::npos ? line : line.substr(0, tab));
    c.names.push_back(tab == std::string::npos ? line : line.substr(tab + 1));
  }
  if (c.names.empty()) fail("task '{}': no classes in {}", task.at("name").get<std::string>(), file);
  const fs::path root = field(task, "root", data_root);
  if (task.value("folders", std::string("named")) == "sorted" && fs::is_directory(root)) {
    std::vector<std::string> folders;
    for (const auto& e : fs::directory_iterator(root))
      if (e.is_directory()) folders.push_back(e.path().filename().string());
    std::sort(folders.begin(), folders.end());
    if (folders.size() != c.names.size()) {
      fail("task '{}': {} names {} classes but {} holds {} class folders", task.at("name").get<std::string>(),
           file, c.names.size(), root.string(), folders.size());
    }
    c.folders = folders;
  }
  return c;
}

// ROOT/<folder>/* for each class, at most quotas[c] of class c (0: all; see class_quotas).
void list_class_images(const nlohmann::json& task, const fs::path& root, const ClassList& classes,
                       const std::vector<int64_t>& quotas, int64_t limit, std::vector<fs::path>* files,
                       std::vector<int64_t>* labels) {
  if (!fs::is_directory(root)) {
    fail("task '{}': no folder {}{}", task.at("name").get<std::string>(), root.string(),
         task.contains("source") ? "; " + task.at("source").get<std::string>() : std::string());
  }
  for (size_t c = 0; c < classes.folders.size(); ++c) {
    const fs::path dir = root / classes.folders[c];
    if (!fs::is_directory(dir)) fail("no folder {} for class '{}'", dir.string(), classes.names[c]);
    if (limit > 0 && quotas[c] == 0) continue;  // --limit below the class count
    std::vector<fs::path> found;
    for (const auto& e : fs::directory_iterator(dir)) {
      if (e.is_regular_file()) found.push_back(e.path());
    }
    std::sort(found.begin(), found.end());
    if (limit > 0 && static_cast<int64_t>(found.size()) > quotas[c]) found.resize(quotas[c]);
    for (const auto& f : found) {
      files->push_back(f);
      labels->push_back(static_cast<int64_t>(c));
    }
  }
}

nlohmann::json run_zero_shot(EvalModels& m, const nlohmann::json& task, const std::string& data_root,
                             int64_t limit) {
  const std::string name = task.at("name");
  const ClassList classes = read_classes(task, data_root);
  const std::vector<std::string> templates =
      read_name_list(field(task, "templates", data_root), dataset_key(task), "imagenet1k");
  for (const auto& t : templates) fill_template(t, "");  // a bad template fails before the images are encoded
  std::vector<fs::path> files;
  std::vector<int64_t> labels;
  const auto C = static_cast<int64_t>(classes.names.size()), T = static_cast<int64_t>(templates.size());
  list_class_images(task, field(task, "root", data_root), classes, class_quotas(limit, C), limit, &files,
                    &labels);
  if (files.empty()) fail("task '{}': no image in the class folders", name);
  const torch::Tensor image = m.image_features(file_inputs(files), name);
  const torch::Tensor class_vectors = zero_shot_classifier(m, classes.names, templates);
  const ClassificationAccuracy acc = classification_accuracy(image.matmul(class_vectors.t()), labels);
  nlohmann::json per_class = nlohmann::json::object();
  for (size_t c = 0; c < classes.names.size(); ++c) per_class[classes.names[c]] = acc.per_class_top1[c];
  nlohmann::json out = {
      {"name", name},   {"type", "zero-shot"}, {"images", files.size()}, {"classes", C},
      {"templates", T}, {"top1", acc.top1},    {"top5", acc.top5},       {"per_class_top1", per_class}};
  if (!m.is_clip()) out["text_encoding"] = m.text_encoding("raw");  // zero_shot_classifier's set
  return out;
}

nlohmann::json run_linear_probe(EvalModels& m, const nlohmann::json& task, const std::string& data_root,
                                int64_t limit) {
  const std::string name = task.at("name");
  const ClassList classes = read_classes(task, data_root);
  std::vector<fs::path> files;
  std::vector<int64_t> labels;
  const auto C = static_cast<int64_t>(classes.names.size());
  list_class_images(task, field(task, "root", data_root), classes, class_quotas(limit, C), limit, &files,
                    &labels);
  // Split by index within each class: 3/5 train, 1/5 validation, 1/5 test.
  // When that leaves a part empty (classes of fewer than 5 images: a small
  // --limit), the k-th image of all goes to val, test, train, train, train, ...
  std::vector<int64_t> split[3];
  const auto empty_part = [&split] { return split[0].empty() || split[1].empty() || split[2].empty(); };
  for (const bool by_class : {true, false}) {
    for (auto& part : split) part.clear();
    std::map<int64_t, int64_t> seen;
    for (size_t i = 0; i < files.size(); ++i) {
      const int64_t r = by_class ? seen[labels[i]]++ % 5 : static_cast<int64_t>(i + 3) % 5;
      split[r < 3 ? 0 : r == 3 ? 1 : 2].push_back(static_cast<int64_t>(i));
    }
    if (!empty_part()) break;
  }
  if (empty_part())
    fail(
        "task '{}': {} images of {} classes leave the probe's train, validation or test part empty (each "
        "class is split 3/5 train, 1/5 val, 1/5 test){}",
        name, files.size(), C, limit > 0 ? fmt::format("; --limit {} is too small", limit) : "");
  const torch::Tensor features = m.image_features(file_inputs(files), name);
  const torch::Tensor y = torch::tensor(labels, torch::kInt64);
  auto rows = [&](int s) { return torch::tensor(split[s], torch::kInt64); };
  const LinearProbeResult r = linear_probe(features.index_select(0, rows(0)), y.index_select(0, rows(0)),
                                           features.index_select(0, rows(1)), y.index_select(0, rows(1)),
                                           features.index_select(0, rows(2)), y.index_select(0, rows(2)), {});
  return {{"name", name},           {"type", "linear-probe"},
          {"images", files.size()}, {"train", split[0].size()},
          {"val", split[1].size()}, {"test", split[2].size()},
          {"best_l2", r.best_l2},   {"val_top1", r.val_top1},
          {"top1", r.test_top1}};
}

std::string default_data_root() {
  return (shared_dir() / "data").string();
}

// The tasks of a "clip-benchmark:ROOT" benchmark: one per --task kind (none:
// the dataset's own, from its dataset_type.txt), named after the folder.
std::vector<nlohmann::json> clip_benchmark_spec_tasks(const std::string& root,
                                                      const std::vector<std::string>& kinds) {
  const fs::path normal = fs::path(root).lexically_normal();
  const std::string name =
      normal.has_filename() ? normal.filename().string() : normal.parent_path().filename().string();
  if (kinds.empty()) return {{{"name", name}, {"type", "clip-benchmark"}, {"root", root}}};
  std::vector<nlohmann::json> tasks;
  for (const auto& kind : kinds)
    tasks.push_back(
        {{"name", name + "/" + kind}, {"type", "clip-benchmark"}, {"root", root}, {"task", kind}});
  return tasks;
}

// The tasks of every --benchmark (files, presets or clip-benchmark:ROOT), those
// named by --tasks when given; the files' paper-table layouts go to `layouts`.
std::vector<nlohmann::json> collect_tasks(const EvalOptions& o, nlohmann::json* layouts) {
  std::vector<nlohmann::json> all;
  bool any_clip_benchmark = false;
  for (const auto& b : o.benchmarks) {
    if (starts_with(b, kClipBenchmarkPrefix)) {
      any_clip_benchmark = true;
      for (auto& t : clip_benchmark_spec_tasks(b.substr(std::string(kClipBenchmarkPrefix).size()),
                                               o.clip_benchmark_tasks))
        all.push_back(std::move(t));
      continue;
    }
    const fs::path path = find_preset(b, {config_dir("benchmarks"), "benchmark", "benchmark"});
    const nlohmann::json bench = read_json_file(path);
    if (!bench.contains("tasks") || !bench["tasks"].is_array()) fail("{}: no 'tasks' array", path.string());
    for (size_t i = 0; i < bench["tasks"].size(); ++i) {
      const nlohmann::json& t = bench["tasks"][i];
      if (!t.is_object() || !t.contains("name") || !t.contains("type") || !t["name"].is_string() ||
          !t["type"].is_string())
        fail("{}: every task needs 'name' and 'type' (strings); task {} has not", path.string(), i + 1);
      all.push_back(t);
    }
    if (bench.contains("layout")) layouts->push_back(bench["layout"]);
  }
  if (!o.clip_benchmark_tasks.empty() && !any_clip_benchmark)
    fail(
        "--task applies to --benchmark {}ROOT (CLIP_benchmark datasets); to pick tasks of benchmark files "
        "use --tasks",
        kClipBenchmarkPrefix);
  std::set<std::string> names;
  std::vector<nlohmann::json> tasks;
  for (const auto& t : all) {
    names.insert(t["name"].get<std::string>());
    if (o.tasks.empty() || std::count(o.tasks.begin(), o.tasks.end(), t["name"].get<std::string>()))
      tasks.push_back(t);
  }
  for (const auto& wanted : o.tasks) {
    if (!names.count(wanted)) fail("no task '{}' in the benchmarks given", wanted);
  }
  return tasks;
}

bool task_needs_text(const nlohmann::json& t) {
  if (t["type"] == "linear-probe") return false;
  if (t["type"] == "clip-benchmark") return clip_benchmark_needs_text(t);
  return true;
}

nlohmann::json run_task_of_type(EvalModels& models, const nlohmann::json& t, const std::string& data_root,
                                int64_t limit) {
  const std::string type = t["type"];
  if (type == "retrieval") return run_retrieval(models, t, data_root, limit);
  if (type == "zero-shot") return run_zero_shot(models, t, data_root, limit);
  if (type == "linear-probe") return run_linear_probe(models, t, data_root, limit);
  if (type == "clip-benchmark") return run_clip_benchmark(models, t, data_root, limit);
  if (type == "long-caption-retrieval") return run_long_caption_retrieval(models, t, data_root, limit);
  if (type == "crossmodal3600") return run_crossmodal3600(models, t, data_root, limit);
  if (type == "sugarcrepe") return run_sugarcrepe(models, t, data_root, limit);
  fail(
      "task '{}': unknown type '{}' (retrieval, zero-shot, linear-probe, clip-benchmark, "
      "long-caption-retrieval, crossmodal3600, sugarcrepe)",
      t["name"].get<std::string>(), type);
}

// A field of the wrong JSON type in the benchmark file or a data file a
// reader did not check becomes an error naming the task, not "internal error".
nlohmann::json run_task(EvalModels& models, const nlohmann::json& t, const std::string& data_root,
                        int64_t limit) {
  // The fields every reader takes as text: one of another type is named here,
  // before a reader's nlohmann type error could only name the task.
  for (const char* field :
       {"annotations", "caption_index_column", "dataset_key", "facet_pooling", "features", "folders",
        "format", "mode", "probe", "root", "source", "split", "title", "train_split", "type"}) {
    if (t.contains(field) && !t[field].is_string())
      fail("task '{}': field '{}' must be a string, not {}", t["name"].get<std::string>(), field,
           t[field].dump());
  }
  try {
    return run_task_of_type(models, t, data_root, limit);
  } catch (const nlohmann::json::exception& e) {
    fail("task '{}': a field of its benchmark entry or data files has the wrong form: {}",
         t["name"].get<std::string>(), e.what());
  }
}

// Where a task's data is published: its "source", else its kind's.
std::string published_at(const nlohmann::json& t, const std::string& data_root) {
  if (t.contains("source") && t["source"].is_string())
    return expand_placeholders(t["source"].get<std::string>(), data_root);
  const std::string type = t["type"];
  const std::string root = t.value("root", "");
  if (type == "clip-benchmark") return clip_benchmark_published(expand_placeholders(root, data_root));
  if (type == "long-caption-retrieval") return long_caption_published(t.value("format", ""));
  if (type == "crossmodal3600") return kCrossmodalSource;
  if (type == "sugarcrepe") return kSugarCrepeSource;
  return "";
}

// One line for each task a file or folder of whose is missing, checked for all
// tasks before any model is loaded or task run: a paper table with one of its
// eleven datasets absent stops at once, not after hours on the others.
// Deeper files (a split, a caption file inside the root) are the readers' to
// name when they reach them.
std::vector<std::string> missing_data(const std::vector<nlohmann::json>& tasks,
                                      const std::string& data_root) {
  std::vector<std::string> lines;
  for (const auto& t : tasks) {
    for (const char* f : {"root", "image_dir", "captions", "split", "classes", "templates"}) {
      if (!t.contains(f) || !t[f].is_string()) continue;
      const fs::path path = expand_placeholders(t[f].get<std::string>(), data_root);
      if (fs::exists(path)) continue;
      const std::string where = published_at(t, data_root);
      lines.push_back(fmt::format("task '{}': no {} (its {}){}", t["name"].get<std::string>(), path.string(),
                                  f, where.empty() ? "" : "; published at " + where));
      break;  // one line a task
    }
  }
  return lines;
}

// The settings a task's results depend on: with equal ones, an earlier run's
// results for an equal task stand for this run's (--resume). The checkpoint
// is compared by content (checkpoint_identity), not by path.
nlohmann::json result_settings(const nlohmann::json& config) {
  nlohmann::json s;
  for (const char* k : {"llm", "data_root", "limit", "dtype", "allow_llm_mismatch"})
    s[k] = config.value(k, nlohmann::json());
  return s;
}

// --resume: the finished task results of the earlier run at --out, after its
// settings were checked against this run's (another checkpoint content, LLM,
// data or limit is refused, naming the setting: its results would not be
// this run's). A file from before checkpoints were identified by content is
// not trusted: nothing is kept.
std::vector<nlohmann::json> resumable_results(const EvalOptions& o, const nlohmann::json& config) {
  if (!o.resume || o.out.empty() || !fs::exists(o.out)) return {};
  const EarlierResults earlier = read_results_for_resume(o.out);
  const nlohmann::json before = result_settings(earlier.config), now = result_settings(config);
  for (const auto& [key, value] : now.items()) {
    if (before[key] != value)
      fail("--resume: {} was made with {} {}, this run has {}; give another --out", o.out, key,
           before[key].dump(), value.dump());
  }
  const nlohmann::json identity = earlier.config.value("checkpoint_identity", nlohmann::json());
  if (identity.is_null()) {
    spdlog::warn(
        "--resume: {} does not record which checkpoint content it evaluated (an older flame): its {} "
        "results are not trusted, every task is run again",
        o.out, earlier.tasks.size());
    return {};
  }
  if (identity != config["checkpoint_identity"])
    fail(
        "--resume: {} holds results of another checkpoint: its content (checkpoint_identity {}) differs "
        "from {}'s ({}), e.g. retrained at the same path; give another --out, or drop --resume to "
        "replace the results",
        o.out, identity.dump(), config["checkpoint"].get<std::string>(),
        config["checkpoint_identity"].dump());
  return earlier.tasks;
}

// The results file, indented; a name from the data that is not UTF-8 is
// written with U+FFFD rather than failing the write. Throws naming the file.
void write_results(const std::string& out, const nlohmann::json& results) {
  write_file_atomic(out, results.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
}

}  // namespace

nlohmann::json checkpoint_content_identity(const fs::path& checkpoint) {
  nlohmann::json id = nlohmann::json::object();
  for (const auto& [key, file] :
       {std::pair{"config_sha256", "config.json"}, {"weights_sha256", "model.safetensors"}})
    if (fs::is_regular_file(checkpoint / file)) id[key] = sha256_file_hex(checkpoint / file);
  if (id.empty())
    fail("{}: no config.json or model.safetensors to identify the checkpoint by", checkpoint.string());
  return id;
}

namespace {

// The earlier results --resume keeps: done[i] for this run's task i, and the
// finished results of tasks this run does not ask for (kept in the file).
struct KeptResults {
  std::vector<const nlohmann::json*> done;
  std::vector<nlohmann::json> others;
};

KeptResults match_earlier(const std::vector<nlohmann::json>& tasks,
                          const std::vector<nlohmann::json>& earlier) {
  KeptResults k{std::vector<const nlohmann::json*>(tasks.size(), nullptr), {}};
  std::vector<bool> used(earlier.size(), false);
  for (size_t i = 0; i < tasks.size(); ++i)
    for (size_t j = 0; j < earlier.size() && !k.done[i]; ++j)
      if (earlier[j]["task"] == tasks[i]) k.done[i] = &earlier[j], used[j] = true;
  for (size_t j = 0; j < earlier.size(); ++j) {
    const bool twice = std::any_of(k.others.begin(), k.others.end(),
                                   [&](const nlohmann::json& o) { return o["task"] == earlier[j]["task"]; });
    // A task of this run's name whose definition changed: its new result replaces the old one.
    const bool replaced = std::any_of(
        tasks.begin(), tasks.end(), [&](const nlohmann::json& t) { return t["name"] == earlier[j]["name"]; });
    if (used[j] || twice || replaced) continue;
    spdlog::info("task '{}': not asked for this time; its earlier result stays in the results file",
                 earlier[j]["name"].get<std::string>());
    k.others.push_back(earlier[j]);
  }
  return k;
}

// The options checked before any work, and --out locked for the whole run:
// a second eval with this --out fails now, not after its work.
std::unique_ptr<DirectoryLock> check_options_and_lock_out(const EvalOptions& o) {
  if (o.model.empty()) fail("flame eval needs --model");
  if (o.batch_size <= 0) fail("flame eval: --batch-size must be positive, not {}", o.batch_size);
  if (o.limit < 0) fail("flame eval: --limit must not be negative (0: all), not {}", o.limit);
  if (o.benchmarks.empty()) fail("flame eval needs at least one --benchmark");
  if (o.resume && o.out.empty()) fail("flame eval: --resume needs --out (the results file to resume)");
  llm::parse_device(o.device);  // a mistyped device is named before any path is looked at
  if (o.out.empty()) return nullptr;
  check_output_file(o.out, "--out");
  const fs::path out(o.out);
  return std::make_unique<DirectoryLock>(
      out.has_parent_path() ? out.parent_path() : fs::path("."),
      "the results file " + out.filename().string() + " (flame eval --out)",
      "." + out.filename().string() + ".lock");
}

// The "config" of a results file: what was asked, and the checkpoint evaluated
// (by path and by content, which --resume compares).
nlohmann::json results_config(const EvalOptions& o, const std::string& checkpoint,
                              const std::string& data_root) {
  nlohmann::json config = {{"model", o.model},
                           {"checkpoint", checkpoint},
                           {"checkpoint_identity", checkpoint_content_identity(checkpoint)},
                           {"llm", o.llm},
                           {"benchmarks", o.benchmarks},
                           {"tasks", o.tasks},
                           {"data_root", data_root},
                           {"limit", o.limit},
                           {"dtype", o.dtype},
                           {"device", o.device},
                           {"allow_llm_mismatch", o.allow_llm_mismatch}};
  if (!o.clip_benchmark_tasks.empty()) config["task"] = o.clip_benchmark_tasks;
  return config;
}

nlohmann::json evaluate(const EvalOptions& o) {
  const std::unique_ptr<DirectoryLock> lock =
      check_options_and_lock_out(o);  // a mistyped device is named before any path is looked at
  const std::string data_root = o.data_root.empty() ? default_data_root() : o.data_root;
  nlohmann::json layouts = nlohmann::json::array();
  const std::vector<nlohmann::json> tasks = collect_tasks(o, &layouts);
  const std::vector<std::string> missing = missing_data(tasks, data_root);
  if (missing.size() == 1) fail("{}", missing[0]);
  if (!missing.empty())
    fail("{} of the {} tasks lack their data (nothing was run):\n  {}", missing.size(), tasks.size(),
         fmt::join(missing, "\n  "));
  // The checkpoint evaluated is the one recorded, even if the run saves a newer one meanwhile.
  const std::string checkpoint = fs::absolute(train::resolve_checkpoint(o.model)).string();
  EvalOptions pinned = o;
  pinned.model = checkpoint;
  nlohmann::json results = {{"config", results_config(o, checkpoint, data_root)},
                            {"tasks", nlohmann::json::array()},
                            {"complete", false}};
  if (!layouts.empty()) results["layouts"] = layouts;
  const std::vector<nlohmann::json> earlier = resumable_results(o, results["config"]);
  const KeptResults kept = match_earlier(tasks, earlier);
  // This run's results, then those of earlier tasks not asked for this time.
  const auto with_kept = [&kept](nlohmann::json r) {
    for (const auto& other : kept.others) r["tasks"].push_back(other);
    return r;
  };
  bool needs_text = false;
  for (size_t i = 0; i < tasks.size(); ++i)
    needs_text = needs_text || (!kept.done[i] && task_needs_text(tasks[i]));
  std::unique_ptr<EvalModels> models;
  for (size_t i = 0; i < tasks.size(); ++i) {
    if (kept.done[i]) {
      spdlog::info("task '{}': results kept from {} (--resume)", tasks[i]["name"].get<std::string>(), o.out);
      results["tasks"].push_back(*kept.done[i]);
      continue;
    }
    if (!models) models = std::make_unique<EvalModels>(pinned, needs_text);
    nlohmann::json r = run_task(*models, tasks[i], data_root, o.limit);
    r["task"] = tasks[i];
    results["tasks"].push_back(r);
    // After each task: an interrupted or failing evaluation keeps what it
    // finished. A failed write (full disk) does not stop the work: the final
    // write below tries again, after the results were shown.
    if (o.out.empty()) continue;
    try {
      write_results(o.out, with_kept(results));
    } catch (const Error& e) {
      spdlog::warn("could not write the results so far to {}: {} (tried again at the end)", o.out, e.what());
    }
  }
  results["warnings"] = models ? nlohmann::json(models->warnings()) : nlohmann::json::array();
  results["complete"] = true;
  results = with_kept(results);
  if (o.before_final_write) o.before_final_write(results);
  if (o.out.empty()) return results;
  try {
    write_results(o.out, results);
  } catch (const Error& e) {
    fail("the results were not written to {}: {}", o.out, e.what());
  }
  return results;
}

}  // namespace

nlohmann::json run_evaluation(const EvalOptions& o) {
  try {
    return evaluate(o);
  } catch (const nlohmann::json::exception& e) {  // a malformed file no reader named
    fail("flame eval: a benchmark, results or data file has a field of the wrong form: {}", e.what());
  }
}

}  // namespace flame::eval
