// CLIP_benchmark's WebDataset export of a dataset, the layout of its ~40
// wds_* datasets (huggingface.co/clip-benchmark, made by
// clip_benchmark_export_wds), read as its builder.py reads it:
//   ROOT/classnames.txt                          one class name per line
//   ROOT/zeroshot_classification_templates.txt   one template per line, "{c}"
//   ROOT/dataset_type.txt                        optional: "retrieval", else classification
//   ROOT/<split>/nshards.txt                     N: the shards are 0.tar .. N-1.tar
//                                                (absent: every *.tar there, sorted)
//   ROOT/<split>/*.tar                           per sample KEY.webp|png|jpg|jpeg, plus
//                                                KEY.cls (class index) or KEY.txt
//                                                (captions, one per line)
// Splits are "test" (zero-shot tasks, the linear probe's test set) and "train"
// (the linear probe's fit). Images stay in the shards: they are indexed, then
// read with pread and decoded in memory when encoded (data::ImageSource).
// Malformed samples (no image, no or bad .cls, no caption) are counted and
// named in `skipped`, never a crash; undecodable images are found (and
// skipped likewise) when the task encodes them.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "data/image_source.h"
#include "eval/eval_models.h"
#include "eval/task_common.h"

namespace flame::eval {

struct ClipBenchmarkInfo {
  std::filesystem::path root;
  std::string name;                      // the root's folder name, e.g. "wds_cifar10"
  std::string type;                      // "classification" or "retrieval" (dataset_type.txt)
  std::vector<std::string> classnames;   // empty when classnames.txt is absent
  std::vector<std::string> templates;    // empty when the templates file is absent
  std::vector<std::string> empty_files;  // of those two, the ones present but without a line
};

// Where the export at `root` is published: its Hugging Face page when the
// folder has the wds_<dataset> name, else where the exports are.
std::string clip_benchmark_published(const std::filesystem::path& root);

// Reads the root's metadata. A missing root or test split is one line naming
// the expected path and where the exports are published.
ClipBenchmarkInfo open_clip_benchmark(const std::filesystem::path& root);

struct ClipBenchmarkSample {
  std::string key;
  int64_t record = 0;                 // index into ClipBenchmarkSplit::images
  int64_t label = -1;                 // classification
  std::vector<std::string> captions;  // retrieval
};

struct ClipBenchmarkSplit {
  data::ImageSource images;
  std::vector<ClipBenchmarkSample> samples;  // shard order, member order
  Skipped skipped;

  // The samples' images for EvalModels::image_features.
  std::vector<ImageInput> image_inputs() const;
};

// The samples of ROOT/<split>: with labels (checked against the class count)
// when `labels`, else with captions.
ClipBenchmarkSplit read_clip_benchmark_split(const ClipBenchmarkInfo& info, const std::string& split,
                                             bool labels);

}  // namespace flame::eval
