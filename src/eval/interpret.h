// Patch-to-word interpretability (FLAME, issue 6): the projector maps every
// image patch into the frozen LLM's hidden space, so each projected patch can
// be read through the LLM's own output head (final norm + LM head) as a
// distribution over words. A trained encoder shows which word each region of
// an image is closest to; the result is written as JSON and as a picture with
// the words drawn on a grid over the image.
#pragma once

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "llm/tokenizer.h"
#include "llm/transformer.h"
#include "vision/image_encoder.h"

namespace flame::eval {

inline constexpr int64_t kInterpretTopK = 5;

struct TokenProb {
  int32_t token_id = 0;
  std::string token;  // decoded text (ids beyond the tokenizer's vocabulary: "<id>")
  float prob = 0;     // softmax over the whole vocabulary
};

// One cell of the (pooled) patch grid.
struct PatchWord {
  int64_t row = 0, col = 0;
  int32_t token_id = 0;  // the most likely token, = top[0]
  std::string token;
  float prob = 0;
  std::vector<TokenProb> top;  // the kInterpretTopK most likely, best first
};

struct InterpretResult {
  int64_t patch_grid = 0;          // g: the ViT sees g x g patches
  int64_t pool = 1;                // cells average pool x pool patches
  int64_t grid = 0;                // cells per side: ceil(g / pool)
  torch::Tensor view;              // uint8 [S, S, 3]: the image as the model saw it (eval crop)
  std::vector<PatchWord> patches;  // grid x grid cells, row-major
};

// Means over pool x pool blocks of a [g, g, D] token grid -> [ceil(g / pool),
// ceil(g / pool), D]. When pool does not divide g, the last row and column of
// cells average the patches they hold (e.g. 14 patches, pool 4: 4, 4, 4, 2).
torch::Tensor pool_patch_grid(const torch::Tensor& grid_tokens, int64_t pool);

// Fails unless the encoder projects into the LLM's hidden size (an encoder is
// only interpretable through the LLM it was trained against).
void check_interpretable(const vision::ImageEncoder& encoder, const llm::Transformer& model);

// Decodes `image_u8_hwc` ([H, W, 3] RGB) with the eval transform, encodes it
// (the encoder is switched to eval mode), pools the projected patch grid and
// reads every cell through the LLM's output head.
InterpretResult interpret_image(vision::ImageEncoder& encoder, const llm::Transformer& model,
                                const llm::Tokenizer& tokenizer, const torch::Tensor& image_u8_hwc, int pool);

// A token as a short label: trimmed, each control or non-ASCII character
// replaced by '?', cut to at most max_chars characters.
std::string display_word(const std::string& token, size_t max_chars);

// {"image", "grid", "patch_grid", "pool", "image_size", "patches": [{"row", "col",
// "token_id", "token", "prob", "top5": [{"token_id", "token", "prob"}]}]}
nlohmann::json interpretation_json(const InterpretResult& result, const std::string& image);

// The model's view scaled up (nearest neighbour) so a full cell is about
// cell_px pixels, a grid over it and each cell's word (and, where it fits, its
// probability in percent) drawn in white on a dark outline. uint8 [H, W, 3].
torch::Tensor render_interpretation(const InterpretResult& result, int cell_px = 48);

// Writes out_dir/NAME.json and out_dir/NAME.png (both atomically), creating out_dir.
void write_interpretation(const InterpretResult& result, const std::filesystem::path& out_dir,
                          const std::string& name, const std::string& image);

}  // namespace flame::eval
