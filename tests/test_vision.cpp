// The image tower: ViT config presets and their validation, the OpenCLIP-shaped
// ViT (names, parameter counts, init, patch dropout, gradient checkpointing)
// and the image encoder (projector, pooling, logit scale, weight-decay groups).
#include <gtest/gtest.h>
#include <torch/version.h>

#include <torch/torch.h>

#include <cmath>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "test_helpers.h"
#include "util/error.h"
#include "util/file.h"
#include "vision/image_encoder.h"
#include "vision/vit.h"
#include "vision/vit_config.h"

namespace flame::vision {
namespace {

nlohmann::json micro_json() {
  return {{"name", "m"}, {"image_size", 32}, {"patch_size", 8}, {"width", 64}, {"layers", 2}, {"heads", 2}};
}

std::string config_error(const nlohmann::json& j) {
  try {
    vit_config_from_json(j, "cfg.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::string load_error(const std::string& name_or_path) {
  try {
    load_vit_config(name_or_path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

VitConfig micro(const std::string& pool = "avg", double patch_dropout = 0.0) {
  VitConfig c = load_vit_config("vit-micro-32");
  c.pool = pool;
  c.patch_dropout = patch_dropout;
  return c;
}

std::set<const void*> ptrs(const std::vector<torch::Tensor>& tensors) {
  std::set<const void*> out;
  for (const auto& t : tensors) out.insert(t.unsafeGetTensorImpl());
  return out;
}

// Number of checkpoint nodes in the autograd graph that produced `root`.
int count_checkpoint_nodes(const torch::Tensor& root) {
  std::vector<torch::autograd::Node*> todo{root.grad_fn().get()};
  std::set<torch::autograd::Node*> seen;
  int count = 0;
  while (!todo.empty()) {
    torch::autograd::Node* node = todo.back();
    todo.pop_back();
    if (node == nullptr || !seen.insert(node).second) continue;
    if (node->name().find("CheckpointFunction") != std::string::npos) ++count;
    for (const auto& edge : node->next_edges()) todo.push_back(edge.function.get());
  }
  return count;
}

TEST(VitConfig, PresetsAreListedAndLoad) {
  const std::vector<std::string> expected = {"vit-b-16", "vit-l-14", "vit-micro-32", "vit-s-16",
                                             "vit-ti-8-64"};
  EXPECT_EQ(list_vit_presets(), expected);
  for (const auto& name : expected) {
    const VitConfig c = load_vit_config(name);
    EXPECT_EQ(c.name, name);
    EXPECT_EQ(c.pool, "avg");
    EXPECT_DOUBLE_EQ(c.mlp_ratio, 4.0);
    EXPECT_EQ(c.projector_hidden, 0);
  }
  const VitConfig b = load_vit_config("vit-b-16");
  EXPECT_EQ(b.image_size, 224);
  EXPECT_EQ(b.patch_size, 16);
  EXPECT_EQ(b.width, 768);
  EXPECT_EQ(b.layers, 12);
  EXPECT_EQ(b.heads, 12);
  EXPECT_EQ(b.num_patches(), 196);
  EXPECT_EQ(b.mlp_width(), 3072);
  const VitConfig l = load_vit_config("vit-l-14");
  EXPECT_EQ(l.patch_size, 14);
  EXPECT_EQ(l.width, 1024);
  EXPECT_EQ(l.layers, 24);
  EXPECT_EQ(l.heads, 16);
  EXPECT_EQ(l.num_patches(), 256);
}

TEST(VitConfig, LoadsAFileAndRoundTrips) {
  const auto dir = test::fresh_temp_dir();
  auto j = micro_json();
  j.erase("name");
  j["pool"] = "cls";
  j["patch_dropout"] = 0.25;
  j["grad_checkpointing"] = true;
  j["projector_hidden"] = 96;
  j["mlp_ratio"] = 2.5;
  j["ln_post"] = false;
  write_json_file_atomic(dir / "my-vit.json", j);
  const VitConfig c = load_vit_config((dir / "my-vit.json").string());
  EXPECT_EQ(c.name, "my-vit");  // the file stem when "name" is absent
  EXPECT_EQ(c.pool, "cls");
  EXPECT_DOUBLE_EQ(c.patch_dropout, 0.25);
  EXPECT_TRUE(c.grad_checkpointing);
  EXPECT_EQ(c.projector_hidden, 96);
  EXPECT_EQ(c.mlp_width(), 160);
  EXPECT_FALSE(c.ln_post);
  const VitConfig back = vit_config_from_json(to_json(c), "x");
  EXPECT_EQ(to_json(back), to_json(c));
  EXPECT_EQ(to_json(c).size(), 12u);
}

TEST(VitConfig, ErrorsNameTheFileAndField) {
  auto bad = [](const char* key, const nlohmann::json& value) {
    auto j = micro_json();
    j[key] = value;
    return config_error(j);
  };
  EXPECT_EQ(bad("image_size", 36),
            "cfg.json: field 'image_size' (36) must be a multiple of 'patch_size' (8)");
  EXPECT_EQ(bad("heads", 3), "cfg.json: field 'width' (64) must be a multiple of 'heads' (3)");
  EXPECT_EQ(bad("pool", "max"), "cfg.json: field 'pool' must be \"avg\" or \"cls\", got \"max\"");
  EXPECT_EQ(bad("patch_dropout", 1.0), "cfg.json: field 'patch_dropout' must be in [0, 1), got 1");
  EXPECT_EQ(bad("patch_dropout", -0.1), "cfg.json: field 'patch_dropout' must be in [0, 1), got -0.1");
  EXPECT_EQ(bad("layers", 0), "cfg.json: field 'layers' must be positive, got 0");
  EXPECT_EQ(bad("width", "64"), "cfg.json: field 'width' must be an integer, got \"64\"");
  EXPECT_EQ(bad("patch_size", 8.5), "cfg.json: field 'patch_size' must be an integer, got 8.5");
  EXPECT_EQ(bad("mlp_ratio", 0),
            "cfg.json: field 'mlp_ratio' must give an MLP width of at least 1 (and below 1e15), got 0");
  EXPECT_EQ(bad("mlp_ratio", "4"), "cfg.json: field 'mlp_ratio' must be a number, got \"4\"");
  EXPECT_EQ(bad("grad_checkpointing", "yes"), "cfg.json: field 'grad_checkpointing' must be true or false");
  EXPECT_EQ(bad("projector_hidden", -1),
            "cfg.json: field 'projector_hidden' must be >= 0 (0 = the text dimension), got -1");
  EXPECT_EQ(bad("name", 3), "cfg.json: field 'name' must be a string");
  EXPECT_EQ(
      bad("widht", 64),
      "cfg.json: unknown field 'widht' (known fields: name, image_size, patch_size, width, layers, heads, "
      "mlp_ratio, pool, patch_dropout, grad_checkpointing, projector_hidden, ln_post)");
  auto j = micro_json();
  j.erase("heads");
  EXPECT_EQ(config_error(j), "cfg.json: missing required field 'heads'");
  EXPECT_EQ(config_error(nlohmann::json::array()), "cfg.json: a model config must be a JSON object");
  EXPECT_EQ(config_error(micro_json()), "");  // the base is valid
}

TEST(VitConfig, LoadErrorsNameTheFile) {
  const auto dir = test::fresh_temp_dir();
  EXPECT_EQ(load_error((dir / "absent.json").string()),
            "model config '" + (dir / "absent.json").string() + "' does not exist");
  const std::string unknown = load_error("vit-zz-99");
  EXPECT_NE(unknown.find("unknown model preset 'vit-zz-99'"), std::string::npos) << unknown;
  EXPECT_NE(unknown.find("presets: vit-b-16, vit-l-14, vit-micro-32, vit-s-16, vit-ti-8-64"),
            std::string::npos)
      << unknown;
  auto j = micro_json();
  j["pool"] = "max";
  write_json_file_atomic(dir / "bad.json", j);
  const std::string bad = load_error((dir / "bad.json").string());
  EXPECT_EQ(bad, (dir / "bad.json").string() + ": field 'pool' must be \"avg\" or \"cls\", got \"max\"");
  {
    std::ofstream out(dir / "broken.json");
    out << "{\"width\": ";
  }
  EXPECT_NE(load_error((dir / "broken.json").string()).find("invalid JSON in"), std::string::npos);
}

// OpenCLIP ViT-B/16 visual tower without its final `proj` [768, 512]:
//   conv1 3*16*16*768 = 589,824; class_embedding 768; positional_embedding
//   197*768 = 151,296; ln_pre 1,536; 12 blocks of 7,087,872 (ln_1 + ln_2 3,072,
//   in_proj 1,771,776, out_proj 590,592, c_fc 2,362,368, c_proj 2,360,064) =
//   85,054,464; ln_post 1,536. Total 85,799,424 (= OpenCLIP's 86,192,640 for the
//   visual tower minus proj 393,216). timm's vit_base_patch16_224 without head is
//   85,798,656: it has a conv bias (+768) but no ln_pre (-1,536).
//   ViT-L/14 likewise: OpenCLIP's 303,966,208 minus proj [1024, 768].
// EveryPresetBuilds checks that the built modules have these counts.
TEST(VitPresets, CountsMatchOpenClip) {
  EXPECT_EQ(load_vit_config("vit-b-16").parameter_count(), 85'799'424);
  EXPECT_EQ(load_vit_config("vit-l-14").parameter_count(), 303'966'208 - 1024 * 768);
}

TEST(VitPresets, EveryPresetBuilds) {
  for (const auto& name : list_vit_presets()) {
    const VitConfig c = load_vit_config(name);
    // vit-l-14 (303M parameters, 1.2 GB) would dominate the suite's time; its
    // count comes from the formula that the other presets verify here.
    if (c.parameter_count() > 100'000'000) continue;
    VisionTransformer vit(c);
    EXPECT_EQ(vit->parameter_count(), c.parameter_count()) << name;
    EXPECT_EQ(vit->positional_embedding.sizes(), torch::IntArrayRef({c.num_patches() + 1, c.width})) << name;
    if (c.image_size <= 64) {  // the CPU presets also run
      torch::NoGradGuard no_grad;
      vit->eval();
      const torch::Tensor out = vit(torch::randn({1, 3, c.image_size, c.image_size}));
      EXPECT_EQ(out.sizes(), torch::IntArrayRef({1, c.num_patches() + 1, c.width})) << name;
      EXPECT_TRUE(torch::isfinite(out).all().item<bool>()) << name;
    }
  }
}

TEST(Vit, ParameterNamesFollowOpenClip) {
  torch::manual_seed(0);
  VisionTransformer vit(micro());
  std::vector<std::string> names;
  for (const auto& item : vit->named_parameters()) names.push_back(item.key());
  // A module's own parameters come before its children's, as in PyTorch.
  std::vector<std::string> expected = {"class_embedding", "positional_embedding", "conv1.weight",
                                       "ln_pre.weight", "ln_pre.bias"};
  for (int i = 0; i < 2; ++i) {
    const std::string p = "transformer.resblocks." + std::to_string(i) + ".";
    for (const char* s : {"ln_1.weight", "ln_1.bias", "attn.in_proj_weight", "attn.in_proj_bias",
                          "attn.out_proj.weight", "attn.out_proj.bias", "ln_2.weight", "ln_2.bias",
                          "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias"}) {
      expected.push_back(p + s);
    }
  }
  expected.push_back("ln_post.weight");
  expected.push_back("ln_post.bias");
  EXPECT_EQ(names, expected);
  EXPECT_EQ(vit->named_parameters()["transformer.resblocks.1.attn.in_proj_weight"].sizes(),
            torch::IntArrayRef({192, 64}));
  EXPECT_EQ(vit->conv1->weight.sizes(), torch::IntArrayRef({64, 3, 8, 8}));
}

TEST(Vit, InitFollowsOpenClip) {
  torch::manual_seed(1);
  VitConfig c = micro();
  c.layers = 8;  // makes the out_proj / c_proj std distinct from in_proj's
  VisionTransformer vit(c);
  const double scale = 1.0 / 8.0;            // 64^-0.5
  const double proj = scale / 4.0;           // * (2 * 8)^-0.5
  const double fc = 1.0 / std::sqrt(128.0);  // (2 * 64)^-0.5
  auto std_of = [](const torch::Tensor& t) { return t.std().item<double>(); };
  EXPECT_NEAR(std_of(vit->positional_embedding), scale, 0.1 * scale);
  EXPECT_NEAR(std_of(vit->class_embedding), scale, 0.25 * scale);  // only 64 samples
  double in_std = 0, out_std = 0, fc_std = 0, cproj_std = 0;
  for (size_t i = 0; i < vit->resblocks->size(); ++i) {
    const auto block = vit->resblocks->ptr<ResidualAttentionBlockImpl>(i);
    in_std += std_of(block->attn->in_proj_weight) / 8;
    out_std += std_of(block->attn->out_proj->weight) / 8;
    fc_std += std_of(block->mlp->c_fc->weight) / 8;
    cproj_std += std_of(block->mlp->c_proj->weight) / 8;
    EXPECT_EQ(block->attn->in_proj_bias.abs().max().item<float>(), 0.0f);
    EXPECT_EQ(block->attn->out_proj->bias.abs().max().item<float>(), 0.0f);
  }
  EXPECT_NEAR(in_std, scale, 0.05 * scale);
  EXPECT_NEAR(out_std, proj, 0.05 * proj);
  EXPECT_NEAR(fc_std, fc, 0.05 * fc);
  EXPECT_NEAR(cproj_std, proj, 0.05 * proj);
}

TEST(Vit, OutputShapesAndEvalDeterminism) {
  torch::manual_seed(2);
  VisionTransformer vit(micro("avg", 0.5));
  vit->eval();
  const torch::Tensor images = torch::randn({3, 3, 32, 32});
  const torch::Tensor a = vit(images);
  const torch::Tensor b = vit(images);
  EXPECT_EQ(a.sizes(), torch::IntArrayRef({3, 17, 64}));  // 1 + (32/8)^2 tokens, no dropout in eval
  EXPECT_TRUE(torch::equal(a, b));
  // Images are independent: one image alone gives the same tokens.
  EXPECT_TRUE(torch::allclose(vit(images.slice(0, 1, 2)), a.slice(0, 1, 2), 1e-5, 1e-5));
  // ln_post output: every token is normalised (weight 1, bias 0 at init).
  EXPECT_LT((a.mean(-1)).abs().max().item<float>(), 1e-5);
  EXPECT_THROW(vit(torch::randn({1, 3, 30, 30})), Error);
  EXPECT_THROW(vit(torch::randn({1, 1, 32, 32})), Error);
}

TEST(Vit, PatchDropoutOnlyWhileTraining) {
  torch::manual_seed(3);
  VisionTransformer vit(micro("avg", 0.5));
  const torch::Tensor images = torch::randn({2, 3, 32, 32});
  vit->train();
  EXPECT_EQ(vit(images).sizes(), torch::IntArrayRef({2, 1 + 8, 64}));  // int(16 * 0.5) patches kept
  torch::manual_seed(5);
  const torch::Tensor a = vit(images);
  torch::manual_seed(5);
  EXPECT_TRUE(torch::equal(vit(images), a));  // same torch seed, same patches
  vit->eval();
  EXPECT_EQ(vit(images).sizes(), torch::IntArrayRef({2, 17, 64}));
  VisionTransformer plain(micro());
  plain->train();
  EXPECT_EQ(plain(images).sizes(), torch::IntArrayRef({2, 17, 64}));
}

TEST(Vit, DropPatchesKeepsClassTokenAndARandomSubset) {
  const int64_t batch = 4, patches = 16, width = 3;
  // token (b, t) holds the value 100 b + t in every channel
  const torch::Tensor tokens =
      (torch::arange(batch).view({batch, 1, 1}) * 100 + torch::arange(patches + 1).view({1, patches + 1, 1}))
          .expand({batch, patches + 1, width})
          .to(torch::kFloat);
  torch::manual_seed(11);
  const torch::Tensor out = drop_patches(tokens, 0.5);
  ASSERT_EQ(out.sizes(), torch::IntArrayRef({batch, 1 + 8, width}));
  EXPECT_TRUE(torch::equal(out.select(1, 0), tokens.select(1, 0)));
  std::set<std::vector<int64_t>> subsets;
  for (int64_t b = 0; b < batch; ++b) {
    std::vector<int64_t> kept;
    for (int64_t t = 1; t <= 8; ++t) {
      const torch::Tensor row = out[b][t];
      EXPECT_TRUE(torch::equal(row, row[0].expand({width})));
      kept.push_back(static_cast<int64_t>(row[0].item<float>()) - 100 * b);
    }
    for (size_t t = 0; t < kept.size(); ++t) {
      EXPECT_GE(kept[t], 1);  // a patch of this image, never the class token
      EXPECT_LE(kept[t], patches);
      if (t > 0) EXPECT_GT(kept[t], kept[t - 1]);  // distinct, in order
    }
    subsets.insert(kept);
  }
  EXPECT_GT(subsets.size(), 1u);  // each image draws its own subset
  torch::manual_seed(11);
  EXPECT_TRUE(torch::equal(drop_patches(tokens, 0.5), out));
  EXPECT_TRUE(torch::equal(drop_patches(tokens, 0.0), tokens));
  EXPECT_EQ(drop_patches(tokens, 0.99).size(1), 2);      // at least one patch survives
  EXPECT_EQ(drop_patches(tokens, 0.3).size(1), 1 + 11);  // int(16 * 0.7)
  EXPECT_THROW(drop_patches(tokens, 1.0), Error);
}

TEST(Vit, GradCheckpointingGivesTheSameGradients) {
  torch::manual_seed(4);
  VitConfig c = micro();
  c.layers = 3;
  VisionTransformer vit(c);
  vit->train();
  const torch::Tensor images = torch::randn({2, 3, 32, 32});
  const torch::Tensor weights = torch::randn({2, 17, 64});
  auto run = [&](bool checkpoint, int* nodes) {
    vit->set_grad_checkpointing(checkpoint);
    vit->zero_grad();
    const torch::Tensor input = images.clone().requires_grad_(true);
    const torch::Tensor out = vit(input);
    *nodes = count_checkpoint_nodes(out);
    (out * weights).sum().backward();
    std::vector<torch::Tensor> grads{input.grad().clone()};
    for (const auto& p : vit->parameters()) grads.push_back(p.grad().clone());
    return std::make_pair(out.detach(), grads);
  };
  int plain_nodes = 0, checkpoint_nodes = 0;
  const auto plain = run(false, &plain_nodes);
  const auto checkpointed = run(true, &checkpoint_nodes);
  EXPECT_EQ(plain_nodes, 0);
  EXPECT_EQ(checkpoint_nodes, 3);  // one per block: the checkpointed path really ran
  EXPECT_TRUE(torch::equal(plain.first, checkpointed.first));
  ASSERT_EQ(plain.second.size(), checkpointed.second.size());
  for (size_t i = 0; i < plain.second.size(); ++i) {
    EXPECT_GT(plain.second[i].abs().max().item<float>(), 0.0f) << i;
    EXPECT_TRUE(torch::allclose(plain.second[i], checkpointed.second[i], 1e-5, 1e-6)) << i;
  }
  // Not under no-grad or in eval: nothing to recompute.
  vit->eval();
  int nodes = 0;
  {
    const torch::Tensor out = vit(images.clone().requires_grad_(true));
    nodes = count_checkpoint_nodes(out);
  }
  EXPECT_EQ(nodes, 0);
}

// The attention core against a per-head loop in double precision; also
// scaled_dot_product_attention (the CUDA path) against
// the explicit one, fp32, with and without the text tower's causal mask.
TEST(Vit, AttentionMatchesAReferenceAndSdpa) {
  torch::manual_seed(3);
  const torch::Tensor q = torch::randn({2, 3, 7, 8}), k = torch::randn({2, 3, 7, 8}),
                      v = torch::randn({2, 3, 7, 8});
  for (const torch::Tensor& mask : {torch::Tensor(), causal_mask(7)}) {
    const torch::Tensor got = explicit_attention(q, k, v, mask);
    torch::Tensor expected = torch::empty_like(got, torch::kDouble);
    for (int64_t b = 0; b < 2; ++b) {
      for (int64_t h = 0; h < 3; ++h) {
        torch::Tensor scores =
            torch::mm(q[b][h].to(torch::kDouble), k[b][h].to(torch::kDouble).t()) / std::sqrt(8.0);
        if (mask.defined()) scores = scores + mask.to(torch::kDouble);
        expected[b][h] = torch::mm(torch::softmax(scores, -1), v[b][h].to(torch::kDouble));
      }
    }
    EXPECT_TRUE(torch::allclose(got.to(torch::kDouble), expected, 1e-5, 1e-5)) << mask.defined();
    const c10::optional<torch::Tensor> m = mask.defined() ? c10::optional<torch::Tensor>(mask) : c10::nullopt;
    EXPECT_TRUE(torch::allclose(at::scaled_dot_product_attention(q, k, v, m), got, 1e-5, 1e-5));
    if (torch::cuda::is_available()) {
      const torch::Tensor on_gpu =
          attention(q.cuda(), k.cuda(), v.cuda(), mask.defined() ? mask.cuda() : mask);
      EXPECT_TRUE(torch::allclose(on_gpu.cpu(), got, 1e-5, 1e-5));
    }
  }
}

TEST(ImageEncoder, EncodeShapesAndAveragePooling) {
  torch::manual_seed(6);
  ImageEncoder encoder(micro(), 48);
  encoder->eval();
  EXPECT_EQ(encoder->projector->fc1->weight.sizes(), torch::IntArrayRef({48, 64}));  // hidden = text dim
  const torch::Tensor images = torch::randn({2, 3, 32, 32});
  const ImageFeatures f = encoder->encode(images);
  EXPECT_EQ(f.tokens.sizes(), torch::IntArrayRef({2, 16, 48}));
  EXPECT_EQ(f.pooled.sizes(), torch::IntArrayRef({2, 48}));
  EXPECT_TRUE(torch::allclose(f.pooled, f.tokens.mean(1), 1e-6, 1e-6));
  // The tokens are the projector applied to the ViT's patch tokens.
  const torch::Tensor expected = encoder->projector(encoder->vit(images).slice(1, 1));
  EXPECT_TRUE(torch::allclose(f.tokens, expected, 1e-6, 1e-6));
  // Each projected token ends in a LayerNorm (weight 1, bias 0 at init).
  EXPECT_LT(f.tokens.mean(-1).abs().max().item<float>(), 1e-5);

  VitConfig c = micro();
  c.projector_hidden = 32;
  ImageEncoder narrow(c, 48);
  EXPECT_EQ(narrow->projector->fc1->weight.sizes(), torch::IntArrayRef({32, 64}));
  EXPECT_EQ(narrow->projector->fc2->weight.sizes(), torch::IntArrayRef({48, 32}));
  EXPECT_THROW(ImageEncoder(micro(), 0), Error);
}

TEST(ImageEncoder, ClsPoolingUsesTheClassToken) {
  torch::manual_seed(7);
  ImageEncoder encoder(micro("cls"), 24);
  encoder->eval();
  const torch::Tensor images = torch::randn({2, 3, 32, 32});
  const ImageFeatures f = encoder->encode(images);
  EXPECT_EQ(f.tokens.sizes(), torch::IntArrayRef({2, 16, 24}));
  const torch::Tensor cls = encoder->projector(encoder->vit(images).select(1, 0));
  EXPECT_TRUE(torch::allclose(f.pooled, cls, 1e-6, 1e-6));
  EXPECT_FALSE(torch::allclose(f.pooled, f.tokens.mean(1), 1e-3, 1e-3));
}

TEST(ImageEncoder, LogitScaleIsClampedButTrainable) {
  ImageEncoder encoder(micro(), 16);
  EXPECT_NEAR(encoder->logit_scale.item<double>(), std::log(1.0 / 0.07), 1e-6);
  EXPECT_EQ(encoder->logit_bias.item<float>(), -10.0f);
  EXPECT_EQ(encoder->logit_scale.dim(), 0);
  EXPECT_TRUE(encoder->logit_scale.requires_grad());
  auto value_and_grad = [&](double log_scale) {
    {
      torch::NoGradGuard no_grad;
      encoder->logit_scale.fill_(log_scale);
    }
    encoder->zero_grad();
    const torch::Tensor s = encoder->logit_scale_exp();
    s.backward();
    return std::make_pair(s.item<double>(), encoder->logit_scale.grad().item<double>());
  };
  auto [below, below_grad] = value_and_grad(std::log(10.0));
  EXPECT_NEAR(below, 10.0, 1e-4);
  EXPECT_NEAR(below_grad, 10.0, 1e-4);  // d exp(s) / ds
  auto [above, above_grad] = value_and_grad(std::log(200.0));
  EXPECT_NEAR(above, 100.0, 1e-4);
  EXPECT_EQ(above_grad, 0.0);
  encoder->clamp_logit_scale_();
  EXPECT_NEAR(encoder->logit_scale.item<double>(), std::log(100.0), 1e-6);
  {
    torch::NoGradGuard no_grad;
    encoder->logit_scale.fill_(-1.0);
  }
  encoder->clamp_logit_scale_();
  EXPECT_EQ(encoder->logit_scale.item<double>(), 0.0);
}

TEST(ImageEncoder, WeightDecayOnlyOnMatrices) {
  ImageEncoder encoder(micro(), 16);
  const auto decay = ptrs(weight_decay_group(*encoder, true));
  const auto no_decay = ptrs(weight_decay_group(*encoder, false));
  std::set<std::string> decay_names;
  size_t total = 0;
  for (const auto& item : encoder->named_parameters()) {
    ++total;
    const void* p = item.value().unsafeGetTensorImpl();
    EXPECT_NE(decay.count(p), no_decay.count(p)) << item.key();  // exactly one group
    if (decay.count(p) != 0) decay_names.insert(item.key());
  }
  EXPECT_EQ(decay.size() + no_decay.size(), total);
  std::set<std::string> expected = {"vit.conv1.weight", "projector.fc1.weight", "projector.fc2.weight"};
  for (int i = 0; i < 2; ++i) {
    const std::string p = "vit.transformer.resblocks." + std::to_string(i) + ".";
    for (const char* s :
         {"attn.in_proj_weight", "attn.out_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight"}) {
      expected.insert(p + s);
    }
  }
  EXPECT_EQ(decay_names, expected);
  const auto params = encoder->named_parameters();
  for (const char* name : {"vit.positional_embedding", "vit.class_embedding", "logit_scale", "logit_bias",
                           "vit.ln_pre.weight", "projector.norm.weight", "projector.fc1.bias"}) {
    EXPECT_EQ(no_decay.count(params[name].unsafeGetTensorImpl()), 1u) << name;
  }
}

}  // namespace
}  // namespace flame::vision
