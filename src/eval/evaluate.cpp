#include "eval/evaluate.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <future>
#include <set>
#include <sstream>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "data/caption_source.h"
#include "data/image_decode.h"
#include "data/image_transform.h"
#include "eval/linear_probe.h"
#include "eval/metrics.h"
#include "llm/load_llm.h"
#include "text/clip_tokenize.h"
#include "text/fda_encoder.h"
#include "text/prompts.h"
#include "train/checkpoint.h"
#include "train/text_provenance.h"
#include "util/config_files.h"
#include "util/error.h"
#include "util/file.h"
#include "util/progress.h"
#include "util/strings.h"

namespace flame::eval {

namespace fs = std::filesystem;

namespace {

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

// The trained image encoder and its text side: the frozen LLM through the FDA
// encoder (FLAME), or the checkpoint's own text tower (the CLIP baseline).
class Models {
 public:
  // `needs_text`: some task encodes texts. A FLAME model's LLM is loaded only
  // then (the linear probe needs none).
  Models(const EvalOptions& o, bool needs_text)
      : device_(llm::parse_device(o.device)),
        model_(train::load_trained_model(o.model, device_)),
        batch_size_(o.batch_size) {
    if (model_.is_clip()) {
      if (!o.llm.empty())
        spdlog::warn("{} is a CLIP baseline with its own text tower: --llm is not used", o.model);
      tokenizer_ = llm::Tokenizer::load(model_.text->config().tokenizer_path());
      return;
    }
    if (!needs_text) return;
    if (o.llm.empty())
      fail("{} is a FLAME model: evaluating it needs the frozen LLM it was trained against (--llm)", o.model);
    train::CheckedTextSide text_side = train::check_text_side(o.model, o.llm, o.allow_llm_mismatch);
    provenance_ = std::move(text_side.provenance);
    warnings_ = std::move(text_side.warnings);
    auto loaded = llm::load_llm(o.llm, o.dtype, o.device);
    llm_ = std::make_unique<llm::Transformer>(std::move(loaded.model));
    tokenizer_ = std::move(loaded.tokenizer);
    if (model_.image->text_dim() != llm_->config().hidden_size) {
      fail(
          "the model maps images into {} dimensions but the LLM in {} has hidden size {}: evaluate with the "
          "LLM it was trained against",
          model_.image->text_dim(), o.llm, llm_->config().hidden_size);
    }
  }

  bool is_clip() const { return model_.is_clip(); }
  // How the last texts were encoded (FLAME): prompt set, layer, facet positions.
  const nlohmann::json& text_encoding() const { return text_encoding_; }
  const std::vector<std::string>& warnings() const { return warnings_; }

  // [N, D] normalised pooled features of the image files. Features are kept
  // per file: the Flickr8k tasks share their test images and the CIFAR-10
  // tasks theirs, so each image is decoded and encoded once per evaluation.
  // Decoding runs on --threads threads, each taking every T-th image.
  torch::Tensor image_features(const std::vector<fs::path>& files, const std::string& label) {
    torch::NoGradGuard no_grad;
    std::vector<fs::path> missing;
    std::unordered_set<std::string> queued;
    for (const auto& f : files) {
      if (!feature_of_.count(f.string()) && queued.insert(f.string()).second) missing.push_back(f);
    }
    data::ImageTransformOptions t;
    t.size = model_.image->config().image_size;
    t.train = false;
    ProgressBar progress(label + " images", static_cast<int64_t>(missing.size()), "img");
    // --threads decoders (torch's thread count), not one per core: each holds an image's pixels.
    const size_t threads = static_cast<size_t>(std::max(1, torch::get_num_threads()));
    for (size_t begin = 0; begin < missing.size(); begin += batch_size_) {
      const size_t end = std::min(missing.size(), begin + static_cast<size_t>(batch_size_));
      std::vector<torch::Tensor> batch(end - begin);
      std::vector<std::future<void>> decoders;
      for (size_t k = 0; k < std::min(threads, end - begin); ++k) {
        decoders.push_back(std::async(std::launch::async, [&, k] {
          for (size_t i = begin + k; i < end; i += threads) {
            batch[i - begin] =
                data::transform_image(data::decode_image(read_file(missing[i]), missing[i].string()), t, 0);
          }
        }));
      }
      for (auto& d : decoders) d.get();  // rethrows a decoding error, naming the file
      const torch::Tensor features =
          l2_normalize(model_.image->encode(torch::stack(batch).to(device_)).pooled.to(torch::kFloat32))
              .cpu();
      for (size_t i = begin; i < end; ++i)
        feature_of_[missing[i].string()] = features[static_cast<int64_t>(i - begin)];
      progress.advance(static_cast<int64_t>(end - begin));
    }
    progress.finish();
    std::vector<torch::Tensor> out;
    out.reserve(files.size());
    for (const auto& f : files) out.push_back(feature_of_.at(f.string()));
    return torch::stack(out);
  }

  // [N, K, D] normalised text features: the prompt set's K facets (FLAME), or
  // the text tower on each text cut to its context, K = 1 (CLIP; the prompt
  // set is not used). `truncated` counts the texts CLIP cut.
  torch::Tensor text_features(const std::vector<std::string>& texts, const std::string& prompt_set,
                              int64_t* truncated = nullptr) {
    if (!model_.is_clip()) {
      text::FacetEncoderOptions o;
      o.normalize = true;
      const text::PromptSet prompts = text::load_prompt_set(prompt_set);
      if (const text::StoreIdentity* trained = train::store_for_prompts(provenance_, prompt_set)) {
        o.layer = trained->layer;  // the layer and positions training's stores were made with
        o.facet_positions =
            llm::parse_facet_positions(trained->facet_positions, "the checkpoint's text_stores");
        note_prompt_difference(*trained, prompts);
      }
      const text::FacetEncoder encoder(*llm_, *tokenizer_, prompts, o);
      text_encoding_ = {{"prompt_set", prompts.name},
                        {"layer", encoder.layer()},
                        {"facet_positions", llm::to_string(o.facet_positions)}};
      return encoder.encode_texts(texts).cpu();
    }
    // Batches of similar length: the tower stops at a batch's longest caption.
    torch::NoGradGuard no_grad;
    const text::ClipTokens tokens =
        text::clip_tokenize(*tokenizer_, texts, model_.text->config().context_length);
    const int64_t cut = tokens.truncated;
    const torch::Tensor order = std::get<1>(tokens.eot_index.sort(c10::optional<bool>(true), /*dim=*/0));
    torch::Tensor features;
    for (int64_t begin = 0; begin < order.size(0); begin += 256) {
      const torch::Tensor rows = order.slice(0, begin, begin + 256);
      const torch::Tensor f = l2_normalize(model_
                                               .text(tokens.ids.index_select(0, rows).to(device_),
                                                     tokens.eot_index.index_select(0, rows).to(device_))
                                               .to(torch::kFloat32))
                                  .cpu();
      if (!features.defined()) features = torch::empty({order.size(0), f.size(1)}, f.options());
      features.index_copy_(0, rows, f);
    }
    if (truncated != nullptr) *truncated = cut;
    return features.unsqueeze(1);
  }

 private:
  // A prompt set of the same name but other content than training's (edited
  // since): worth a warning, once.
  void note_prompt_difference(const text::StoreIdentity& trained, const text::PromptSet& prompts) {
    if (trained.prompt_set_name != prompts.name || trained.prompt_set_sha256 == prompts.sha256) return;
    const std::string warning = fmt::format(
        "prompt set '{}' differs from the one the model was trained with (sha256 {} now, {} then)",
        prompts.name, prompts.sha256.substr(0, 12), trained.prompt_set_sha256.substr(0, 12));
    if (std::find(warnings_.begin(), warnings_.end(), warning) != warnings_.end()) return;
    warnings_.push_back(warning);
    spdlog::warn("{}", warning);
  }

  torch::Device device_;
  train::TrainedModel model_;
  train::TextProvenance provenance_;  // FLAME: what the training stores were made with
  std::vector<std::string> warnings_;
  std::unique_ptr<llm::Transformer> llm_;  // FLAME only
  std::unique_ptr<llm::Tokenizer> tokenizer_;
  int64_t batch_size_;
  std::unordered_map<std::string, torch::Tensor> feature_of_;  // image file -> its feature [D]
  nlohmann::json text_encoding_;
};

std::string expand(std::string value, const std::string& data_root) {
  const std::string configs = config_dir("benchmarks").parent_path().string();
  for (const auto& [key, replacement] :
       {std::pair<std::string, std::string>{"{data}", data_root}, {"{configs}", configs}}) {
    for (size_t at = value.find(key); at != std::string::npos; at = value.find(key))
      value.replace(at, key.size(), replacement);
  }
  return value;
}

std::string field(const nlohmann::json& task, const char* name, const std::string& data_root) {
  if (!task.contains(name) || !task[name].is_string()) {
    fail("task '{}': missing string field '{}'", task.value("name", "?"), name);
  }
  return expand(task[name].get<std::string>(), data_root);
}

nlohmann::json recall_json(const RetrievalRecall& r) {
  nlohmann::json j;
  for (const auto& [k, v] : r.image_to_text) j["image_to_text"]["R@" + std::to_string(k)] = v;
  for (const auto& [k, v] : r.text_to_image) j["text_to_image"]["R@" + std::to_string(k)] = v;
  return j;
}

nlohmann::json run_retrieval(Models& m, const nlohmann::json& task, const std::string& data_root,
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
  const torch::Tensor image = m.image_features(files, name);
  spdlog::info("{}: embedding {} captions ({})", name, texts.size(),
               m.is_clip()      ? "CLIP text tower"
               : mode == "long" ? "long prompts"
                                : "raw prompts");
  int64_t truncated = 0;
  const torch::Tensor text =
      m.text_features(texts, mode == "long" ? "long" : "raw", &truncated);  // [T, K, D]
  const torch::Tensor similarity = facet_similarity(image, text);
  const RetrievalRecall recall = retrieval_recall(similarity, text_image);
  nlohmann::json out = {{"name", name},          {"type", "retrieval"},
                        {"mode", mode},          {"images", images.size()},
                        {"texts", texts.size()}, {"facets", text.size(1)}};
  if (m.is_clip()) out["truncated_texts"] = truncated;
  if (!m.is_clip()) out["text_encoding"] = m.text_encoding();
  out.update(recall_json(recall));
  return out;
}

// A classification task's classes: the folder under "root" that holds each
// class's images, and the name its text prompts use. The "classes" file is
// either one name per line (folders named by class, as CIFAR-10 here), or
// "FOLDER<TAB>name" lines (ImageNet: n01440764<TAB>tench). With
// "folders": "sorted", line i names the i-th folder in sorted order
// (torchvision's ImageFolder numbering, which OpenAI's ImageNet class names
// follow). Several files can name one folder tree in several languages.
struct ClassList {
  std::vector<std::string> folders, names;
};

ClassList read_classes(const nlohmann::json& task, const std::string& data_root) {
  const std::string file = field(task, "classes", data_root);
  ClassList c;
  for (const std::string& line : read_lines(file)) {
    const size_t tab = line.find('\t');
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

// ROOT/<folder>/* for each class, at most `per_class` each (0: all).
void list_class_images(const nlohmann::json& task, const fs::path& root, const ClassList& classes,
                       int64_t per_class, std::vector<fs::path>* files, std::vector<int64_t>* labels) {
  if (!fs::is_directory(root)) {
    fail("task '{}': no folder {}{}", task.at("name").get<std::string>(), root.string(),
         task.contains("source") ? "; " + task.at("source").get<std::string>() : std::string());
  }
  for (size_t c = 0; c < classes.folders.size(); ++c) {
    const fs::path dir = root / classes.folders[c];
    if (!fs::is_directory(dir)) fail("no folder {} for class '{}'", dir.string(), classes.names[c]);
    std::vector<fs::path> found;
    for (const auto& e : fs::directory_iterator(dir)) {
      if (e.is_regular_file()) found.push_back(e.path());
    }
    std::sort(found.begin(), found.end());
    if (per_class > 0 && static_cast<int64_t>(found.size()) > per_class) found.resize(per_class);
    for (const auto& f : found) {
      files->push_back(f);
      labels->push_back(static_cast<int64_t>(c));
    }
  }
}

nlohmann::json run_zero_shot(Models& m, const nlohmann::json& task, const std::string& data_root,
                             int64_t limit) {
  const std::string name = task.at("name");
  const ClassList classes = read_classes(task, data_root);
  const std::vector<std::string> templates = read_lines(field(task, "templates", data_root));
  for (const auto& t : templates) {
    if (t.find("{}") == std::string::npos) fail("task '{}': template '{}' has no {{}}", name, t);
  }
  std::vector<fs::path> files;
  std::vector<int64_t> labels;
  const auto C = static_cast<int64_t>(classes.names.size()), T = static_cast<int64_t>(templates.size());
  list_class_images(task, field(task, "root", data_root), classes,
                    limit > 0 ? std::max<int64_t>(1, limit / C) : 0, &files, &labels);
  const torch::Tensor image = m.image_features(files, name);
  std::vector<std::string> prompts;
  for (const auto& c : classes.names) {
    for (const auto& t : templates)
      prompts.push_back(t.substr(0, t.find("{}")) + c + t.substr(t.find("{}") + 2));
  }
  const torch::Tensor text = m.text_features(prompts, "raw").select(1, 0).view({C, T, -1});
  const torch::Tensor class_vectors = l2_normalize(l2_normalize(text).mean(1));  // templates averaged
  const ClassificationAccuracy acc = classification_accuracy(image.matmul(class_vectors.t()), labels);
  nlohmann::json per_class = nlohmann::json::object();
  for (size_t c = 0; c < classes.names.size(); ++c) per_class[classes.names[c]] = acc.per_class_top1[c];
  nlohmann::json out = {
      {"name", name},   {"type", "zero-shot"}, {"images", files.size()}, {"classes", C},
      {"templates", T}, {"top1", acc.top1},    {"top5", acc.top5},       {"per_class_top1", per_class}};
  if (!m.is_clip()) out["text_encoding"] = m.text_encoding();
  return out;
}

nlohmann::json run_linear_probe(Models& m, const nlohmann::json& task, const std::string& data_root,
                                int64_t limit) {
  const std::string name = task.at("name");
  const ClassList classes = read_classes(task, data_root);
  std::vector<fs::path> files;
  std::vector<int64_t> labels;
  const auto C = static_cast<int64_t>(classes.names.size());
  list_class_images(task, field(task, "root", data_root), classes,
                    limit > 0 ? std::max<int64_t>(5, limit / C) : 0, &files, &labels);
  const torch::Tensor features = m.image_features(files, name);
  // Split by index within each class: 3/5 train, 1/5 validation, 1/5 test.
  std::vector<int64_t> split[3];
  std::map<int64_t, int64_t> seen;
  for (size_t i = 0; i < files.size(); ++i) {
    const int64_t r = seen[labels[i]]++ % 5;
    split[r < 3 ? 0 : r == 3 ? 1 : 2].push_back(static_cast<int64_t>(i));
  }
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

}  // namespace

torch::Tensor facet_similarity(const torch::Tensor& image, const torch::Tensor& text) {
  if (image.dim() != 2 || text.dim() != 3 || image.size(1) != text.size(2)) {
    fail("facet_similarity: expected image [N, D] and text [T, K, D], got {} and {} dimensions", image.dim(),
         text.dim());
  }
  return torch::einsum("id,tkd->it", {image, text}) / text.size(1);
}

nlohmann::json run_evaluation(const EvalOptions& o) {
  if (!o.out.empty()) check_output_file(o.out, "--out");  // before the work, not after it
  if (o.model.empty()) fail("flame eval needs --model");
  if (o.batch_size <= 0) fail("flame eval: --batch-size must be positive, not {}", o.batch_size);
  if (o.limit < 0) fail("flame eval: --limit must not be negative (0: all), not {}", o.limit);
  if (o.benchmarks.empty()) fail("flame eval needs at least one --benchmark");
  const std::string data_root = o.data_root.empty() ? default_data_root() : o.data_root;
  std::vector<nlohmann::json> tasks;
  std::set<std::string> names;
  for (const auto& b : o.benchmarks) {
    const fs::path path = find_preset(b, {config_dir("benchmarks"), "benchmark", "benchmark"});
    const nlohmann::json bench = read_json_file(path);
    if (!bench.contains("tasks") || !bench["tasks"].is_array()) fail("{}: no 'tasks' array", path.string());
    for (const auto& t : bench["tasks"]) {
      if (!t.contains("name") || !t.contains("type"))
        fail("{}: every task needs 'name' and 'type'", path.string());
      names.insert(t["name"].get<std::string>());
      if (o.tasks.empty() || std::count(o.tasks.begin(), o.tasks.end(), t["name"].get<std::string>()))
        tasks.push_back(t);
    }
  }
  for (const auto& wanted : o.tasks) {
    if (!names.count(wanted)) fail("no task '{}' in the benchmarks given", wanted);
  }

  const bool needs_text = std::any_of(tasks.begin(), tasks.end(), [](const nlohmann::json& t) {
    return t["type"] == "retrieval" || t["type"] == "zero-shot";
  });
  Models models(o, needs_text);
  nlohmann::json results = {{"config",
                             {{"model", o.model},
                              {"llm", o.llm},
                              {"benchmarks", o.benchmarks},
                              {"tasks", o.tasks},
                              {"data_root", data_root},
                              {"limit", o.limit},
                              {"dtype", o.dtype},
                              {"device", o.device},
                              {"allow_llm_mismatch", o.allow_llm_mismatch}}},
                            {"tasks", nlohmann::json::array()}};
  for (const auto& t : tasks) {
    const std::string type = t["type"];
    nlohmann::json r;
    if (type == "retrieval")
      r = run_retrieval(models, t, data_root, o.limit);
    else if (type == "zero-shot")
      r = run_zero_shot(models, t, data_root, o.limit);
    else if (type == "linear-probe")
      r = run_linear_probe(models, t, data_root, o.limit);
    else
      fail("task '{}': unknown type '{}' (retrieval, zero-shot, linear-probe)", t["name"].get<std::string>(),
           type);
    r["task"] = t;
    results["tasks"].push_back(r);
  }
  results["warnings"] = models.warnings();
  if (!o.out.empty()) write_json_file_atomic(o.out, results);
  return results;
}

std::string results_markdown(const nlohmann::json& results) {
  std::ostringstream md;
  // Warnings first: a table computed with another LLM must say so.
  for (const auto& w : results.value("warnings", nlohmann::json::array()))
    md << "> **warning:** " << w.get<std::string>() << "\n\n";
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
    md << fmt::format("| {} | {} | {} | {} | {:.1f} | {:.1f} | {:.1f} | {:.1f} | {:.1f} | {:.1f} |\n",
                      t["name"].get<std::string>(), t["mode"].get<std::string>(), t["images"].get<int64_t>(),
                      t["texts"].get<int64_t>(), 100 * i2t["R@1"].get<double>(),
                      100 * i2t["R@5"].get<double>(), 100 * i2t["R@10"].get<double>(),
                      100 * t2i["R@1"].get<double>(), 100 * t2i["R@5"].get<double>(),
                      100 * t2i["R@10"].get<double>());
  }
  header = false;
  for (const auto& t : results["tasks"]) {
    if (t["type"] == "retrieval") continue;
    if (!header) {
      md << (md.tellp() > 0 ? "\n" : "") << "| classification | type | images | top-1 | top-5 |\n"
         << "|---|---|---:|---:|---:|\n";
      header = true;
    }
    md << fmt::format("| {} | {} | {} | {:.1f} | {} |\n", t["name"].get<std::string>(),
                      t["type"].get<std::string>(), t["images"].get<int64_t>(), 100 * t["top1"].get<double>(),
                      t.contains("top5") ? fmt::format("{:.1f}", 100 * t["top5"].get<double>()) : "");
  }
  return md.str();
}

}  // namespace flame::eval
