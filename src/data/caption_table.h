// CaptionTable: the CLIP baseline's text side, one caption per key read with
// the embedding job's caption reader (so `--caption-join` gives exactly the
// descriptions `flame embed --tsv-join` embedded for FLAME). The loader pairs
// images with its rows; the trainer tokenizes the captions of each batch.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "data/caption_source.h"
#include "data/paired_texts.h"

namespace flame::data {

class CaptionTable : public PairedTexts {
 public:
  // Reads `inputs` (JSONL, TSV or tar shards) and keeps each record's `field`.
  // Records without it are left out (logged as input problems); throws
  // flame::Error naming the inputs when no record has it.
  static CaptionTable read(const std::vector<std::string>& inputs, const CaptionSourceOptions& options,
                           const std::string& field);

  int64_t size() const override { return static_cast<int64_t>(keys_.size()); }
  std::optional<int64_t> index_of(const std::string& key) const override;
  const std::string& example_key() const override { return keys_.front(); }
  torch::Tensor batch_texts(const std::vector<int64_t>&) const override { return {}; }

  const std::string& caption(int64_t row) const { return captions_.at(static_cast<size_t>(row)); }
  std::vector<std::string> captions(const std::vector<int64_t>& rows) const;

 private:
  std::vector<std::string> keys_, captions_;
  std::unordered_map<std::string, int64_t> row_of_;
};

}  // namespace flame::data
