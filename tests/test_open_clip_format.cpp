// OpenCLIP interop, checked against PyPI's open_clip_torch itself
// (tests/python/open_clip_oracle.py, run with the .venv python): a CLIP
// baseline export loads with open_clip.create_model("local-dir:EXPORT") and a
// FLAME export into OpenCLIP's VisionTransformer + the released projector,
// both strict=True, and give flame's image (and text) features; OpenCLIP's
// eval transform of the export's preprocess_cfg gives flame's pixels. The
// released FLAME layout imports into a run whose features equal OpenCLIP's,
// with the text side recorded; bad files are refused naming the tensor or field.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdio>

#include "data/image_decode.h"
#include "data/image_transform.h"
#include "llm/checkpoint_identity.h"
#include "llm/config.h"
#include "llm/tokenizer.h"
#include "llm/weights.h"
#include "test_helpers.h"
#include "text/clip_tokenize.h"
#include "text/prompts.h"
#include "train/checkpoint.h"
#include "train/open_clip_format.h"
#include "train/text_provenance.h"
#include "train/trained_model.h"
#include "util/error.h"
#include "util/file.h"
#include "util/hash.h"
#include "util/safetensors.h"
#include "vision/vit_config.h"

namespace flame::train {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using test::contains;
using test::error_of;

// Runs the OpenCLIP oracle; `image_list`: a file naming the images whose
// preprocessing is also compared (empty: none). Exit status 1: a difference
// above 1e-5 (features) or 0.05 (pixels), or a control that was not rejected.
test::CommandResult open_clip_oracle(const fs::path& weights, const fs::path& config, const fs::path& inputs,
                                     const fs::path& image_list = {}) {
  const fs::path script = test::test_data_dir().parent_path() / "python" / "open_clip_oracle.py";
  return test::run_command(fmt::format(FLAME_PYTHON " {} {} {} {} {} 2>&1", script.string(), weights.string(),
                                       config.string(), inputs.string(),
                                       image_list.empty() ? "" : "--images=" + image_list.string()));
}

// Four Flickr8k JPEGs, and a file naming them (for the oracle's preprocessing).
std::vector<fs::path> real_image_files(const fs::path& list) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(test::shared_dir() / "data" / "flickr8k" / "images"))
    files.push_back(e.path());
  std::sort(files.begin(), files.end());
  files.resize(4);
  std::string lines;
  for (const auto& f : files) lines += f.string() + "\n";
  write_file_atomic(list, lines);
  return files;
}

// The four images preprocessed as eval does: [4, 3, S, S].
torch::Tensor real_images(int64_t size, const fs::path& list) {
  data::ImageTransformOptions t;
  t.size = size;
  std::vector<torch::Tensor> images;
  for (const fs::path& f : real_image_files(list))
    images.push_back(data::transform_image(data::decode_image(read_file(f), f.string()), t, 0));
  return torch::stack(images);
}

// The model's features with one parameter scaled by 1.01: a control the
// oracle must reject (a wrong norm or bias must show above its tolerance).
torch::Tensor features_with_scaled(TrainedModel& model, const std::string& name,
                                   const torch::Tensor& images) {
  torch::NoGradGuard no_grad;
  torch::Tensor p = model.root->named_parameters()[name];
  const torch::Tensor saved = p.clone();
  p.mul_(1.01);
  const torch::Tensor out = model.image->encode(images).pooled;
  p.copy_(saved);
  return out;
}

// Random weights moved off their initial values (LayerNorms are ones and
// zeros at init: a wrong norm must show).
void perturb(torch::nn::Module& module, uint64_t seed) {
  torch::manual_seed(static_cast<int64_t>(seed));
  torch::NoGradGuard no_grad;
  for (auto& p : module.parameters()) p.add_(torch::randn_like(p) * 0.05);
}

json tiny_text_stores(const fs::path& llm) {
  text::StoreIdentity id;
  id.llm = llm::checkpoint_identity(llm).json;
  const text::PromptSet prompts = text::load_prompt_set("short");
  id.prompt_set_name = prompts.name;
  id.prompt_set_sha256 = prompts.sha256;
  for (const auto& f : prompts.facets) id.facets.push_back(f.name);
  id.layer = 2;
  id.num_facets = prompts.num_facets();
  id.dim = 64;
  id.normalized = true;
  return text_provenance_json({id});
}

fs::path save_run(const fs::path& dir, const TrainedModel& model, const std::string& loss,
                  const json& stores) {
  torch::optim::AdamW optimizer(model.root->parameters());
  json config = model_config_json(model);
  config["train"] = {{"loss", loss}};
  if (!stores.is_null()) config["text_stores"] = stores;
  save_checkpoint(dir, 7, *model.root, optimizer, {config, {{"step", 7}}}, 1);
  return dir;
}

void write_tensors(const fs::path& path, const std::map<std::string, torch::Tensor>& tensors) {
  SafetensorsWriter writer;
  for (const auto& [name, t] : tensors) llm::add_tensor(writer, name, t.contiguous());
  writer.write(path);
}

TEST(OpenClipFormat, FlameExportReproducesFlameFeaturesInOpenClip) {
  const fs::path dir = test::fresh_temp_dir();
  const fs::path llm = test::tiny_checkpoint("llama", "f32");
  torch::manual_seed(1);
  TrainedModel model = make_flame_model(vision::load_vit_config("vit-micro-32"), 64);
  perturb(*model.root, 2);
  save_run(dir / "run", model, "sigmoid", tiny_text_stores(llm));

  const OpenClipExport e = export_open_clip(dir / "run", dir / "export");
  const SafetensorsFile weights(e.weights);
  for (const char* name : {"visual.conv1.weight", "visual.class_embedding", "visual.positional_embedding",
                           "visual.ln_pre.weight", "visual.transformer.resblocks.1.attn.in_proj_weight",
                           "visual.transformer.resblocks.0.mlp.c_fc.bias", "visual.ln_post.bias",
                           "mm.0.weight", "mm.2.bias", "mm.3.weight", "logit_scale", "logit_bias"})
    EXPECT_TRUE(weights.contains(name)) << name;
  EXPECT_EQ(static_cast<int64_t>(weights.tensors().size()), e.tensors);
  const json config = read_json_file(e.config);
  EXPECT_EQ(config["model_cfg"]["vision_cfg"]["head_width"], 32);
  EXPECT_EQ(config["model_cfg"]["mm_cfg"]["projector_dim"], 64);
  EXPECT_EQ(config["preprocess_cfg"]["size"], 32);
  EXPECT_TRUE(contains(error_of([&] { export_open_clip(dir / "run", dir / "export"); }), "--overwrite"));

  torch::NoGradGuard no_grad;
  model.root->eval();
  const torch::Tensor images = real_images(32, dir / "images.txt");
  write_tensors(dir / "inputs.safetensors",
                {{"images", images},
                 {"image_features", model.image->encode(images).pooled},
                 {"control_image_features", features_with_scaled(model, "vit.ln_post.weight", images)}});
  const test::CommandResult r =
      open_clip_oracle(e.weights, e.config, dir / "inputs.safetensors", dir / "images.txt");
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "tensors=39 loaded strict=True") && contains(r.output, "control_rejected"))
      << r.output;
  std::printf("flame export vs OpenCLIP 3.3.0 (fp32): %s", r.output.c_str());

  // Imported back, the export is the same model with the same text side.
  OpenClipImportOptions o;
  o.weights = e.weights;
  o.run_dir = dir / "imported";
  import_open_clip(o);
  TrainedModel back = load_trained_model(dir / "imported");
  EXPECT_TRUE(torch::equal(back.image->encode(images).pooled, model.image->encode(images).pooled));
  EXPECT_EQ(read_text_provenance(read_json_file(resolve_checkpoint(dir / "imported") / "config.json"), "x")
                .stores.front()
                .layer,
            2);
  EXPECT_TRUE(contains(error_of([&] { import_open_clip(o); }), "--overwrite"));
}

// open_clip.create_model("local-dir:EXPORT") builds OpenCLIP's CLIP class from
// the export and loads it strict=True, for both losses (a sigmoid run's
// logit_bias needs model_cfg.init_logit_bias); its encode_text, fed flame's
// token ids (full context, EOS at each caption's end, padding after), pools
// where flame does because text_cfg says "eos" pooling at the tokenizer's EOS.
TEST(OpenClipFormat, ClipBaselineExportLoadsInOpenClipWithBothTowers) {
  const fs::path dir = test::fresh_temp_dir();
  const text::ClipTextConfig text_config = text::load_clip_text_config("clip-text-micro");
  const int32_t eos = *llm::Tokenizer::load(text_config.tokenizer_path())->eos_id();
  for (const std::string loss : {"infonce", "sigmoid"}) {
    SCOPED_TRACE(loss);
    fs::create_directories(dir / loss);
    torch::manual_seed(4);
    TrainedModel model = make_clip_model(vision::load_vit_config("vit-micro-32"), text_config, 300);
    perturb(*model.root, 5);
    save_run(dir / loss / "run", model, loss, nullptr);
    const OpenClipExport e = export_open_clip(dir / loss / "run", dir / loss / "export");
    const SafetensorsFile weights(e.weights);
    for (const char* name : {"visual.proj", "token_embedding.weight", "positional_embedding",
                             "transformer.resblocks.1.attn.out_proj.weight", "ln_final.weight",
                             "text_projection", "logit_scale"})
      EXPECT_TRUE(weights.contains(name)) << name;
    EXPECT_EQ(weights.contains("logit_bias"), loss == "sigmoid");  // OpenCLIP's CLIP has one for SigLIP only
    const json config = read_json_file(e.config);
    EXPECT_EQ(config["model_cfg"]["text_cfg"]["pool_type"], "eos");
    EXPECT_EQ(config["model_cfg"]["text_cfg"]["eos_id"], eos);
    EXPECT_EQ(config["model_cfg"].contains("init_logit_bias"), loss == "sigmoid");

    torch::NoGradGuard no_grad;
    model.root->eval();
    const torch::Tensor images = real_images(32, dir / loss / "images.txt");
    // Token ids as flame's clip_tokenize lays them out: the caption's tokens
    // (none is the EOS), EOS, then padding; the tower pools at the EOS.
    const int64_t context = text_config.context_length;
    torch::Tensor ids = torch::randint(1, 300, {3, context}, torch::kInt64);
    ids.masked_fill_(ids == eos, 1);
    const torch::Tensor eot = torch::tensor({int64_t{11}, int64_t{5}, context - 1}, torch::kInt64);
    for (int64_t row = 0; row < 3; ++row) {
      const int64_t at = eot[row].item<int64_t>();
      ids.index_put_({row, at}, eos);
      if (at + 1 < context) ids[row].slice(0, at + 1).fill_(7);
    }
    write_tensors(dir / loss / "inputs.safetensors",
                  {{"images", images},
                   {"image_features", model.image->encode(images).pooled},
                   {"control_image_features", features_with_scaled(model, "image.vit.ln_post.bias", images)},
                   {"text_ids", ids},
                   {"text_features", model.text(ids, eot)}});
    const test::CommandResult r =
        open_clip_oracle(e.weights, e.config, dir / loss / "inputs.safetensors", dir / loss / "images.txt");
    EXPECT_EQ(r.status, 0) << r.output;
    EXPECT_TRUE(contains(r.output, "(CLIP, text pool eos)") && contains(r.output, "control_rejected"))
        << r.output;
    std::printf("CLIP baseline export (%s) vs OpenCLIP 3.3.0 (fp32): %s", loss.c_str(), r.output.c_str());
  }
}

// The released layout: visual.* with its unused visual.proj, mm.0/2/3, the
// LLM's own tensors under text.*, a bare model config; features are the
// projector on the last block's output (no ln_post), pooled over patches.
json released_config() {
  return {{"embed_dim", 512},
          {"vision_cfg",
           {{"image_size", 32},
            {"layers", 2},
            {"width", 64},
            {"patch_size", 8},
            {"head_width", 32},
            {"pool_type", "avg"}}},
          {"mm_cfg", {{"mm_projector", true}, {"width", 64}, {"mlp_depth", 2}, {"projector_dim", 64}}},
          {"text_cfg", {{"llm_model_name", "tiny"}, {"layer", "2"}, {"embedding_method", "multiprompteol"}}},
          {"custom_text", true}};
}

std::map<std::string, torch::Tensor> released_tensors() {
  torch::manual_seed(6);
  TrainedModel model = make_flame_model(vision::load_vit_config("vit-micro-32"), 64);
  perturb(*model.root, 7);
  std::map<std::string, torch::Tensor> out;
  for (const auto& item : model.image->vit->named_parameters())
    out["visual." + item.key()] = item.value().detach().clone();
  out["visual.proj"] = torch::randn({64, 512});
  out["mm.0.weight"] = model.image->projector->fc1->weight.detach().clone();
  out["mm.0.bias"] = model.image->projector->fc1->bias.detach().clone();
  out["mm.2.weight"] = model.image->projector->fc2->weight.detach().clone();
  out["mm.2.bias"] = model.image->projector->fc2->bias.detach().clone();
  out["mm.3.weight"] = model.image->projector->norm->weight.detach().clone();
  out["mm.3.bias"] = model.image->projector->norm->bias.detach().clone();
  out["logit_scale"] = torch::tensor(4.6f);
  out["text.model.embed_tokens.weight"] = torch::randn({10, 64});
  return out;
}

TEST(OpenClipFormat, ImportsTheReleasedLayoutWithItsTextSide) {
  const fs::path dir = test::fresh_temp_dir();
  const fs::path llm = test::tiny_checkpoint("llama", "f32");
  write_tensors(dir / "flame.safetensors", released_tensors());
  write_json_file_atomic(dir / "FLAME-tiny.json", released_config());
  OpenClipImportOptions o;
  o.weights = dir / "flame.safetensors";
  o.config = dir / "FLAME-tiny.json";
  o.run_dir = dir / "run";
  EXPECT_TRUE(contains(error_of([&] { import_open_clip(o); }), "--llm"));
  o.llm = llm;
  import_open_clip(o);

  const json config = read_json_file(resolve_checkpoint(dir / "run") / "config.json");
  EXPECT_EQ(config["vit"]["ln_post"], false);
  const TextProvenance provenance = read_text_provenance(config, "imported");
  // The release's own templates, which eval then uses for "long" and "raw".
  ASSERT_EQ(provenance.stores.size(), 2u);
  EXPECT_EQ(prompt_set_for_role(provenance, "long"), "release-long");
  EXPECT_EQ(prompt_set_for_role(provenance, "raw"), "release-raw");
  EXPECT_EQ(store_for_prompts(provenance, "release-long")->layer, 2);
  EXPECT_EQ(store_for_prompts(provenance, "release-long")->num_facets, 7);
  EXPECT_EQ(store_for_prompts(provenance, "release-long")->facet_positions, "concatenated");
  EXPECT_TRUE(check_text_side(dir / "run", llm, false).warnings.empty());

  torch::NoGradGuard no_grad;
  TrainedModel model = load_trained_model(dir / "run");
  const torch::Tensor images = real_images(32, dir / "images.txt");
  // The release's features skip ln_post: its weights must not matter, the last block's must.
  write_tensors(dir / "inputs.safetensors",
                {{"images", images},
                 {"image_features", model.image->encode(images).pooled},
                 {"control_image_features",
                  features_with_scaled(model, "vit.transformer.resblocks.1.mlp.c_proj.bias", images)}});
  const test::CommandResult r = open_clip_oracle(o.weights, o.config, dir / "inputs.safetensors");
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "tensors=39 loaded strict=True") && contains(r.output, "control_rejected"))
      << r.output;
  std::printf("released layout imported vs OpenCLIP 3.3.0 (fp32): %s", r.output.c_str());
}

TEST(OpenClipFormat, ImportRefusesWhatItCannotLoadNamingIt) {
  const fs::path dir = test::fresh_temp_dir();
  const fs::path llm = test::tiny_checkpoint("llama", "f32");
  write_json_file_atomic(dir / "FLAME-tiny.json", released_config());
  int variant = 0;
  const auto refusal = [&](const std::function<void(std::map<std::string, torch::Tensor>&, json&)>& change) {
    auto tensors = released_tensors();
    json config = released_config();
    change(tensors, config);
    const fs::path file = dir / fmt::format("v{}.safetensors", variant);
    write_tensors(file, tensors);
    write_json_file_atomic(dir / fmt::format("v{}.json", variant), config);
    OpenClipImportOptions o;
    o.weights = file;
    o.config = dir / fmt::format("v{}.json", variant);
    o.run_dir = dir / fmt::format("run{}", variant++);
    o.llm = llm;
    return error_of([&] { import_open_clip(o); });
  };
  EXPECT_TRUE(
      contains(refusal([](auto& t, json&) { t.erase("mm.3.weight"); }), "lacks tensor 'mm.3.weight'"));
  EXPECT_TRUE(contains(refusal([](auto& t, json&) { t["visual.attn_pool.query"] = torch::zeros({4}); }),
                       "'visual.attn_pool.query' is not part of a FLAME model"));
  EXPECT_TRUE(contains(refusal([](auto& t, json&) { t["mm.4.weight"] = torch::zeros({4}); }),
                       "'mm.4.weight' is not part of a FLAME model"));
  EXPECT_TRUE(contains(refusal([](auto&, json& c) { c["mm_cfg"]["mlp_depth"] = 3; }), "mlp_depth 3"));
  EXPECT_TRUE(contains(refusal([](auto& t, json&) { t["mm.3.bias"] = torch::zeros({65}); }),
                       "tensor 'mm.3.bias' has shape [65]"));
  const std::string width = refusal([](auto& t, json& c) {
    for (const char* n : {"mm.2.weight", "mm.2.bias", "mm.3.weight", "mm.3.bias"}) {
      const torch::Tensor& old = t[n];
      t[n] = old.dim() == 2 ? torch::zeros({32, old.size(1)}) : torch::zeros({32});
    }
    c["mm_cfg"]["projector_dim"] = 32;
  });
  EXPECT_TRUE(contains(width, "maps images into 32 dimensions but the LLM")) << width;
  EXPECT_TRUE(contains(refusal([](auto&, json& c) { c["text_cfg"]["layer"] = "39_40"; }), "layer '39_40'"));
  EXPECT_TRUE(contains(refusal([](auto&, json& c) { c["text_cfg"]["layer"] = "39"; }), "out of range"));
}

// The released layout, changed by `change`, imported into dir/run<N>: the
// error ("" when it imports). The files are dir/v<N>.safetensors and .json.
std::string released_import_error(
    const fs::path& dir, const fs::path& llm, int variant,
    const std::function<void(std::map<std::string, torch::Tensor>&, json&)>& change) {
  auto tensors = released_tensors();
  json config = released_config();
  change(tensors, config);
  OpenClipImportOptions o;
  o.weights = dir / fmt::format("v{}.safetensors", variant);
  o.config = dir / fmt::format("v{}.json", variant);
  o.run_dir = dir / fmt::format("run{}", variant);
  o.llm = llm;
  write_tensors(o.weights, tensors);
  write_json_file_atomic(o.config, config);
  return error_of([&] { import_open_clip(o); });
}

// A flame export of a FLAME run trained against `llm` (text_stores at layer 2, separate positions).
OpenClipExport export_flame_run(const fs::path& dir, const fs::path& llm, uint64_t seed) {
  torch::manual_seed(static_cast<int64_t>(seed));
  TrainedModel model = make_flame_model(vision::load_vit_config("vit-micro-32"), 64);
  perturb(*model.root, seed + 1);
  save_run(dir / "run", model, "infonce", tiny_text_stores(llm));
  return export_open_clip(dir / "run", dir / "export");
}

// A flame export records its text side: --llm, --layer and --facet-positions
// given to its import must agree with it (the LLM compared by identity, not
// folder name), else the import is refused naming the field.
TEST(OpenClipFormat, ImportOfAFlameExportRefusesAnotherTextSide) {
  const fs::path dir = test::fresh_temp_dir();
  const fs::path llm = test::tiny_checkpoint("llama", "f32");
  const OpenClipExport e = export_flame_run(dir, llm, 1);
  OpenClipImportOptions o;
  o.weights = e.weights;
  o.run_dir = dir / "imported";
  o.llm = test::tiny_checkpoint("llama", "f32", 8);  // same shapes, other weights
  const std::string other_llm = error_of([&] { import_open_clip(o); });
  EXPECT_TRUE(contains(other_llm, "weights_fingerprint") && contains(other_llm, "flame.text_stores") &&
              contains(other_llm, "--llm"))
      << other_llm;
  EXPECT_FALSE(fs::exists(dir / "imported" / "checkpoints"));

  fs::copy(llm, dir / "llm-copy", fs::copy_options::recursive);  // the same LLM elsewhere
  o.llm = dir / "llm-copy";
  o.overwrite = true;
  EXPECT_EQ(error_of([&] { import_open_clip(o); }), "");
  const json recorded = read_json_file(resolve_checkpoint(dir / "imported") / "config.json")["text_stores"];
  EXPECT_EQ(recorded, read_json_file(e.config)["flame"]["text_stores"]);

  o.layer = "1";
  const std::string layer = error_of([&] { import_open_clip(o); });
  EXPECT_TRUE(contains(layer, "--layer 1") && contains(layer, "text_stores[0].layer")) << layer;
  const int64_t layers = llm::load_llm_config(llm).num_hidden_layers;
  o.layer = std::to_string(2 - (layers + 1));  // hidden_states[2] counted from the end
  EXPECT_EQ(error_of([&] { import_open_clip(o); }), "");
  o.llm.clear();
  EXPECT_TRUE(contains(error_of([&] { import_open_clip(o); }), "pass --llm too"));
  o.layer = "2";
  EXPECT_EQ(error_of([&] { import_open_clip(o); }), "");
  o.facet_positions = "concatenated";
  const std::string positions = error_of([&] { import_open_clip(o); });
  EXPECT_TRUE(contains(positions, "--facet-positions concatenated") &&
              contains(positions, "text_stores[0].facet_positions"))
      << positions;
  o.facet_positions = "separate";
  EXPECT_EQ(error_of([&] { import_open_clip(o); }), "");
}

// flame import takes flame train's run-folder lock, and --overwrite leaves
// nothing of the old run (checkpoints, log, summary); the user's other files stay.
TEST(OpenClipFormat, ImportTakesTheRunLockAndReplacesTheWholeRun) {
  const fs::path dir = test::fresh_temp_dir();
  const fs::path llm = test::tiny_checkpoint("llama", "f32");
  ASSERT_EQ(released_import_error(dir, llm, 0, [](auto&, json&) {}), "");
  OpenClipImportOptions o;
  o.weights = dir / "v0.safetensors";
  o.config = dir / "v0.json";
  o.llm = llm;
  o.overwrite = true;
  for (const std::string name : {"trained", "trained-with-notes"}) {
    SCOPED_TRACE(name);
    o.run_dir = dir / name;
    torch::manual_seed(3);
    save_run(o.run_dir, make_flame_model(vision::load_vit_config("vit-micro-32"), 64), "infonce", nullptr);
    write_file_atomic(o.run_dir / "train-log.jsonl", "{\"step\": 7}\n");
    write_file_atomic(o.run_dir / "summary.json", "{\"last_checkpoint\": \"step-00000007\"}\n");
    if (name == "trained-with-notes") write_file_atomic(o.run_dir / "notes.txt", "mine");
    {
      const DirectoryLock train(o.run_dir, "the run folder");  // a flame train running there
      EXPECT_TRUE(contains(error_of([&] { import_open_clip(o); }), "in use")) << name;
      EXPECT_TRUE(fs::exists(o.run_dir / "checkpoints" / "step-00000007"));
    }
    o.overwrite = false;
    EXPECT_TRUE(contains(error_of([&] { import_open_clip(o); }), "--overwrite"));
    o.overwrite = true;
    fs::create_directories(dir / ("." + name + ".tmp.999.abc") / "checkpoints");  // left by a killed import
    EXPECT_EQ(error_of([&] { import_open_clip(o); }), "");
    EXPECT_TRUE(fs::exists(o.run_dir / "checkpoints" / "step-00000000"));
    for (const char* old : {"checkpoints/step-00000007", "train-log.jsonl", "summary.json"})
      EXPECT_FALSE(fs::exists(o.run_dir / old)) << old;
    EXPECT_EQ(fs::exists(o.run_dir / "notes.txt"), name == "trained-with-notes");
    for (const fs::path& d : {dir, o.run_dir})
      for (const auto& entry : fs::directory_iterator(d))
        EXPECT_FALSE(contains(entry.path().filename().string(), ".tmp")) << entry.path();
    EXPECT_EQ(resolve_checkpoint(o.run_dir).filename(), "step-00000000");
  }
}

// An export is written as a whole and its config records the weights'
// SHA-256: weights of another export beside it (what a killed export
// --overwrite could leave) are refused; an export without the record imports.
TEST(OpenClipFormat, ImportRefusesWeightsThatAreNotTheConfigsOwn) {
  const fs::path dir = test::fresh_temp_dir();
  const fs::path llm = test::tiny_checkpoint("llama", "f32");
  const OpenClipExport a = export_flame_run(dir / "a", llm, 1);
  const OpenClipExport b = export_flame_run(dir / "b", llm, 3);
  EXPECT_EQ(read_json_file(a.config)["flame"]["weights_sha256"], sha256_file_hex(a.weights));
  fs::copy_file(b.weights, a.weights, fs::copy_options::overwrite_existing);
  OpenClipImportOptions o;
  o.weights = a.weights;
  o.run_dir = dir / "mixed";
  const std::string mixed = error_of([&] { import_open_clip(o); });
  EXPECT_TRUE(contains(mixed, "weights_sha256") && contains(mixed, a.config.string())) << mixed;
  EXPECT_FALSE(fs::exists(dir / "mixed" / "checkpoints"));

  json old = read_json_file(b.config);  // an export from before the record
  old["flame"].erase("weights_sha256");
  write_json_file_atomic(a.config, old);
  EXPECT_EQ(error_of([&] { import_open_clip(o); }), "");

  // --overwrite swaps the folder whole: a killed export's leftover goes, the user's files stay.
  write_file_atomic(dir / "b" / "export" / "README.md", "mine");
  fs::create_directories(dir / "b" / ".export.tmp.999.abc");
  {
    const DirectoryLock other(dir / "b", "the export folder export", ".export.lock");  // another export
    EXPECT_TRUE(contains(error_of([&] { export_open_clip(dir / "a" / "run", dir / "b" / "export", true); }),
                         "in use"));
  }
  fs::create_directory_symlink(dir / "b" / "export", dir / "a" / "link");  // the same folder by a link
  {
    const DirectoryLock other(dir / "b", "the export folder export", ".export.lock");
    EXPECT_TRUE(
        contains(error_of([&] { export_open_clip(dir / "a" / "run", dir / "a" / "link", true); }), "in use"));
  }
  export_open_clip(dir / "a" / "run", dir / "b" / "export", true);
  EXPECT_TRUE(fs::exists(dir / "b" / "export" / "README.md"));
  EXPECT_FALSE(fs::exists(dir / "b" / ".export.tmp.999.abc"));
  EXPECT_EQ(read_json_file(b.config)["flame"]["weights_sha256"], sha256_file_hex(b.weights));
  fs::remove(dir / "b" / "export" / "README.md");
  export_open_clip(dir / "b" / "run", dir / "b" / "export", true);  // the folder swapped as a whole
  EXPECT_EQ(read_json_file(b.config)["flame"]["weights_sha256"], sha256_file_hex(b.weights));
  for (const auto& entry : fs::directory_iterator(dir / "b"))
    EXPECT_FALSE(contains(entry.path().filename().string(), ".tmp")) << entry.path();
}

TEST(OpenClipFormat, ImportRefusesNonFloatAndNonFiniteTensorsNamingThem) {
  const fs::path dir = test::fresh_temp_dir();
  const fs::path llm = test::tiny_checkpoint("llama", "f32");
  int variant = 0;
  const auto refusal = [&](const std::function<void(std::map<std::string, torch::Tensor>&)>& change) {
    const std::string e = released_import_error(dir, llm, variant, [&](auto& t, json&) { change(t); });
    EXPECT_TRUE(contains(e, fmt::format("v{}.safetensors", variant++))) << e;
    EXPECT_FALSE(fs::exists(dir / fmt::format("run{}", variant - 1) / "checkpoints"));
    return e;
  };
  EXPECT_TRUE(
      contains(refusal([](auto& t) { t.erase("visual.transformer.resblocks.1.attn.in_proj_weight"); }),
               "lacks tensor 'visual.transformer.resblocks.1.attn.in_proj_weight'"));
  EXPECT_TRUE(contains(refusal([](auto& t) { t["mm.3.bias"] = torch::ones({64}, torch::kInt32); }),
                       "'mm.3.bias' is stored as I32"));
  EXPECT_TRUE(contains(refusal([](auto& t) { t["visual.ln_pre.weight"] = torch::ones({64}, torch::kBool); }),
                       "'visual.ln_pre.weight' is stored as BOOL"));
  EXPECT_TRUE(contains(refusal([](auto& t) { t["logit_scale"] = torch::tensor(4, torch::kUInt8); }),
                       "'logit_scale' is stored as U8"));
  EXPECT_TRUE(contains(refusal([](auto& t) { t["visual.conv1.weight"].view(-1)[5] = NAN; }),
                       "'visual.conv1.weight' holds 1 non-finite"));
  EXPECT_TRUE(
      contains(refusal([](auto& t) { t["mm.0.bias"][3] = INFINITY; }), "'mm.0.bias' holds 1 non-finite"));
  EXPECT_TRUE(contains(refusal([](auto& t) {
                         t["visual.conv1.weight"] = torch::zeros({64, 3, 8});
                       }),
                       "'visual.conv1.weight' has shape [64, 3, 8]"));

  // export refuses to write a model that computes NaN
  torch::manual_seed(1);
  TrainedModel model = make_flame_model(vision::load_vit_config("vit-micro-32"), 64);
  {
    torch::NoGradGuard no_grad;
    model.root->named_parameters()["vit.ln_pre.weight"][0] = NAN;
  }
  save_run(dir / "nan-run", model, "infonce", nullptr);
  EXPECT_TRUE(contains(error_of([&] { export_open_clip(dir / "nan-run", dir / "nan-export"); }),
                       "'vit.ln_pre.weight' holds 1 non-finite"));
}

// Config values are read as what they are: a layer given as a number is one
// layer; 1.5, 0, negative widths or the wrong type are refused naming the
// config file (not the weights) and the key; so are empty or unreadable files.
TEST(OpenClipFormat, ImportReadsTheConfigStrictlyNamingIt) {
  const fs::path dir = test::fresh_temp_dir();
  const fs::path llm = test::tiny_checkpoint("llama", "f32");
  int variant = 0;
  const auto error = [&](const std::function<void(json&)>& change) {
    return released_import_error(dir, llm, variant++, [&](auto&, json& c) { change(c); });
  };
  EXPECT_EQ(error([](json& c) { c["text_cfg"]["layer"] = 2; }), "");
  EXPECT_EQ(store_for_prompts(
                read_text_provenance(read_json_file(resolve_checkpoint(dir / "run0") / "config.json"), "x"),
                "release-long")
                ->layer,
            2);
  const auto refused = [&](const std::function<void(json&)>& change, const std::string& key) {
    const std::string e = error(change);
    EXPECT_TRUE(contains(e, fmt::format("v{}.json", variant - 1)) && contains(e, key)) << key << ": " << e;
    EXPECT_FALSE(contains(e, ".safetensors")) << e;
  };
  refused([](json& c) { c["text_cfg"]["layer"] = 1.5; }, "text_cfg.layer");
  refused([](json& c) { c["text_cfg"]["layer"] = json::array({39, 40}); }, "text_cfg.layer");
  refused([](json& c) { c["text_cfg"]["layer"] = 999; }, "text_cfg.layer: layer 999 is out of range");
  refused([](json& c) { c["text_cfg"] = "x"; }, "'text_cfg' must be a JSON object");
  refused([](json& c) { c["vision_cfg"]["head_width"] = 1.5; }, "'head_width' must be an integer");
  refused([](json& c) { c["vision_cfg"]["head_width"] = 0; }, "head_width");
  refused([](json& c) { c["vision_cfg"]["width"] = 0; }, "'width' must be positive");
  refused([](json& c) { c["vision_cfg"]["width"] = -64; }, "'width' must be positive");
  refused([](json& c) { c["vision_cfg"]["width"] = 64.5; }, "'width' must be an integer");
  refused([](json& c) { c["vision_cfg"]["layers"] = 3; }, "'layers' is 3");
  refused([](json& c) { c["vision_cfg"]["image_size"] = 224; }, "'image_size' is 224");
  refused([](json& c) { c["vision_cfg"]["pool_type"] = 3; }, "pool_type");
  refused([](json& c) { c["vision_cfg"] = 5; }, "'vision_cfg' must be a JSON object");
  refused([](json& c) { c["mm_cfg"]["mlp_depth"] = "2"; }, "'mlp_depth' must be an integer");
  refused([](json& c) { c["mm_cfg"]["projector_dim"] = 32; }, "'projector_dim' is 32");
  refused([](json& c) { c = json::array(); }, "must be a JSON object");
  refused([](json& c) { c["vision_cfg"]["image_size"] = json::array(); }, "'image_size' [] is neither");
  refused([](json& c) { c["text_cfg"]["layer"] = "99999999999999999999"; },
          "text_cfg.layer: layer 99999999999999999999 is out of range");

  OpenClipImportOptions o;
  o.weights = dir / "v0.safetensors";
  o.run_dir = dir / "files";
  o.llm = llm;
  o.config = dir / "empty.json";
  write_file_atomic(o.config, "");
  EXPECT_TRUE(contains(error_of([&] { import_open_clip(o); }), "empty.json"));
  o.config = dir / "loop.json";
  fs::create_symlink(o.config, o.config);
  EXPECT_TRUE(contains(error_of([&] { import_open_clip(o); }), "loop.json"));
  o.config = dir / "v0.json";
  o.weights = dir / "loop.json";
  EXPECT_TRUE(contains(error_of([&] { import_open_clip(o); }), "loop.json"));
  o.weights = dir / "absent.safetensors";
  EXPECT_TRUE(contains(error_of([&] { import_open_clip(o); }), "no such file: " + o.weights.string()));
  o.weights = dir / "v0.safetensors";
  o.run_dir = dir / "empty.json";  // a file where the run folder should be
  EXPECT_TRUE(contains(error_of([&] { import_open_clip(o); }), "empty.json exists and is not a folder"));
  o.run_dir = dir / "files";

  // a flame export's own record, read as strictly
  const OpenClipExport e = export_flame_run(dir / "export", llm, 1);
  json config = read_json_file(e.config);
  config["flame"]["model"]["text_dim"] = 1.5;
  write_json_file_atomic(e.config, config);
  o.weights = e.weights;
  o.config.clear();
  o.llm.clear();
  const std::string flame = error_of([&] { import_open_clip(o); });
  EXPECT_TRUE(contains(flame, e.config.string() + ": flame.model") && contains(flame, "text_dim")) << flame;
  config = read_json_file(e.config);  // a recorded layer flame never writes (eval could not place it)
  config["flame"]["model"]["text_dim"] = 64;
  config["flame"]["text_stores"][0]["layer"] = -5;
  write_json_file_atomic(e.config, config);
  const std::string negative = error_of([&] { import_open_clip(o); });
  EXPECT_TRUE(contains(negative, "flame: text_stores[0]: field 'layer' -5 is negative")) << negative;
}

}  // namespace
}  // namespace flame::train
