// What a checkpoint's config.json says about the shapes of the trained model
// (the part model_config_json() in trained_model.h writes), read and checked
// without building anything: the fuzz target runs this parser without torch,
// and model_from_config() builds the module from its result.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

#include "text/clip_text_config.h"
#include "train/train_options.h"
#include "vision/vit_config.h"

namespace flame::train {

// A checkpoint's config is refused above this many trained parameters: a
// corrupt width must end in a message, not in an allocation of terabytes.
inline constexpr double kMaxCheckpointParameters = 1e11;

struct ModelConfig {
  vision::VitConfig vit;
  int64_t text_dim = 0;  // FLAME: the LLM's hidden size; CLIP: unused (clip_text.embed_dim)
  TextTower tower = TextTower::kLlm;
  text::ClipTextConfig clip_text;  // CLIP only
  int64_t vocab_size = 0;          // CLIP only
};

// Reads {"vit", "text_dim", "text_tower", "clip_text", "vocab_size"}; errors
// name `source` and the missing or bad field.
ModelConfig model_config_from_json(const nlohmann::json& config, const std::string& source);

}  // namespace flame::train
