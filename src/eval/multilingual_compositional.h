// Crossmodal-3600 (multilingual retrieval, the method's figure 4) and
// SugarCrepe (compositionality, in the method's evaluation notes), in the
// layouts CLIP_benchmark reads them from (clip_benchmark/datasets/
// crossmodal3600.py, sugar_crepe.py) and scored as it scores them.
//
//   crossmodal3600  ROOT/captions.jsonl (one image per line: "image/key" and,
//                   per language code, {"caption": [...]}) and
//                   ROOT/images/<key>.jpg. Per language: each image with its
//                   first caption in that language, texts through the `raw`
//                   prompt set (the method's notes: short texts, one prompt);
//                   R@1/5/10 both ways (first-index ties). One row per
//                   language plus their mean. "languages" (default: all 36).
//   sugarcrepe      ROOT/<split>.json for the seven splits (add_att, add_obj,
//                   replace_att, replace_obj, replace_rel, swap_att, swap_obj):
//                   {"id": {"filename", "caption", "negative_caption"}} over
//                   COCO val2017 images in "image_dir". A hit when the image
//                   scores its caption at least as high as the negative
//                   (argmax, index 0 first); accuracy per split and the mean.
//                   Texts through the `long` prompt set (the method's notes
//                   list SugarCrepe under multi-prompt inference; "mode":
//                   "short" for `raw`).
// Missing files are one line naming the expected path and where the data is
// published; an image file that is missing is skipped, counted and named.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "eval/eval_models.h"
#include "eval/task_common.h"

namespace flame::eval {

// Crossmodal-3600's 36 language codes (as CLIP_benchmark lists them).
const std::vector<std::string>& crossmodal3600_languages();

// Where the data is published (the missing-data lines).
inline constexpr const char* kCrossmodalSource =
    "https://google.github.io/crossmodal-3600 (captions.jsonl from web-data/captions.zip, images.tgz)";
inline constexpr const char* kSugarCrepeSource =
    "https://github.com/RAIVNLab/sugar-crepe (data/*.json) with COCO val2017 images "
    "(https://cocodataset.org)";

// Images with their first caption in `language`, in file order.
struct LanguagePairs {
  std::vector<std::filesystem::path> images;
  std::vector<std::string> captions;
  Skipped skipped;
};
LanguagePairs read_crossmodal3600(const std::filesystem::path& root, const std::string& language);

inline const std::vector<std::string> kSugarCrepeSplits = {
    "add_att", "add_obj", "replace_att", "replace_obj", "replace_rel", "swap_att", "swap_obj"};

struct CaptionPairs {
  std::vector<std::filesystem::path> images;
  std::vector<std::string> positives, negatives;
  Skipped skipped;
};
CaptionPairs read_sugarcrepe_split(const std::filesystem::path& root, const std::filesystem::path& image_dir,
                                   const std::string& split);

// Fraction of rows where positive >= negative (CLIP_benchmark: argmax of
// [positive, negative] is 0, the first on a tie).
double caption_selection_accuracy(const torch::Tensor& positive, const torch::Tensor& negative);

nlohmann::json run_crossmodal3600(EvalModels& m, const nlohmann::json& task, const std::string& data_root,
                                  int64_t limit);
nlohmann::json run_sugarcrepe(EvalModels& m, const nlohmann::json& task, const std::string& data_root,
                              int64_t limit);

}  // namespace flame::eval
