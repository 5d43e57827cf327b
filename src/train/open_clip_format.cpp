#include "train/open_clip_format.h"

#include <spdlog/spdlog.h>

#include <cmath>
#include <functional>
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
#include "train/open_clip_config.h"
#include "train/text_provenance.h"
#include "train/trained_model.h"
#include "util/error.h"
#include "util/file.h"
#include "util/hash.h"
#include "util/json_fields.h"
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

// An output folder as an absolute path without a trailing separator ("out/"
// and "." name the folder itself), so its temp sibling is beside it.
fs::path folder_path(const fs::path& dir) {
  fs::path p = fs::absolute(dir).lexically_normal();
  if (p.filename().empty() && p.has_parent_path()) p = p.parent_path();
  return p;
}

// Whether `path` exists; a symlink loop or an unreadable parent is an error
// naming it (fs::exists would throw a filesystem_error, "internal error").
bool path_exists(const fs::path& path) {
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  if (ec && ec != std::errc::no_such_file_or_directory && ec != std::errc::not_a_directory)
    fail("cannot read '{}': {}", path.string(), ec.message());
  return fs::exists(status);
}

// An input file that must be there, a regular file and not empty.
void require_input_file(const fs::path& path, const std::string& what) {
  if (!path_exists(path)) fail("no such file: {} ({})", path.string(), what);
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) fail("{} ({}) is not a regular file", path.string(), what);
  if (fs::file_size(path, ec) == 0) fail("{} ({}) is empty", path.string(), what);
}

// A temp name an interrupted write of one of `owned` leaves inside the
// folder: ".NAME.tmp..." (temp_path_for, save_checkpoint's staging).
bool is_owned_temp(const std::string& name, const std::set<std::string>& owned) {
  for (const std::string& o : owned)
    if (starts_with(name, "." + o + ".tmp")) return true;
  return false;
}

// Removes what an interrupted write of `target` left: its staged siblings
// (".NAME.tmp.PID.X", temp_path_for) and, inside it, the temp entries of the
// `owned` names (nothing else of the user's). Called with the target's lock
// held, so no live writer owns them.
void remove_interrupted_writes(const fs::path& target, const std::set<std::string>& owned) {
  const std::set<std::string> siblings = {target.filename().string()};
  std::error_code ec;
  for (const fs::path& dir : {target.parent_path(), target}) {
    if (!fs::is_directory(dir, ec)) continue;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      const std::string name = entry.path().filename().string();
      if (is_owned_temp(name, dir == target ? owned : siblings)) {
        spdlog::info("removing '{}', left by an interrupted write", entry.path().string());
        fs::remove_all(entry.path(), ec);
      }
    }
  }
}

// Whether `dir` may be replaced as a whole: absent, or a real folder (not a
// symlink: swapping would replace the link) holding only `owned` entries and
// temp leftovers. A folder holding anything else is updated in place, so the
// user's other files stay.
bool replaceable_as_whole(const fs::path& dir, const std::set<std::string>& owned) {
  std::error_code ec;
  const fs::file_status status = fs::symlink_status(dir, ec);
  if (!fs::exists(status)) return true;
  if (fs::is_symlink(status) || !fs::is_directory(status)) return false;
  if (fs::equivalent(dir, fs::current_path(), ec))
    return false;  // a shell there would sit in a deleted folder
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (!owned.count(name) && !is_owned_temp(name, owned)) return false;
  }
  return true;
}

// Builds a folder with `write` in a sibling temp folder, then puts it at
// `target` as a whole: a kill leaves the old folder or the new one.
void write_folder_whole(const fs::path& target, const std::function<void(const fs::path&)>& write) {
  const fs::path staged = temp_path_for(target);
  fs::create_directories(staged);
  try {
    write(staged);
  } catch (...) {
    std::error_code ignored;
    fs::remove_all(staged, ignored);
    throw;
  }
  replace_dir_durable(staged, target);
}

void refuse_existing(const fs::path& path, bool overwrite) {
  if (path_exists(path) && !overwrite) fail("{} exists: pass --overwrite to replace it", path.string());
}

// A non-finite weight would export (or import) a model that computes NaN.
void require_finite(const torch::Tensor& t, const std::string& name, const fs::path& file) {
  const int64_t bad = t.numel() - torch::isfinite(t).sum().item<int64_t>();
  if (bad > 0) fail("{}: tensor '{}' holds {} non-finite values (NaN or inf)", file.string(), name, bad);
}

// The export's two files, written into `dir`.
int64_t write_export_files(const fs::path& dir, const TrainedModel& model, const json& config,
                           const fs::path& checkpoint) {
  const bool sigmoid = trained_with_sigmoid_loss(config);
  SafetensorsWriter writer;
  bool has_logit_bias = false;
  int64_t tensors = 0;
  for (const auto& item : model.root->named_parameters()) {
    if (ends_with(item.key(), "logit_bias") && !sigmoid) continue;  // OpenCLIP has one for SigLIP only
    const auto [name, transpose] = to_open_clip(item.key(), model.is_clip());
    has_logit_bias = has_logit_bias || name == "logit_bias";
    torch::Tensor t = item.value().detach().to(torch::kFloat32);
    require_finite(t, item.key(), checkpoint);
    llm::add_tensor(writer, name, (transpose ? t.t() : t).contiguous());
    ++tensors;
  }
  writer.set_metadata({{"format", "pt"}});
  writer.write(dir / kOpenClipWeightsFile);

  // The weights' hash ties the pair: import refuses a config beside weights
  // it was not written with.
  json flame = {{"format", "flame-open-clip-export"},
                {"version", 1},
                {"model", model_config_json(model)},
                {"source_checkpoint", fs::absolute(checkpoint).string()},
                {"weights_sha256", sha256_file_hex(dir / kOpenClipWeightsFile)}};
  if (config.contains("text_stores")) flame["text_stores"] = config["text_stores"];
  if (model.is_clip()) flame["tokenizer"] = model.text->config().tokenizer;
  write_json_file_atomic(dir / kOpenClipConfigFile,
                         {{"model_cfg", open_clip_model_config(model, has_logit_bias)},
                          {"preprocess_cfg", preprocess_config(model.image->config().image_size)},
                          {"flame", flame}});
  return tensors;
}

}  // namespace

OpenClipExport export_open_clip(const fs::path& run, const fs::path& out_dir, bool overwrite) {
  path_exists(run);  // a symlink loop is named here, not as a filesystem error
  const fs::path checkpoint = resolve_checkpoint(run);
  const json config = read_json_file(checkpoint / "config.json");
  const TrainedModel model = load_trained_model(checkpoint);
  OpenClipExport out{out_dir / kOpenClipWeightsFile, out_dir / kOpenClipConfigFile, 0};
  const fs::path target = folder_path(out_dir);
  if (path_exists(target) && !fs::is_directory(target))
    fail("{} exists and is not a folder: name a folder for the export", out_dir.string());
  // One writer: the lock is a sibling file, as the folder itself is swapped;
  // beside the folder a symlink names, so the link and the folder share it.
  std::error_code ec;
  fs::path real = fs::weakly_canonical(target, ec);
  if (ec) real = target;
  const DirectoryLock lock(real.parent_path(), "the export folder " + real.string(),
                           "." + real.filename().string() + ".lock");
  refuse_existing(out.weights, overwrite);
  refuse_existing(out.config, overwrite);
  const std::set<std::string> owned = {kOpenClipWeightsFile, kOpenClipConfigFile};
  remove_interrupted_writes(target, owned);
  if (replaceable_as_whole(target, owned)) {
    write_folder_whole(target, [&](const fs::path& dir) {
      out.tensors = write_export_files(dir, model, config, checkpoint);
    });
    return out;
  }
  // A folder holding other files too: they stay. The old config goes first,
  // so a kill leaves weights without a config (refused), never a mixed pair.
  if (!fs::remove(target / kOpenClipConfigFile, ec) && ec)
    fail("cannot remove '{}': {}", (target / kOpenClipConfigFile).string(), ec.message());
  out.tensors = write_export_files(target, model, config, checkpoint);
  return out;
}

namespace {

// Where import's inputs are, for messages: config errors name the config
// file, tensor errors the weights.
struct ImportFiles {
  fs::path weights, config;
};

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

bool is_float_dtype(DType d) {
  return d == DType::F16 || d == DType::BF16 || d == DType::F32 || d == DType::F64 || d == DType::F8_E4M3 ||
         d == DType::F8_E5M2;
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
    // An integer or bool tensor is a broken or foreign file (the checkpoint
    // loader refuses the same), not something to read as 0/1 floats.
    if (!is_float_dtype(info.dtype)) {
      fail("{}: tensor '{}' is stored as {}; weights must be a float dtype (F32, F16, BF16)", path.string(),
           name, dtype_name(info.dtype));
    }
    // One copy out of the map, converted to fp32 on the way.
    torch::Tensor t =
        llm::mapped_tensor(file, info).to(torch::kFloat32, /*non_blocking=*/false, /*copy=*/true);
    require_finite(t, name, path);
    out.by_flame_name[mapped->first] = std::move(t);
  }
  return out;
}

const torch::Tensor& tensor_at(const ImportedTensors& t, const std::string& name, const fs::path& path,
                               int64_t rank = -1) {
  const auto it = t.by_flame_name.find(name);
  if (it == t.by_flame_name.end()) {
    fail("{}: lacks tensor '{}'", path.string(), to_open_clip(name, false).first);
  }
  const torch::Tensor& v = it->second;
  if (rank >= 0 && (v.dim() != rank || v.numel() == 0)) {
    fail("{}: tensor '{}' has shape {}, not a non-empty {}-D tensor", path.string(),
         to_open_clip(name, false).first, c10::str(v.sizes()), rank);
  }
  return v;
}

// A config value that restates a shape the tensors fix: a positive integer
// that must agree with them (absent: not checked).
void check_config_shape(const json& section, const char* key, const std::string& where, int64_t from_tensors,
                        const ImportFiles& f) {
  if (!section.contains(key)) return;
  const std::string source = fmt::format("{}: {}", f.config.string(), where);
  const int64_t value = json_int(section, key, source, false, 0);
  require_positive(value, key, source);
  if (value != from_tensors) {
    fail("{}: field '{}' is {}, but the weights' tensors say {}", source, key, value, from_tensors);
  }
}

// The ViT shapes, read off the tensors (as OpenCLIP's
// build_model_from_openai_state_dict does) plus what only the config says.
vision::VitConfig vit_from_tensors(const ImportedTensors& t, const json& model_cfg, const std::string& prefix,
                                   const ImportFiles& f) {
  const std::string where = prefix + "vision_cfg";
  const json vision_cfg = open_clip_config_section(model_cfg, "vision_cfg", f.config, where);
  const torch::Tensor& conv = tensor_at(t, "vit.conv1.weight", f.weights, 4);
  const torch::Tensor& pos = tensor_at(t, "vit.positional_embedding", f.weights, 2);
  vision::VitConfig v;
  v.name = f.weights.stem().string();
  v.width = conv.size(0);
  v.patch_size = conv.size(3);
  const auto grid = static_cast<int64_t>(std::lround(std::sqrt(static_cast<double>(pos.size(0) - 1))));
  if (grid < 1 || grid * grid + 1 != pos.size(0)) {
    fail("{}: tensor 'visual.positional_embedding' has {} rows, not a square grid of patches + 1",
         f.weights.string(), pos.size(0));
  }
  v.image_size = grid * v.patch_size;
  v.layers = 0;
  while (t.by_flame_name.count(fmt::format("vit.transformer.resblocks.{}.attn.in_proj_weight", v.layers)))
    ++v.layers;
  // A block with other tensors but no in_proj_weight is a missing tensor, not a shallower model.
  const std::string next_block = fmt::format("vit.transformer.resblocks.{}.", v.layers);
  const auto after = t.by_flame_name.lower_bound(next_block);
  if (after != t.by_flame_name.end() && starts_with(after->first, next_block)) {
    fail("{}: lacks tensor '{}' (block {} has other tensors)", f.weights.string(),
         to_open_clip(next_block + "attn.in_proj_weight", false).first, v.layers);
  }
  const std::string source = fmt::format("{}: {}", f.config.string(), where);
  const int64_t head_width = json_int(vision_cfg, "head_width", source, false, 64);
  if (head_width <= 0 || v.width % head_width != 0)
    fail("{}: field 'head_width' {} does not divide the width {}", source, head_width, v.width);
  v.heads = v.width / head_width;
  v.mlp_ratio =
      static_cast<double>(tensor_at(t, "vit.transformer.resblocks.0.mlp.c_fc.weight", f.weights, 2).size(0)) /
      static_cast<double>(v.width);
  const json pool = vision_cfg.value("pool_type", json("tok"));
  if (!pool.is_string() || (pool != "avg" && pool != "tok"))
    fail("{}: field 'pool_type' {} is not \"avg\" or \"tok\"", source, pool.dump());
  v.pool = pool == "avg" ? "avg" : "cls";
  check_config_shape(vision_cfg, "width", where, v.width, f);
  check_config_shape(vision_cfg, "patch_size", where, v.patch_size, f);
  check_config_shape(vision_cfg, "layers", where, v.layers, f);
  if (!vision_cfg.contains("image_size") || !vision_cfg["image_size"].is_array()) {
    check_config_shape(vision_cfg, "image_size", where, v.image_size, f);
  } else {  // OpenCLIP also takes [H, W]
    for (const json& side : vision_cfg["image_size"])
      check_config_shape({{"image_size", side}}, "image_size", where, v.image_size, f);
  }
  return v;
}

// The released layout's shapes, read off the tensors and checked against
// the config's model_cfg.
ModelConfig released_shape(const ImportedTensors& t, const json& config, const ImportFiles& f) {
  const bool wrapped = config.contains("model_cfg");
  const std::string prefix = wrapped ? "model_cfg." : "";
  const json model_cfg =
      wrapped ? open_clip_config_section(config, "model_cfg", f.config, "model_cfg") : config;
  const std::string where = prefix + "mm_cfg";
  const json mm_cfg = open_clip_config_section(model_cfg, "mm_cfg", f.config, where);
  const int64_t depth = json_int(mm_cfg, "mlp_depth", f.config.string() + ": " + where, false, 2);
  if (depth != 2) {
    fail("{}: {}.mlp_depth {}: FLAME's projector has two linear layers (mm.0, GELU, mm.2, LayerNorm mm.3)",
         f.config.string(), where, depth);
  }
  ModelConfig shape;
  shape.vit = vit_from_tensors(t, model_cfg, prefix, f);
  shape.vit.projector_hidden = tensor_at(t, "projector.fc1.weight", f.weights, 2).size(0);
  shape.vit.ln_post = false;  // the released encode_image projects the last block's output
  shape.text_dim = tensor_at(t, "projector.fc2.weight", f.weights, 2).size(0);
  check_config_shape(mm_cfg, "width", where, shape.vit.width, f);
  check_config_shape(mm_cfg, "projector_dim", where, shape.text_dim, f);
  return shape;
}

// The model's shapes: flame's own record when the config has one (an export
// of flame's, read as a checkpoint's config is), else read off the tensors.
ModelConfig imported_shape(const ImportedTensors& t, const json& config, const ImportFiles& f) {
  if (!config.contains("flame")) return released_shape(t, config, f);
  const json flame = open_clip_config_section(config, "flame", f.config, "flame");
  if (!flame.contains("model")) fail("{}: the 'flame' section has no 'model'", f.config.string());
  ModelConfig shape = model_config_from_json(flame["model"], f.config.string() + ": flame.model");
  if (shape.tower != TextTower::kLlm) fail("{}: only FLAME models can be imported", f.config.string());
  return shape;
}

// hidden_state_index, with the range error naming where the layer came from.
int64_t layer_index(int64_t layer, int64_t num_layers, const std::string& from) {
  if (layer < -(num_layers + 1) || layer > num_layers) {
    fail("{}: layer {} is out of range for an LLM of {} layers: 0..{} or -{}..-1", from, layer, num_layers,
         num_layers, num_layers + 1);
  }
  return llm::hidden_state_index(layer, num_layers);
}

// An export of flame's records its text side: what the user names must agree
// with it (the model was trained on exactly that), else it is refused.
void check_against_record(const OpenClipImportOptions& o, const TextProvenance& recorded,
                          const ImportFiles& f) {
  const std::string record = f.config.string() + " (flame.text_stores)";
  std::optional<llm::LlmConfig> llm_config;
  if (!o.llm.empty()) {
    llm_config = llm::load_llm_config(o.llm);
    const std::string mismatch = check_llm(recorded, o.llm, /*allow_mismatch=*/true, f.config.string());
    if (!mismatch.empty())
      fail("{}; leave out --llm to keep the LLM the export records in {}", mismatch, record);
  }
  if (!o.layer.empty()) {
    const int64_t layer = parse_open_clip_layer(o.layer, "--layer");
    if (layer < 0 && !llm_config)
      fail("--layer {} counts from the end: pass --llm too, or the layer as {} numbers it", o.layer, record);
    const int64_t index = llm_config ? layer_index(layer, llm_config->num_hidden_layers, "--layer") : layer;
    for (size_t i = 0; i < recorded.stores.size(); ++i) {
      if (recorded.stores[i].layer != index) {
        fail(
            "--layer {} is hidden_states[{}], but {} records layer {} (text_stores[{}].layer), the one the "
            "model was trained on: leave out --layer",
            o.layer, index, record, recorded.stores[i].layer, i);
      }
    }
  }
  if (!o.facet_positions.empty()) {
    for (size_t i = 0; i < recorded.stores.size(); ++i) {
      if (recorded.stores[i].facet_positions != o.facet_positions) {
        fail(
            "--facet-positions {} disagrees with {}: text_stores[{}].facet_positions is {}, what the model "
            "was trained on; leave out --facet-positions",
            o.facet_positions, record, i, recorded.stores[i].facet_positions);
      }
    }
  }
}

// The text side to record: flame's own (an export; what the user names is
// checked against it), else the LLM given, at the layer and facet positions
// the model's features used, with the prompt sets its texts were made with
// (a release: release-long and release-raw).
json imported_text_stores(const OpenClipImportOptions& o, const json& config, const ImportFiles& f,
                          int64_t text_dim) {
  const bool flame_export = config.contains("flame");
  if (flame_export && config["flame"].contains("text_stores")) {
    const TextProvenance recorded = read_text_provenance(config["flame"], f.config.string() + ": flame");
    check_against_record(o, recorded, f);
    return config["flame"]["text_stores"];
  }
  if (o.llm.empty()) {
    fail("{}: name the LLM the model was trained against (--llm), so eval and interpret can check it",
         f.weights.string());
  }
  const llm::LlmConfig llm_config = llm::load_llm_config(o.llm);
  if (llm_config.hidden_size != text_dim) {
    fail("{} maps images into {} dimensions but the LLM in {} has hidden size {}", f.weights.string(),
         text_dim, o.llm.string(), llm_config.hidden_size);
  }
  std::string from = "--layer";
  std::string layer = o.layer;
  if (layer.empty()) layer = open_clip_config_layer(config, f.config, &from).value_or("-2");
  const int64_t index = layer_index(parse_open_clip_layer(layer, from), llm_config.num_hidden_layers, from);
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

// An export records its weights' SHA-256: weights from another export beside
// this config (a copy gone wrong, an export killed before it was whole) are
// refused. Exports from before the record are not checked.
void check_weights_belong(const json& config, const ImportFiles& f) {
  if (!config.contains("flame") || !config["flame"].is_object() ||
      !config["flame"].contains("weights_sha256"))
    return;
  const json& recorded = config["flame"]["weights_sha256"];
  if (!recorded.is_string())
    fail("{}: flame.weights_sha256 must be a string, got {}", f.config.string(), recorded.dump());
  const std::string actual = sha256_file_hex(f.weights);
  if (actual != recorded.get<std::string>()) {
    fail(
        "{} is not the weights file {} was written with: its SHA-256 is {}, flame.weights_sha256 records {} "
        "(export the model again, or pass its own config with --config)",
        f.weights.string(), f.config.string(), actual, recorded.get<std::string>());
  }
}

// The imported model with the weights of the file, every tensor checked.
TrainedModel imported_model(const ImportedTensors& tensors, const ModelConfig& shape,
                            const fs::path& weights) {
  TrainedModel model = make_flame_model(shape.vit, shape.text_dim);
  torch::NoGradGuard no_grad;
  for (auto& item : model.root->named_parameters()) {
    const auto it = tensors.by_flame_name.find(item.key());
    if (it == tensors.by_flame_name.end()) {
      if (item.key() == "logit_bias") continue;  // no sigmoid loss: keep the initial bias
      fail("{}: lacks tensor '{}'", weights.string(), to_open_clip(item.key(), false).first);
    }
    if (it->second.sizes() != item.value().sizes()) {
      fail("{}: tensor '{}' has shape {}, a model of this config expects {}", weights.string(),
           to_open_clip(item.key(), false).first, c10::str(it->second.sizes()),
           c10::str(item.value().sizes()));
    }
    item.value().copy_(it->second);
  }
  const auto parameters = model.root->named_parameters();
  for (const auto& [name, tensor] : tensors.by_flame_name)  // e.g. an attentional pooler, layer scales
    if (!parameters.contains(name))
      fail("{}: {}", weights.string(), not_importable(to_open_clip(name, false).first));
  return model;
}

bool holds_run(const fs::path& dir) {
  for (const char* name : {"checkpoints", "train-log.jsonl", "summary.json"})
    if (path_exists(dir / name)) return true;
  return false;
}

// Puts a run holding only `write`'s checkpoint at run_dir, under the lock
// flame train takes, so neither writes while the other does. The old run
// (checkpoints, log, summary) is gone as a whole: the folder is swapped for
// one built beside it; a folder holding the user's other files keeps them
// and gets its checkpoints swapped, the old log and summary removed first.
fs::path write_run(const OpenClipImportOptions& o, const std::function<fs::path(const fs::path&)>& write) {
  const fs::path run_dir = folder_path(o.run_dir);
  const DirectoryLock lock(run_dir, "the run folder");
  if (holds_run(run_dir) && !o.overwrite)
    fail("{} already holds a run (checkpoints/, train-log.jsonl): pass --overwrite to replace it",
         o.run_dir.string());
  const std::set<std::string> owned = {"checkpoints", "train-log.jsonl", "summary.json", ".lock"};
  remove_interrupted_writes(run_dir, owned);
  fs::path checkpoint;
  if (replaceable_as_whole(run_dir, owned)) {
    write_folder_whole(run_dir, [&](const fs::path& dir) { checkpoint = write(dir); });
  } else {
    const fs::path staged = temp_path_for(run_dir / "checkpoints");  // ".checkpoints.tmp...": cleaned if left
    try {
      checkpoint = write(staged);
    } catch (...) {
      std::error_code ignored;
      fs::remove_all(staged, ignored);
      throw;
    }
    for (const char* name : {"train-log.jsonl", "summary.json"}) fs::remove(run_dir / name);
    replace_dir_durable(staged / "checkpoints", run_dir / "checkpoints");
    fs::remove_all(staged);
  }
  return o.run_dir / "checkpoints" / checkpoint.filename();
}

}  // namespace

fs::path import_open_clip(const OpenClipImportOptions& o) {
  const ImportFiles f{o.weights, o.config.empty() ? o.weights.parent_path() / kOpenClipConfigFile : o.config};
  require_input_file(o.weights, "the weights");
  if (!path_exists(f.config))
    fail("no model config {}: pass the model's config JSON (--config)", f.config.string());
  require_input_file(f.config, "the model config");
  const json config = read_json_file(f.config);
  check_open_clip_config(config, f.config);  // config errors first, naming the config
  if (path_exists(o.run_dir) && !fs::is_directory(o.run_dir))
    fail("{} exists and is not a folder: name a folder for the run", o.run_dir.string());
  if (holds_run(o.run_dir) &&
      !o.overwrite)  // early, before reading the weights; checked again under the lock
    fail("{} already holds a run (checkpoints/, train-log.jsonl): pass --overwrite to replace it",
         o.run_dir.string());
  check_weights_belong(config, f);
  const ImportedTensors tensors = read_open_clip_tensors(o.weights);
  const ModelConfig shape = imported_shape(tensors, config, f);
  TrainedModel model = imported_model(tensors, shape, o.weights);
  json checkpoint_config = model_config_json(model);
  checkpoint_config["text_stores"] = imported_text_stores(o, config, f, shape.text_dim);
  checkpoint_config["imported_from"] = {{"weights", fs::absolute(o.weights).string()},
                                        {"config", fs::absolute(f.config).string()},
                                        {"unused_text_tensors", tensors.text_tower_tensors},
                                        {"unused_visual_proj", tensors.has_visual_proj}};
  if (tensors.text_tower_tensors > 0)
    spdlog::info("{}: {} text.* tensors not imported (the frozen LLM is read from --llm)", o.weights.string(),
                 tensors.text_tower_tensors);
  torch::optim::AdamW optimizer(model.root->parameters());
  return write_run(o, [&](const fs::path& dir) {
    return save_checkpoint(dir, 0, *model.root, optimizer, {checkpoint_config, {{"step", 0}}}, 1);
  });
}

}  // namespace flame::train
