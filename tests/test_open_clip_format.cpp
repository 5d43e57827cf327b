// OpenCLIP interop: exports load into an independent PyTorch reference of
// OpenCLIP's ViT (tests/python/open_clip_reference.py, Debian's python3-torch)
// and give flame's features; the released FLAME layout imports into a run
// whose features equal that reference's, with the text side recorded; bad
// files are refused naming the tensor or field.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>

#include "data/image_decode.h"
#include "data/image_transform.h"
#include "llm/checkpoint_identity.h"
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
#include "util/safetensors.h"
#include "vision/vit_config.h"

namespace flame::train {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using test::contains;
using test::error_of;

test::CommandResult python_reference(const fs::path& weights, const fs::path& config,
                                     const fs::path& inputs) {
  const fs::path script = test::test_data_dir().parent_path() / "python" / "open_clip_reference.py";
  return test::run_command(fmt::format("/usr/bin/python3 {} {} {} {} 2>&1", script.string(), weights.string(),
                                       config.string(), inputs.string()));
}

// Four Flickr8k images preprocessed as eval does: [4, 3, S, S].
torch::Tensor real_images(int64_t size) {
  data::ImageTransformOptions t;
  t.size = size;
  std::vector<torch::Tensor> images;
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(test::shared_dir() / "data" / "flickr8k" / "images"))
    files.push_back(e.path());
  std::sort(files.begin(), files.end());
  for (size_t i = 0; i < 4; ++i)
    images.push_back(data::transform_image(data::decode_image(read_file(files[i]), files[i].string()), t, 0));
  return torch::stack(images);
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

TEST(OpenClipFormat, FlameExportReproducesFlameFeaturesInAnOpenClipReference) {
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
  const torch::Tensor images = real_images(32);
  write_tensors(dir / "inputs.safetensors",
                {{"images", images}, {"image_features", model.image->encode(images).pooled}});
  const test::CommandResult r = python_reference(e.weights, e.config, dir / "inputs.safetensors");
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "max_abs_diff=")) << r.output;
  std::printf("flame export vs OpenCLIP reference (fp32): %s", r.output.c_str());

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

TEST(OpenClipFormat, ClipBaselineExportHasBothTowersInOpenClipNames) {
  const fs::path dir = test::fresh_temp_dir();
  torch::manual_seed(4);
  const text::ClipTextConfig text_config = text::load_clip_text_config("clip-text-micro");
  TrainedModel model = make_clip_model(vision::load_vit_config("vit-micro-32"), text_config, 300);
  perturb(*model.root, 5);
  save_run(dir / "run", model, "infonce", nullptr);
  const OpenClipExport e = export_open_clip(dir / "run", dir / "export");
  const SafetensorsFile weights(e.weights);
  for (const char* name :
       {"visual.proj", "token_embedding.weight", "positional_embedding",
        "transformer.resblocks.1.attn.out_proj.weight", "ln_final.weight", "text_projection", "logit_scale"})
    EXPECT_TRUE(weights.contains(name)) << name;
  EXPECT_FALSE(weights.contains("logit_bias"));  // InfoNCE: OpenCLIP's CLIP has none

  torch::NoGradGuard no_grad;
  model.root->eval();
  const torch::Tensor images = real_images(32);
  const torch::Tensor ids = torch::randint(1, 300, {3, 12}, torch::kInt64);
  const torch::Tensor eot = torch::tensor({11, 5, 8}, torch::kInt64);
  write_tensors(dir / "inputs.safetensors", {{"images", images},
                                             {"image_features", model.image->encode(images).pooled},
                                             {"text_ids", ids},
                                             {"text_eot", eot},
                                             {"text_features", model.text(ids, eot)}});
  const test::CommandResult r = python_reference(e.weights, e.config, dir / "inputs.safetensors");
  EXPECT_EQ(r.status, 0) << r.output;
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
  const torch::Tensor images = real_images(32);
  write_tensors(dir / "inputs.safetensors",
                {{"images", images}, {"image_features", model.image->encode(images).pooled}});
  const test::CommandResult r = python_reference(o.weights, o.config, dir / "inputs.safetensors");
  EXPECT_EQ(r.status, 0) << r.output;
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
  const std::string width = refusal([](auto& t, json&) {
    for (const char* n : {"mm.2.weight", "mm.2.bias", "mm.3.weight", "mm.3.bias"}) {
      const torch::Tensor& old = t[n];
      t[n] = old.dim() == 2 ? torch::zeros({32, old.size(1)}) : torch::zeros({32});
    }
  });
  EXPECT_TRUE(contains(width, "maps images into 32 dimensions but the LLM")) << width;
  EXPECT_TRUE(contains(refusal([](auto&, json& c) { c["text_cfg"]["layer"] = "39_40"; }), "layer '39_40'"));
  EXPECT_TRUE(contains(refusal([](auto&, json& c) { c["text_cfg"]["layer"] = "39"; }), "out of range"));
}

}  // namespace
}  // namespace flame::train
