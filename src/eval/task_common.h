// Helpers every benchmark source of `flame eval` shares: a task's fields with
// the {data} and {configs} placeholders expanded, list files, the results'
// recall block, zero-shot prompts and the "counted and named" record of
// malformed items a reader skipped.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "eval/metrics.h"

namespace flame::eval {

// {data} -> data_root, {configs} -> the configs folder.
std::string expand_placeholders(std::string value, const std::string& data_root);

// The task's string field `name`, expanded; throws naming the task when absent.
std::string task_field(const nlohmann::json& task, const char* name, const std::string& data_root);

// Rows scaled to unit L2 norm (the last dimension).
torch::Tensor l2_normalize(const torch::Tensor& x);

// The non-blank lines of a text file, trimmed (CR of CRLF files dropped).
std::vector<std::string> read_lines(const std::filesystem::path& path);

// A list of class names or zero-shot templates: a text file (one per line, as
// read_lines), or CLIP_benchmark's JSON (`<lang>_classnames.json`,
// `<lang>_zeroshot_classification_templates.json`): a list of strings, or an
// object of lists by dataset, of which `dataset`'s is taken. For templates
// CLIP_benchmark falls back to "imagenet1k"'s list (`templates.get(name,
// default_template)`); `fallback` names that key (empty: no fallback).
std::vector<std::string> read_name_list(const std::filesystem::path& path, const std::string& dataset,
                                        const std::string& fallback = "");

// {"image_to_text": {"R@1": ...}, "text_to_image": {...}}.
nlohmann::json recall_json(const RetrievalRecall& r);

// A zero-shot template with the class name put in: "{c}" (CLIP_benchmark's
// files) or "{}" (ours). Throws naming the template when it has neither.
std::string fill_template(const std::string& templ, const std::string& class_name);

// How a text's K facets are scored against an image (a task's "facet_pooling"):
//   kMeanCosine ("mean_cosine", the default): the mean of the K cosines, each
//     facet a unit vector (facet_similarity);
//   kMeanEmbedding ("mean_embedding"): the cosine with the normalised mean of
//     the K raw facet vectors, as the method's released encode_text(...,
//     multi_template=True) with its default infer=True does.
enum class FacetPooling { kMeanCosine, kMeanEmbedding };
FacetPooling facet_pooling(const nlohmann::json& task);
// "mean_cosine" or "mean_embedding"; throws naming `where` and the names allowed.
FacetPooling parse_facet_pooling(const std::string& value, const std::string& where);
const char* to_string(FacetPooling pooling);
// Text features [T, K, D] (unit facets for kMeanCosine, raw for
// kMeanEmbedding) as facet_similarity takes them: unchanged, or [T, 1, D], the
// normalised mean.
torch::Tensor pool_facets(const torch::Tensor& text, FacetPooling pooling);

// Image-text similarity [N, T] of normalised image features [N, D] and text
// facets [T, K, D]: the mean cosine over the K facets (K = 1: plain cosine).
torch::Tensor facet_similarity(const torch::Tensor& image, const torch::Tensor& text);

// --limit N over C classes: at most N images in all, floor(N/C) per class and
// one more for the first N % C classes (0: no limit, every entry 0). With
// N < C only the first N classes get an image.
std::vector<int64_t> class_quotas(int64_t limit, int64_t classes);

// Why a sample's caption cannot be used ("" when it can): not valid UTF-8
// (naming the byte offset), or nothing to read (data::blank_caption: empty,
// Unicode whitespace, invisible characters, as the embed readers drop). Readers skip such a
// sample and count it (Skipped), never stop the evaluation.
std::string caption_defect(const std::string& caption);

// Throws naming `file` (and its line) when a line of a list (class names,
// templates) is not valid UTF-8: the list is the benchmark's, not a sample.
void check_utf8_lines(const std::vector<std::string>& lines, const std::filesystem::path& file);

// Items a reader skipped, by reason, with the first few named: reported in the
// task's results, never a crash.
class Skipped {
 public:
  void add(const std::string& reason, const std::string& item);
  int64_t total() const { return total_; }
  // {"count": N, "by_reason": {...}, "examples": ["reason: item", ...]}.
  nlohmann::json json() const;

 private:
  int64_t total_ = 0;
  std::map<std::string, int64_t> by_reason_;
  std::vector<std::string> examples_;
};

}  // namespace flame::eval
