// The long-caption retrieval sets of the method's table 1, in their released
// layouts, with the selection its eval_*.py scripts make (MIV-XJTU/FLAME
// src/training/eval_urban_1k.py, eval_sharegpt4v.py, eval_dci.py,
// eval_docci.py). One caption per image; "root" is the dataset folder.
//   urban1k     ROOT/caption/NAME.txt (its first line) and ROOT/image/NAME.jpg;
//               all 1000 pairs, in file-name order
//   sharegpt4v  ROOT/share-captioner_coco_lcs_sam_1246k_1107.json: its first
//               1000 entries (the 1k validation subset), caption =
//               conversations[1].value with newlines as spaces, image =
//               ROOT/<image> ("image_dir" overrides ROOT for images)
//   dci         ROOT/densely_captioned_images/splits.json: the files of every
//               split, in file order; each annotations/<file> gives image
//               (photos/<image>) and caption = short_caption + "\n" +
//               extra_caption, cut at newlines, "</s>" and "." into stripped
//               pieces joined by ". "
//   docci       ROOT/docci_descriptions.jsonlines: the lines with split
//               "test", caption = description with newlines as spaces, image
//               = ROOT/images/<image_file>
// A pair whose image file is missing is skipped (counted and named); a
// missing dataset is one line naming the expected file and where it is published.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>
#include <vector>

#include "eval/eval_models.h"
#include "eval/task_common.h"

namespace flame::eval {

struct CaptionedImages {
  std::vector<std::filesystem::path> images;
  std::vector<std::string> captions;  // captions[i] describes images[i]
  Skipped skipped;
};

// `format` is one of urban1k, sharegpt4v, dci, docci; `task` may set "count"
// (sharegpt4v: entries taken, default 1000) and "image_dir".
CaptionedImages read_long_caption_set(const std::string& format, const std::filesystem::path& root,
                                      const nlohmann::json& task);

// Where the set `format` is published (empty for an unknown format).
std::string long_caption_published(const std::string& format);

// DCI's caption rule: pieces between "\n", "</s>" and "." stripped, empty ones
// dropped, joined by ". ".
std::string dci_caption(const std::string& short_caption, const std::string& extra_caption);

// The task {"type": "long-caption-retrieval", "format": F, "root": ROOT}:
// captions through the `long` prompt set's K facets (mean cosine), as
// retrieval's mode "long"; R@1/5/10 both ways with CLIP_benchmark's (argmax)
// tie rule, which the method's scripts share (their metric is argmax R@1).
nlohmann::json run_long_caption_retrieval(EvalModels& m, const nlohmann::json& task,
                                          const std::string& data_root, int64_t limit);

}  // namespace flame::eval
