// Training checkpoints: RUN/checkpoints/step-00000100/ holding
//   model.safetensors      the trained parameters by name (fp32; train/trained_model.h)
//   config.json            model_config_json() + {"facets": [...], "train": TrainOptions, ...}
//   optimizer.safetensors  AdamW moments "<param>.exp_avg" / "<param>.exp_avg_sq" (step
//                          counts in the metadata) and the CPU RNG state "rng.cpu"
//   state.json             {"step": s, "loader": [state of each rank], ...}
// A checkpoint is written into a temporary directory and renamed, then
// RUN/checkpoints/latest (the directory's name) is replaced atomically: a
// crash at any point leaves the previous checkpoint usable.
#pragma once

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <optional>
#include <string>

#include "train/trained_model.h"
#include "vision/image_encoder.h"

namespace flame::train {

namespace fs = std::filesystem;

struct CheckpointContents {
  nlohmann::json config;  // config.json
  nlohmann::json state;   // state.json
};

// Writes a checkpoint of `model` (every parameter and buffer by name) and `optimizer` for `step` under
// run_dir/checkpoints, points `latest` at it, and removes all but the newest
// `keep` checkpoints. Returns its directory.
fs::path save_checkpoint(const fs::path& run_dir, int64_t step, const torch::nn::Module& model,
                         const torch::optim::AdamW& optimizer, const CheckpointContents& contents,
                         int64_t keep);

// The checkpoint `latest` names, if any.
std::optional<fs::path> latest_checkpoint(const fs::path& run_dir);

// Whether a checkpoint's config.json says its run used the sigmoid loss (and
// so trained logit_bias; OpenCLIP has one for SigLIP models only).
bool trained_with_sigmoid_loss(const nlohmann::json& checkpoint_config);

// Reads config.json and state.json of a checkpoint directory.
CheckpointContents read_checkpoint_contents(const fs::path& checkpoint_dir);

// Copies the saved parameters into `model` (names and shapes must match:
// errors name the tensor) and, when given, the optimizer's moments and the
// CPU RNG state.
void load_checkpoint(const fs::path& checkpoint_dir, torch::nn::Module& model,
                     torch::optim::AdamW* optimizer = nullptr, bool restore_rng = false);

// `dir` itself when it holds config.json, else the latest checkpoint of the
// run directory `dir`; throws flame::Error when it is neither.
fs::path resolve_checkpoint(const fs::path& dir);

// The model of a checkpoint (or of a run directory's latest), built from its
// config.json and weights, in eval mode on `device` (for evaluation).
TrainedModel load_trained_model(const fs::path& dir, const torch::Device& device = torch::kCPU);
// Its image encoder (FLAME or CLIP).
vision::ImageEncoder load_image_encoder(const fs::path& dir, const torch::Device& device = torch::kCPU);

}  // namespace flame::train
