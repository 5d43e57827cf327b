// Patch-to-word interpretability: the LLM's output head on its own, pooling of
// the patch grid, a planted projector whose every patch is one known word,
// the PNG writer, the bitmap font, the rendered picture and the CLI.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <unistd.h>

#include <array>
#include <cstdio>
#include <string>

#include "data/image_decode.h"
#include "data/image_encode.h"
#include "eval/bitmap_font.h"
#include "eval/interpret.h"
#include "llm/tokenizer.h"
#include "llm/transformer.h"
#include "llm/weights.h"
#include "test_helpers.h"
#include "train/checkpoint.h"
#include "util/error.h"
#include "util/file.h"
#include "vision/image_encoder.h"
#include "vision/vit_config.h"

namespace flame::eval {
namespace {

using test::fresh_temp_dir;
using test::tiny_checkpoint;

// The tiny LLM (fp32, tied embeddings, hidden size 64) and its tokenizer, loaded once.
struct Llm {
  llm::Transformer model;
  std::unique_ptr<llm::Tokenizer> tokenizer;
};

const Llm& tiny_llm() {
  static const Llm llm = [] {
    llm::TransformerOptions options;
    options.dtype = torch::kFloat32;
    return Llm{llm::Transformer::load(tiny_checkpoint(), options), llm::Tokenizer::load(tiny_checkpoint())};
  }();
  return llm;
}

// A random (untrained) encoder projecting into `text_dim`.
vision::ImageEncoder micro_encoder(int64_t text_dim) {
  torch::manual_seed(3);
  return vision::ImageEncoder(vision::load_vit_config("vit-micro-32"), text_dim);
}

// Makes the projector's output the constant `vector` for every token: its
// final LayerNorm gets weight 0 and bias = vector.
void plant(vision::ImageEncoder& encoder, const torch::Tensor& vector) {
  torch::NoGradGuard no_grad;
  encoder->projector->norm->weight.zero_();
  encoder->projector->norm->bias.copy_(vector);
}

torch::Tensor random_image(int64_t height, int64_t width, uint64_t seed) {
  torch::manual_seed(seed);
  return torch::randint(0, 256, {height, width, 3}, torch::kUInt8);
}

TEST(Interpret, OutputHeadMatchesTheForwardPassLogits) {
  const auto& model = tiny_llm().model;
  const int64_t L = model.num_layers();
  const torch::Tensor ids = torch::tensor({{5, 17, 300, 42, 9}, {8, 1000, 77, 3, 12}}, torch::kInt64);
  llm::ForwardInput in;
  in.input_ids = ids;
  llm::ForwardRequest req;
  req.hidden_layers = {L};  // after the final norm
  req.logits = true;
  req.gather = torch::full({2, 1}, 4, torch::kInt64);  // the last position
  const llm::ForwardOutput out = model.forward(in, req);
  ASSERT_EQ(out.logits.sizes(), torch::IntArrayRef({2, 1, model.config().vocab_size}));
  // The head alone on the normed last hidden state gives the forward pass's logits.
  const torch::Tensor head = model.output_head(out.hidden[0], /*apply_final_norm=*/false);
  EXPECT_EQ(head.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::allclose(head, out.logits, 1e-5, 1e-5));

  // With the norm: RMSNorm with the checkpoint's model.norm.weight, then the tied head.
  const llm::WeightFiles weights(tiny_checkpoint());
  const torch::Tensor w = weights.get("model.norm.weight", torch::kFloat32, torch::kCPU);
  torch::manual_seed(1);
  const torch::Tensor x = 3.0 * torch::randn({2, 3, model.config().hidden_size});
  const torch::Tensor normed = x * torch::rsqrt(x.pow(2).mean(-1, true) + model.config().rms_norm_eps) * w;
  const torch::Tensor expected = torch::linear(normed, model.embed_tokens());
  const torch::Tensor got = model.output_head(x);
  ASSERT_EQ(got.sizes(), torch::IntArrayRef({2, 3, model.config().vocab_size}));
  EXPECT_TRUE(torch::allclose(got, expected, 1e-4, 1e-4)) << (got - expected).abs().max().item<float>();
  // Any input dtype is accepted; the wrong width is not.
  EXPECT_EQ(model.output_head(x.to(torch::kBFloat16)).scalar_type(), torch::kFloat32);
  EXPECT_THROW(model.output_head(torch::zeros({2, 5})), Error);
}

TEST(Interpret, PoolingAveragesBlocksOfPatches) {
  // A 4 x 4 grid whose token at (r, c) is [r, c, 10 r + c].
  torch::Tensor grid = torch::zeros({4, 4, 3});
  for (int64_t r = 0; r < 4; ++r) {
    for (int64_t c = 0; c < 4; ++c) {
      grid[r][c][0] = static_cast<float>(r);
      grid[r][c][1] = static_cast<float>(c);
      grid[r][c][2] = static_cast<float>(10 * r + c);
    }
  }
  EXPECT_TRUE(torch::equal(pool_patch_grid(grid, 1), grid));
  const torch::Tensor two = pool_patch_grid(grid, 2);
  ASSERT_EQ(two.sizes(), torch::IntArrayRef({2, 2, 3}));
  // Cell (1, 0) holds rows 2-3 and columns 0-1: mean row 2.5, column 0.5, 10 * 2.5 + 0.5.
  EXPECT_TRUE(torch::allclose(two[1][0], torch::tensor({2.5f, 0.5f, 25.5f})));
  EXPECT_TRUE(torch::allclose(two[0][1], torch::tensor({0.5f, 2.5f, 7.5f})));
  const torch::Tensor four = pool_patch_grid(grid, 4);
  ASSERT_EQ(four.sizes(), torch::IntArrayRef({1, 1, 3}));
  EXPECT_TRUE(torch::allclose(four[0][0], grid.mean(std::vector<int64_t>{0, 1})));
  // 3 does not divide 4: the edge cells average what they hold.
  const torch::Tensor three = pool_patch_grid(grid, 3);
  ASSERT_EQ(three.sizes(), torch::IntArrayRef({2, 2, 3}));
  EXPECT_TRUE(torch::allclose(three[0][0], torch::tensor({1.0f, 1.0f, 11.0f})));
  EXPECT_TRUE(torch::allclose(three[1][1], grid[3][3]));
  EXPECT_THROW(pool_patch_grid(grid, 0), Error);
  EXPECT_THROW(pool_patch_grid(grid, 5), Error);
}

TEST(Interpret, APlantedProjectorReadsAsItsWord) {
  const auto& [model, tokenizer] = tiny_llm();
  const auto ids = tokenizer->encode(" cat", /*add_special_tokens=*/false);
  ASSERT_EQ(ids.size(), 1u);
  const int32_t cat = ids[0];
  auto encoder = micro_encoder(model.config().hidden_size);
  // Every patch becomes the (tied) embedding of " cat".
  plant(encoder, model.embed_tokens()[cat].to(torch::kFloat32));
  for (const int pool : {1, 2, 4}) {
    const InterpretResult result =
        interpret_image(encoder, model, *tokenizer, random_image(40, 56, 11), pool);
    EXPECT_EQ(result.patch_grid, 4);
    EXPECT_EQ(result.pool, pool);
    EXPECT_EQ(result.grid, 4 / pool);
    EXPECT_EQ(result.view.sizes(), torch::IntArrayRef({32, 32, 3}));
    ASSERT_EQ(result.patches.size(), static_cast<size_t>(result.grid * result.grid));
    for (const PatchWord& cell : result.patches) {
      EXPECT_EQ(cell.token_id, cat);
      EXPECT_EQ(cell.token, " cat");
      EXPECT_GT(cell.prob, 0.5f);
      ASSERT_EQ(cell.top.size(), 5u);
      EXPECT_EQ(cell.top[0].token_id, cat);
      for (size_t j = 1; j < cell.top.size(); ++j) EXPECT_LE(cell.top[j].prob, cell.top[j - 1].prob);
    }
    EXPECT_EQ(result.patches.back().row, result.grid - 1);
    EXPECT_EQ(result.patches.back().col, result.grid - 1);
  }
  // The JSON names the image and every cell's word.
  const InterpretResult result = interpret_image(encoder, model, *tokenizer, random_image(32, 32, 12), 2);
  const nlohmann::json j = interpretation_json(result, "cat.jpg");
  EXPECT_EQ(j["image"], "cat.jpg");
  EXPECT_EQ(j["grid"], 2);
  EXPECT_EQ(j["pool"], 2);
  ASSERT_EQ(j["patches"].size(), 4u);
  EXPECT_EQ(j["patches"][3]["row"], 1);
  EXPECT_EQ(j["patches"][3]["col"], 1);
  EXPECT_EQ(j["patches"][3]["token"], " cat");
  EXPECT_EQ(j["patches"][3]["token_id"], cat);
  EXPECT_EQ(j["patches"][3]["top5"].size(), 5u);
  EXPECT_EQ(j["patches"][3]["top5"][0]["token_id"], cat);
}

TEST(Interpret, MismatchedHiddenSizesAreRefused) {
  const auto& [model, tokenizer] = tiny_llm();
  auto encoder = micro_encoder(model.config().hidden_size + 16);
  try {
    interpret_image(encoder, model, *tokenizer, random_image(32, 32, 1), 1);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("projects into 80 dimensions but the LLM's hidden size is 64"),
              std::string::npos)
        << e.what();
  }
}

TEST(Interpret, PngRoundTripsThroughTheDecoder) {
  const auto dir = fresh_temp_dir();
  const torch::Tensor image = random_image(13, 21, 4);
  data::write_png(dir / "x.png", image);
  const torch::Tensor back = data::decode_image(read_file(dir / "x.png"), "x.png");
  EXPECT_EQ(back.sizes(), torch::IntArrayRef({13, 21, 3}));
  EXPECT_TRUE(torch::equal(back, image));
  // Non-contiguous views are written as they look.
  const torch::Tensor flipped = image.flip(1);
  EXPECT_TRUE(torch::equal(data::decode_image(data::encode_png(flipped), "f.png"), flipped));
  EXPECT_THROW(data::encode_png(torch::zeros({4, 4, 3})), Error);  // float
  EXPECT_THROW(data::encode_png(torch::zeros({4, 4}, torch::kUInt8)), Error);
  for (const auto& entry : fs::directory_iterator(dir))
    EXPECT_EQ(entry.path().filename(), "x.png");  // no temp files
}

TEST(Interpret, FontDrawsGlyphsAndNothingForSpace) {
  const Rgb red{255, 0, 0};
  torch::Tensor canvas = torch::zeros({12, 20, 3}, torch::kUInt8);
  draw_text(canvas, 1, 1, " ", red, 1);
  EXPECT_EQ(canvas.count_nonzero().item<int64_t>(), 0);
  draw_text(canvas, 1, 1, "A", red, 1);
  const int64_t lit = canvas.select(2, 0).count_nonzero().item<int64_t>();
  EXPECT_GT(lit, 10);
  EXPECT_EQ(canvas.select(2, 1).count_nonzero().item<int64_t>(), 0);
  // Inside its 5 x 7 box at (1, 1); 'A' has a crossbar on its fifth row.
  EXPECT_EQ(canvas.slice(0, 1, 8).slice(1, 1, 6).select(2, 0).count_nonzero().item<int64_t>(), lit);
  EXPECT_EQ(canvas[5][1][0].item<int>(), 255);
  EXPECT_EQ(canvas[5][5][0].item<int>(), 255);
  // Scale 2 lights four times as many pixels; text off the image is clipped.
  torch::Tensor big = torch::zeros({20, 20, 3}, torch::kUInt8);
  draw_text(big, 0, 0, "A", red, 2);
  EXPECT_EQ(big.select(2, 0).count_nonzero().item<int64_t>(), 4 * lit);
  draw_text(big, -100, 500, "clipped", red, 1);
  EXPECT_EQ(text_width("ab", 1), 11);
  EXPECT_EQ(text_width("ab", 2), 22);
  EXPECT_EQ(text_width("", 1), 0);
}

TEST(Interpret, DisplayWordsAreTrimmedAsciiAndShort) {
  EXPECT_EQ(display_word(" cat", 10), "cat");
  EXPECT_EQ(display_word("\n\tdog  ", 10), "dog");
  EXPECT_EQ(display_word("caf\xc3\xa9", 10), "caf?");
  EXPECT_EQ(display_word("a\x01z", 10), "a?z");
  EXPECT_EQ(display_word("elephant", 4), "elep");
  EXPECT_EQ(display_word("   ", 4), "");
}

TEST(Interpret, RenderDrawsAGridAndWordsAndTheCliWritesBoth) {
  const auto& [model, tokenizer] = tiny_llm();
  auto encoder = micro_encoder(model.config().hidden_size);
  const int32_t cat = tokenizer->encode(" cat", false)[0];
  plant(encoder, model.embed_tokens()[cat].to(torch::kFloat32));
  const InterpretResult result = interpret_image(encoder, model, *tokenizer, random_image(32, 32, 5), 1);
  const torch::Tensor picture = render_interpretation(result, 48);
  ASSERT_EQ(picture.sizes(), torch::IntArrayRef({4 * 48, 4 * 48, 3}));
  // The words are white on black outlines: a uniform grey view shows both.
  InterpretResult grey = result;
  grey.view = torch::full({32, 32, 3}, 128, torch::kUInt8);
  const torch::Tensor drawn = render_interpretation(grey, 48);
  const torch::Tensor white = (drawn == 255).all(-1), black = (drawn == 0).all(-1);
  EXPECT_GT(white.sum().item<int64_t>(), 4 * 4 * 20);
  EXPECT_GT(black.sum().item<int64_t>(), 4 * 4 * 20);
  EXPECT_EQ(drawn[0][24][0].item<int>(), 192);  // the grid line: grey lightened halfway to white

  // write_interpretation and the CLI, from a saved checkpoint.
  const auto dir = fresh_temp_dir();
  write_interpretation(result, dir / "lib", "one", "one.png");
  EXPECT_EQ(read_json_file(dir / "lib" / "one.json")["patches"].size(), 16u);
  EXPECT_EQ(data::decode_image(read_file(dir / "lib" / "one.png"), "one.png").sizes(),
            torch::IntArrayRef({192, 192, 3}));

  torch::optim::AdamW optimizer(encoder->parameters());
  train::CheckpointContents contents;
  contents.config = {{"vit", vision::to_json(encoder->config())}, {"text_dim", encoder->text_dim()}};
  contents.state = {{"step", 1}};
  train::save_checkpoint(dir / "run", 1, *encoder, optimizer, contents, 1);
  data::write_png(dir / "photo.png", random_image(48, 40, 6));
  const std::string command = std::string(FLAME_CLI_PATH) +
                              " interpret --threads 1 --dtype f32 --pool 2 --model " +
                              (dir / "run").string() + " --llm " + tiny_checkpoint().string() + " --out " +
                              (dir / "out").string() + " " + (dir / "photo.png").string() + " 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  std::string output;
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) output.append(buf.data(), n);
  ASSERT_EQ(::pclose(pipe), 0) << output;
  EXPECT_NE(output.find("'cat' (4)"), std::string::npos) << output;
  const nlohmann::json j = read_json_file(dir / "out" / "photo.json");
  EXPECT_EQ(j["grid"], 2);
  EXPECT_EQ(j["patches"][0]["token"], " cat");
  // Pool 2: cells of two 24 px patches.
  EXPECT_EQ(data::decode_image(read_file(dir / "out" / "photo.png"), "photo.png").sizes(),
            torch::IntArrayRef({96, 96, 3}));

  // One writer per output folder: while another process holds it (here this
  // one), interpret fails at once naming the holder, and writes nothing.
  fs::remove(dir / "out" / "photo.json");
  {
    const DirectoryLock holder(dir / "out", "the output folder of flame interpret");
    const test::CommandResult second = test::run_command(command);
    EXPECT_NE(second.status, 0) << second.output;
    EXPECT_NE(second.output.find(fmt::format("in use by pid {}", ::getpid())), std::string::npos)
        << second.output;
    EXPECT_FALSE(fs::exists(dir / "out" / "photo.json"));
  }
}

}  // namespace
}  // namespace flame::eval
