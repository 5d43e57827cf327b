// OpenCLIP interop: a trained model out of flame in OpenCLIP's state-dict
// names and config layout, and OpenCLIP-named FLAME checkpoints (flame's own
// exports, and the method's released checkpoints) into a flame run.
//
// Tensor names (docs/export.md):
//   image tower   vit.X -> visual.X (conv1.weight, class_embedding,
//                 positional_embedding, ln_pre.*, transformer.resblocks.N.*,
//                 ln_post.*), as OpenCLIP's VisionTransformer
//   FLAME         projector.fc1 / fc2 / norm -> mm.0 / mm.2 / mm.3: the
//                 released code's nn.Sequential(Linear, GELU, Linear, LayerNorm)
//   CLIP baseline image.proj.weight [D, W] -> visual.proj [W, D] (OpenCLIP
//                 multiplies by it); text.X -> X (token_embedding.weight,
//                 positional_embedding, transformer.resblocks.N.*, ln_final.*,
//                 text_projection), as OpenCLIP's CLIP class
//   both          logit_scale; logit_bias when the run used the sigmoid loss
// The config, open_clip_config.json, holds {"model_cfg", "preprocess_cfg"} as
// OpenCLIP's hub files do, and a "flame" section with what OpenCLIP's config
// cannot say (the projector's hidden width, ln_post, the text side).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

namespace flame::train {

inline constexpr const char* kOpenClipWeightsFile = "open_clip_model.safetensors";
inline constexpr const char* kOpenClipConfigFile = "open_clip_config.json";

struct OpenClipExport {
  std::filesystem::path weights, config;
  int64_t tensors = 0;
};

// Writes the latest checkpoint of `run` (or the checkpoint `run` names) into
// out_dir as kOpenClipWeightsFile (fp32) + kOpenClipConfigFile. Each file is
// written atomically; an existing export is refused unless `overwrite`.
OpenClipExport export_open_clip(const std::filesystem::path& run, const std::filesystem::path& out_dir,
                                bool overwrite = false);

struct OpenClipImportOptions {
  std::filesystem::path weights;  // OpenCLIP-named .safetensors
  // open_clip_config.json ({"model_cfg": ...}) or a bare model config (the
  // release's FLAME-Mistral-Nemo-ViT-B-16.json); empty: kOpenClipConfigFile
  // beside the weights.
  std::filesystem::path config;
  std::filesystem::path run_dir;  // created; refused if it holds checkpoints, unless overwrite
  // The frozen LLM the model was trained against, recorded as its text side
  // so eval and interpret check it. Required unless the config carries
  // flame's own record (an export of flame's).
  std::filesystem::path llm;
  // The layer (Python hidden_states numbering) and facet positions the
  // model's text features used. Defaults: the config's text_cfg.layer, else
  // -2; "concatenated" for the released code's checkpoints (no flame
  // section), else what flame recorded.
  std::string layer;
  std::string facet_positions;
  bool overwrite = false;
};

// The checkpoint directory written (run_dir/checkpoints/step-00000000).
// Throws flame::Error naming the file and the tensor or field on any mismatch:
// a missing or misshapen tensor, a name it does not know, a projector of
// another depth.
std::filesystem::path import_open_clip(const OpenClipImportOptions& options);

}  // namespace flame::train
