// PairedTexts: the text side the training loader pairs images with, by key.
// FLAME pairs images with stored facet embeddings (text::JoinedStores); the
// CLIP baseline with raw captions that the trainer tokenizes (CaptionTable).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace flame::data {

class PairedTexts {
 public:
  virtual ~PairedTexts() = default;
  virtual int64_t size() const = 0;
  // The row of `key`, if it has a text.
  virtual std::optional<int64_t> index_of(const std::string& key) const = 0;
  // A key, for messages about keys that do not match (size() > 0).
  virtual const std::string& example_key() const = 0;
  // What a batch carries for these rows in Batch::texts: [n, K, D] float32
  // embeddings, or an undefined tensor when the trainer reads the rows itself.
  virtual torch::Tensor batch_texts(const std::vector<int64_t>& rows) const = 0;
};

}  // namespace flame::data
