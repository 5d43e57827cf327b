#include "train/open_clip_format.h"

#include <spdlog/spdlog.h>

#include <cmath>
#include <map>
#include <optional>
#include <set>

#include "data/image_transform.h"
#include "llm/checkpoint_identity.h"
#include "llm/config.h"
#include "llm/tokenizer.h"
#include "llm/transformer.h"
#include "llm/weights.h"
#include "text/prompts.h"
#include "train/checkpoint.h"
#include "train/model_config.h"
#include "train/text_provenance.h"
#include "train/trained_model.h"
#include "util/error.h"
#include "util/file.h"
#include "util/safetensors.h"
#include "util/strings.h"

namespace flame::train {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// flame name prefix -> OpenCLIP name prefix, for each kind of model. A rule
// whose flame side is a whole name maps that name only.
struct NameRule {
  std::string flame, open_clip;
  bool transpose = false;  // visual.proj is [W, D], flame's Linear weight [D, W]
};

const std::vector<NameRule>& name_rules(bool clip) {
  static const std::vector<NameRule> flame_rules = {
      {"vit.", "visual."},          {"projector.fc1.", "mm.0."},    {"projector.fc2.", "mm.2."},
      {"projector.norm.", "mm.3."}, {"logit_scale", "logit_scale"}, {"logit_bias", "logit_bias"}};
  static const std::vector<NameRule> clip_rules = {{"image.vit.", "visual."},
                                                   {"image.proj.weight", "visual.proj", true},
                                                   {"image.logit_scale", "logit_scale"},
                                                   {"image.logit_bias", "logit_bias"},
                                                   {"text.", ""}};
  return clip ? clip_rules : flame_rules;
}

bool whole_name(const NameRule& r) {
  return r.flame.back() != '.';
}

// The OpenCLIP name of a flame parameter, and whether it is stored transposed.
std::pair<std::string, bool> to_open_clip(const std::string& name, bool clip) {
  for (const NameRule& r : name_rules(clip)) {
    if (whole_name(r) ? name == r.flame : starts_with(name, r.flame))
      return {r.open_clip + name.substr(r.flame.size()), r.transpose};
  }
  fail("no OpenCLIP name for parameter '{}'", name);
}

std::optional<std::pair<std::string, bool>> from_open_clip(const std::string& name, bool clip) {
  for (const NameRule& r : name_rules(clip)) {
    if (r.open_clip.empty()) continue;  // the text tower's catch-all: see below
    if (whole_name(r) ? name == r.open_clip : starts_with(name, r.open_clip))
      return std::pair{r.flame + name.substr(r.open_clip.size()), r.transpose};
  }
  return std::nullopt;
}

json preprocess_config(int64_t image_size) {
  return {{"size", image_size},         {"mode", "RGB"},
          {"mean", data::kClipMean},    {"std", data::kClipStd},
          {"interpolation", "bicubic"}, {"resize_mode", "shortest"}};
}

// OpenCLIP's model_cfg for the model, as far as OpenCLIP can say it.
// `logit_bias`: the export carries one (sigmoid loss), so OpenCLIP must build
// the parameter (its SigLIP configs say so with init_logit_bias; without it
// open_clip's load_checkpoint fails on the model's missing logit_bias).
json open_clip_model_config(const TrainedModel& model, bool logit_bias) {
  const vision::VitConfig& v = model.image->config();
  json cfg = {{"embed_dim", model.image->text_dim()},
              {"vision_cfg",
               {{"image_size", v.image_size},
                {"layers", v.layers},
                {"width", v.width},
                {"head_width", v.width / v.heads},
                {"mlp_ratio", v.mlp_ratio},
                {"patch_size", v.patch_size},
                {"pool_type", v.pool == "cls" ? "tok" : "avg"}}}};
  if (logit_bias) cfg["init_logit_bias"] = -10.0;  // the weights' value replaces it on load
  if (model.is_clip()) {
    const text::ClipTextConfig& t = model.text->config();
    // flame's tokenizer puts its EOS id at the end of a caption (text/clip_tokenize.h):
    // OpenCLIP's "eos" pooling takes the first position holding it. Its default,
    // "argmax", pools at the largest id, EOT only with CLIP's own BPE.
    const std::optional<int32_t> eos = llm::Tokenizer::load(t.tokenizer_path())->eos_id();
    if (!eos)
      fail("tokenizer {} has no eos id: the CLIP tower cannot be exported", t.tokenizer_path().string());
    cfg["text_cfg"] = {{"context_length", t.context_length},
                       {"vocab_size", model.text->vocab_size()},
                       {"width", t.width},
                       {"heads", t.heads},
                       {"layers", t.layers},
                       {"mlp_ratio", t.mlp_ratio},
                       {"pool_type", "eos"},
                       {"eos_id", *eos}};
    return cfg;
  }
  cfg["mm_cfg"] = {{"mm_projector", true},
                   {"width", v.width},
                   {"mlp_depth", 2},
                   {"projector_dim", model.image->text_dim()}};
  cfg["custom_text"] = true;
  return cfg;
}

void refuse_existing(const fs::path& path, bool overwrite) {
  if (fs::exists(path) && !overwrite) fail("{} exists: pass --overwrite to replace it", path.string());
}

}  // namespace

OpenClipExport export_open_clip(const fs::path& run, const fs::path& out_dir, bool overwrite) {
  const fs::path checkpoint = resolve_checkpoint(run);
  const json config = read_json_file(checkpoint / "config.json");
  const TrainedModel model = load_trained_model(checkpoint);
  const bool sigmoid = config.value("train", json::object()).value("loss", "infonce") == "sigmoid";
  OpenClipExport out{out_dir / kOpenClipWeightsFile, out_dir / kOpenClipConfigFile, 0};
  refuse_existing(out.weights, overwrite);
  refuse_existing(out.config, overwrite);
  fs::create_directories(out_dir);

  SafetensorsWriter writer;
  bool has_logit_bias = false;
  for (const auto& item : model.root->named_parameters()) {
    if (ends_with(item.key(), "logit_bias") && !sigmoid) continue;  // OpenCLIP has one for SigLIP only
    const auto [name, transpose] = to_open_clip(item.key(), model.is_clip());
    has_logit_bias = has_logit_bias || name == "logit_bias";
    torch::Tensor t = item.value().detach().to(torch::kFloat32);
    llm::add_tensor(writer, name, (transpose ? t.t() : t).contiguous());
    ++out.tensors;
  }
  writer.set_metadata({{"format", "pt"}});
  writer.write(out.weights);

  json flame = {{"format", "flame-open-clip-export"},
                {"version", 1},
                {"model", model_config_json(model)},
                {"source_checkpoint", fs::absolute(checkpoint).string()}};
  if (config.contains("text_stores")) flame["text_stores"] = config["text_stores"];
  if (model.is_clip()) flame["tokenizer"] = model.text->config().tokenizer;
  write_json_file_atomic(out.config, {{"model_cfg", open_clip_model_config(model, has_logit_bias)},
                                      {"preprocess_cfg", preprocess_config(model.image->config().image_size)},
                                      {"flame", flame}});
  return out;
}

namespace {

// The tensors of an OpenCLIP-named file as flame's names (fp32), and what was
// left out. Only FLAME models (visual.* + mm.*) are read.
struct ImportedTensors {
  std::map<std::string, torch::Tensor> by_flame_name;
  int64_t text_tower_tensors = 0;  // text.* (the released checkpoints may carry the LLM): not used
  bool has_visual_proj = false;    // the released ViT's own projection, unused by FLAME
};

std::string not_importable(const std::string& name) {
  return fmt::format(
      "tensor '{}' is not part of a FLAME model flame can load (an OpenCLIP ViT's visual.*, the projector "
      "mm.0 / mm.2 / mm.3, logit_scale, logit_bias); CLIP baselines and other towers cannot be imported",
      name);
}

ImportedTensors read_open_clip_tensors(const fs::path& path) {
  const SafetensorsFile file(path);
  ImportedTensors out;
  for (const auto& [name, info] : file.tensors()) {
    if (starts_with(name, "text.")) {
      ++out.text_tower_tensors;
      continue;
    }
    if (name == "visual.proj") {
      out.has_visual_proj = true;
      continue;
    }
    const auto mapped = from_open_clip(name, /*clip=*/false);
    if (!mapped) fail("{}: {}", path.string(), not_importable(name));
    // One copy out of the map, converted to fp32 on the way.
    out.by_flame_name[mapped->first] =
        llm::mapped_tensor(file, info).to(torch::kFloat32, /*non_blocking=*/false, /*copy=*/true);
  }
  return out;
}

const torch::Tensor& tensor_at(const ImportedTensors& t, const std::string& name, const fs::path& path) {
  const auto it = t.by_flame_name.find(name);
  if (it == t.by_flame_name.end()) {
    fail("{}: lacks tensor '{}'", path.string(), to_open_clip(name, false).first);
  }
  return it->second;
}

// The ViT shapes, read off the tensors (as OpenCLIP's
// build_model_from_openai_state_dict does) plus what only the config says.
vision::VitConfig vit_from_tensors(const ImportedTensors& t, const json& model_cfg, const fs::path& path) {
  const json vision_cfg = model_cfg.value("vision_cfg", json::object());
  const torch::Tensor& conv = tensor_at(t, "vit.conv1.weight", path);
  const torch::Tensor& pos = tensor_at(t, "vit.positional_embedding", path);
  vision::VitConfig v;
  v.name = fs::path(path).stem().string();
  v.width = conv.size(0);
  v.patch_size = conv.size(3);
  const auto grid = static_cast<int64_t>(std::lround(std::sqrt(static_cast<double>(pos.size(0) - 1))));
  v.image_size = grid * v.patch_size;
  v.layers = 0;
  while (t.by_flame_name.count(fmt::format("vit.transformer.resblocks.{}.attn.in_proj_weight", v.layers)))
    ++v.layers;
  const int64_t head_width = vision_cfg.value("head_width", int64_t{64});
  if (head_width <= 0 || v.width % head_width != 0)
    fail("{}: vision_cfg.head_width {} does not divide the width {}", path.string(), head_width, v.width);
  v.heads = v.width / head_width;
  v.mlp_ratio =
      static_cast<double>(tensor_at(t, "vit.transformer.resblocks.0.mlp.c_fc.weight", path).size(0)) /
      static_cast<double>(v.width);
  const std::string pool = vision_cfg.value("pool_type", std::string("tok"));
  if (pool != "avg" && pool != "tok")
    fail("{}: vision_cfg.pool_type '{}' is not avg or tok", path.string(), pool);
  v.pool = pool == "avg" ? "avg" : "cls";
  return v;
}

// The model's shapes: flame's own record when the config has one (an export
// of flame's, read as a checkpoint's config is), else read off the tensors.
ModelConfig imported_shape(const ImportedTensors& t, const json& config, const fs::path& path) {
  if (config.contains("flame")) {
    const json& flame = config["flame"];
    if (!flame.is_object() || !flame.contains("model"))
      fail("{}: the 'flame' section has no 'model'", path.string());
    ModelConfig shape = model_config_from_json(flame["model"], path.string() + ": flame.model");
    if (shape.tower != TextTower::kLlm) fail("{}: only FLAME models can be imported", path.string());
    return shape;
  }
  const json model_cfg = config.contains("model_cfg") ? config["model_cfg"] : config;
  const json mm_cfg = model_cfg.value("mm_cfg", json::object());
  if (mm_cfg.value("mlp_depth", int64_t{2}) != 2 || t.by_flame_name.count("projector.fc2.weight") == 0) {
    fail(
        "{}: FLAME's projector has two linear layers (mm.0, GELU, mm.2, LayerNorm mm.3); this one has "
        "mlp_depth {}",
        path.string(), mm_cfg.value("mlp_depth", int64_t{2}));
  }
  ModelConfig shape;
  shape.vit = vit_from_tensors(t, model_cfg, path);
  shape.vit.projector_hidden = tensor_at(t, "projector.fc1.weight", path).size(0);
  shape.vit.ln_post = false;  // the released encode_image projects the last block's output
  shape.text_dim = tensor_at(t, "projector.fc2.weight", path).size(0);
  return shape;
}

int64_t parse_layer(const std::string& text) {
  try {
    size_t used = 0;
    const int64_t value = std::stoll(text, &used);
    if (used == text.size()) return value;
  } catch (const std::exception&) {
  }
  fail("layer '{}' is not an integer (the released configs name one layer, e.g. \"39\")", text);
}

// The text side to record: flame's own (an export), else the LLM given, at
// the layer and facet positions the model's features used, with the prompt
// sets its texts were made with (a release: release-long and release-raw).
json imported_text_stores(const OpenClipImportOptions& o, const json& config, int64_t text_dim) {
  if (o.llm.empty()) {
    if (config.contains("flame") && config["flame"].contains("text_stores"))
      return config["flame"]["text_stores"];
    fail("{}: name the LLM the model was trained against (--llm), so eval and interpret can check it",
         o.weights.string());
  }
  const llm::LlmConfig llm_config = llm::load_llm_config(o.llm);
  if (llm_config.hidden_size != text_dim) {
    fail("{} maps images into {} dimensions but the LLM in {} has hidden size {}", o.weights.string(),
         text_dim, o.llm.string(), llm_config.hidden_size);
  }
  const json text_cfg =
      (config.contains("model_cfg") ? config["model_cfg"] : config).value("text_cfg", json::object());
  std::string layer = o.layer;
  if (layer.empty()) layer = text_cfg.contains("layer") ? text_cfg["layer"].get<std::string>() : "-2";
  const int64_t index = llm::hidden_state_index(parse_layer(layer), llm_config.num_hidden_layers);
  const bool flame_export = config.contains("flame");
  std::string positions = o.facet_positions;
  if (positions.empty()) positions = flame_export ? "separate" : "concatenated";
  const json llm_identity = llm::checkpoint_identity(o.llm).json;
  std::vector<text::StoreIdentity> stores;
  // The release's encode_text uses its own two templates (release-long,
  // release-raw); a flame export's model was trained on flame's sets.
  const std::vector<std::string> sets = flame_export
                                            ? std::vector<std::string>{"long", "short", "raw"}
                                            : std::vector<std::string>{"release-long", "release-raw"};
  for (const std::string& name : sets) {
    const text::PromptSet prompts = text::load_prompt_set(name);
    text::StoreIdentity id = text::prompt_store_identity(llm_identity, prompts);
    id.layer = static_cast<int>(index);
    id.dim = text_dim;
    id.normalized = true;
    id.facet_positions = positions;
    id.validate("--facet-positions");
    stores.push_back(id);
  }
  return text_provenance_json(stores);
}

}  // namespace

fs::path import_open_clip(const OpenClipImportOptions& o) {
  const fs::path config_path = o.config.empty() ? o.weights.parent_path() / kOpenClipConfigFile : o.config;
  if (!fs::exists(o.weights)) fail("no such file: {}", o.weights.string());
  if (!fs::exists(config_path))
    fail("no model config {}: pass the model's config JSON (--config)", config_path.string());
  const json config = read_json_file(config_path);
  if (fs::exists(o.run_dir / "checkpoints") && !o.overwrite)
    fail("{} already holds checkpoints: pass --overwrite to replace them", o.run_dir.string());
  const ImportedTensors tensors = read_open_clip_tensors(o.weights);
  const ModelConfig shape = imported_shape(tensors, config, o.weights);
  TrainedModel model = make_flame_model(shape.vit, shape.text_dim);
  {
    torch::NoGradGuard no_grad;
    for (auto& item : model.root->named_parameters()) {
      const auto it = tensors.by_flame_name.find(item.key());
      if (it == tensors.by_flame_name.end()) {
        if (item.key() == "logit_bias") continue;  // no sigmoid loss: keep the initial bias
        fail("{}: lacks tensor '{}'", o.weights.string(), to_open_clip(item.key(), false).first);
      }
      if (it->second.sizes() != item.value().sizes()) {
        fail("{}: tensor '{}' has shape {}, a model of this config expects {}", o.weights.string(),
             to_open_clip(item.key(), false).first, c10::str(it->second.sizes()),
             c10::str(item.value().sizes()));
      }
      item.value().copy_(it->second);
    }
  }
  const auto parameters = model.root->named_parameters();
  for (const auto& [name, tensor] : tensors.by_flame_name)  // e.g. an attentional pooler, layer scales
    if (!parameters.contains(name))
      fail("{}: {}", o.weights.string(), not_importable(to_open_clip(name, false).first));
  json checkpoint_config = model_config_json(model);
  checkpoint_config["text_stores"] = imported_text_stores(o, config, shape.text_dim);
  checkpoint_config["imported_from"] = {{"weights", fs::absolute(o.weights).string()},
                                        {"config", fs::absolute(config_path).string()},
                                        {"unused_text_tensors", tensors.text_tower_tensors},
                                        {"unused_visual_proj", tensors.has_visual_proj}};
  if (o.overwrite) fs::remove_all(o.run_dir / "checkpoints");
  torch::optim::AdamW optimizer(model.root->parameters());
  if (tensors.text_tower_tensors > 0)
    spdlog::info("{}: {} text.* tensors not imported (the frozen LLM is read from --llm)", o.weights.string(),
                 tensors.text_tower_tensors);
  return save_checkpoint(o.run_dir, 0, *model.root, optimizer, {checkpoint_config, {{"step", 0}}}, 1);
}

}  // namespace flame::train
