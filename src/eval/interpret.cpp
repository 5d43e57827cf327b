#include "eval/interpret.h"

#include <algorithm>
#include <cmath>

#include "data/image_encode.h"
#include "data/image_transform.h"
#include "eval/bitmap_font.h"
#include "util/error.h"
#include "util/file.h"

namespace flame::eval {

namespace {

std::string token_text(const llm::Tokenizer& tokenizer, int64_t id) {
  // An LLM's vocabulary may be padded beyond its tokenizer's.
  if (id < 0 || id >= tokenizer.vocab_size()) return fmt::format("<{}>", id);
  return tokenizer.decode({static_cast<int32_t>(id)});
}

// Undoes the CLIP normalisation of a [3, S, S] eval input -> uint8 [S, S, 3].
torch::Tensor model_view(const torch::Tensor& normalized) {
  const auto mean =
      torch::tensor({data::kClipMean[0], data::kClipMean[1], data::kClipMean[2]}, torch::kFloat32);
  const auto std = torch::tensor({data::kClipStd[0], data::kClipStd[1], data::kClipStd[2]}, torch::kFloat32);
  const torch::Tensor rgb = normalized * std.view({3, 1, 1}) + mean.view({3, 1, 1});
  return (rgb * 255.0).round().clamp(0, 255).to(torch::kUInt8).permute({1, 2, 0}).contiguous();
}

// Pixel span [begin, end) of cell `i` when each patch is patch_px pixels.
std::pair<int, int> cell_span(int64_t i, int64_t pool, int64_t patch_grid, int patch_px) {
  const int64_t first = i * pool, last = std::min(patch_grid, (i + 1) * pool);
  return {static_cast<int>(first * patch_px), static_cast<int>(last * patch_px)};
}

// Lightens one pixel halfway to white: grid lines stay visible on dark and
// light images without hiding them.
void lighten(uint8_t* p) {
  for (int c = 0; c < 3; ++c) p[c] = static_cast<uint8_t>((p[c] + 255 + 1) / 2);
}

}  // namespace

torch::Tensor pool_patch_grid(const torch::Tensor& grid_tokens, int64_t pool) {
  if (!grid_tokens.defined() || grid_tokens.dim() != 3 || grid_tokens.size(0) != grid_tokens.size(1)) {
    fail("pool_patch_grid: expected a [g, g, dim] token grid");
  }
  const int64_t g = grid_tokens.size(0);
  if (pool < 1 || pool > g) fail("pool {} is out of range for a {} x {} patch grid (1..{})", pool, g, g, g);
  if (pool == 1) return grid_tokens;
  const int64_t cells = (g + pool - 1) / pool;
  std::vector<torch::Tensor> rows;
  for (int64_t r = 0; r < cells; ++r) {
    std::vector<torch::Tensor> row;
    const torch::Tensor band = grid_tokens.slice(0, r * pool, std::min(g, (r + 1) * pool));
    for (int64_t c = 0; c < cells; ++c) {
      const torch::Tensor block = band.slice(1, c * pool, std::min(g, (c + 1) * pool));
      row.push_back(block.mean(std::vector<int64_t>{0, 1}));
    }
    rows.push_back(torch::stack(row));
  }
  return torch::stack(rows);
}

void check_interpretable(const vision::ImageEncoder& encoder, const llm::Transformer& model) {
  const int64_t text_dim = encoder->text_dim(), hidden = model.config().hidden_size;
  if (text_dim != hidden) {
    fail(
        "the image encoder projects into {} dimensions but the LLM's hidden size is {}: interpret it with "
        "the "
        "LLM it was trained against",
        text_dim, hidden);
  }
}

InterpretResult interpret_image(vision::ImageEncoder& encoder, const llm::Transformer& model,
                                const llm::Tokenizer& tokenizer, const torch::Tensor& image_u8_hwc,
                                int pool) {
  check_interpretable(encoder, model);
  const vision::VitConfig& config = encoder->config();
  const int64_t g = config.grid_size();
  if (pool < 1 || pool > g)
    fail("pool {} is out of range for the {} x {} patch grid of {}", pool, g, g, config.name);
  torch::NoGradGuard no_grad;
  encoder->eval();  // no patch dropout: every patch keeps its place in the grid

  data::ImageTransformOptions transform;
  transform.size = config.image_size;
  transform.train = false;
  const torch::Tensor input = data::transform_image(image_u8_hwc, transform, 0);
  const torch::Device device = encoder->parameters().front().device();
  const torch::Tensor tokens = encoder->encode(input.unsqueeze(0).to(device)).tokens;  // [1, N, D]
  if (tokens.size(1) != g * g) {
    fail("{}: the encoder returned {} patch tokens, expected {} x {}", config.name, tokens.size(1), g, g);
  }

  InterpretResult result;
  result.patch_grid = g;
  result.pool = pool;
  result.view = model_view(input);
  const torch::Tensor cells = pool_patch_grid(tokens[0].reshape({g, g, tokens.size(2)}), pool);
  result.grid = cells.size(0);
  const torch::Tensor probs = torch::softmax(model.output_head(cells), -1);  // [grid, grid, vocab] fp32
  const int64_t k = std::min<int64_t>(kInterpretTopK, probs.size(-1));
  const auto [values, indices] = probs.topk(k, -1);
  const torch::Tensor top_p = values.to(torch::kCPU).contiguous(),
                      top_id = indices.to(torch::kCPU).contiguous();
  const float* p = top_p.data_ptr<float>();
  const int64_t* id = top_id.data_ptr<int64_t>();
  for (int64_t r = 0; r < result.grid; ++r) {
    for (int64_t c = 0; c < result.grid; ++c) {
      PatchWord cell;
      cell.row = r;
      cell.col = c;
      const int64_t base = (r * result.grid + c) * k;
      for (int64_t j = 0; j < k; ++j) {
        cell.top.push_back(
            {static_cast<int32_t>(id[base + j]), token_text(tokenizer, id[base + j]), p[base + j]});
      }
      cell.token_id = cell.top[0].token_id;
      cell.token = cell.top[0].token;
      cell.prob = cell.top[0].prob;
      result.patches.push_back(std::move(cell));
    }
  }
  return result;
}

std::string display_word(const std::string& token, size_t max_chars) {
  auto is_space = [](char ch) {
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f';
  };
  size_t begin = 0, end = token.size();
  while (begin < end && is_space(token[begin])) ++begin;
  while (end > begin && is_space(token[end - 1])) --end;
  std::string word;
  for (size_t i = begin; i < end && word.size() < max_chars; ++i) {
    const auto u = static_cast<unsigned char>(token[i]);
    if (u >= 0x80 && u < 0xC0) continue;  // UTF-8 continuation byte: its character is already a '?'
    word.push_back(u >= 0x20 && u < 0x7F ? static_cast<char>(u) : '?');
  }
  return word;
}

nlohmann::json interpretation_json(const InterpretResult& result, const std::string& image) {
  nlohmann::json patches = nlohmann::json::array();
  for (const PatchWord& cell : result.patches) {
    nlohmann::json top = nlohmann::json::array();
    for (const TokenProb& t : cell.top)
      top.push_back({{"token_id", t.token_id}, {"token", t.token}, {"prob", t.prob}});
    patches.push_back({{"row", cell.row},
                       {"col", cell.col},
                       {"token_id", cell.token_id},
                       {"token", cell.token},
                       {"prob", cell.prob},
                       {"top5", std::move(top)}});
  }
  return {{"image", image},
          {"grid", result.grid},
          {"patch_grid", result.patch_grid},
          {"pool", result.pool},
          {"image_size", result.view.defined() ? result.view.size(0) : 0},
          {"patches", std::move(patches)}};
}

torch::Tensor render_interpretation(const InterpretResult& result, int cell_px) {
  const int64_t g = result.patch_grid, pool = result.pool;
  if (g < 1 || result.grid < 1 || !result.view.defined()) fail("render_interpretation: empty result");
  if (cell_px < 8) fail("render_interpretation: cells of {} px are too small", cell_px);
  const int patch_px = std::max<int>(1, static_cast<int>((cell_px + pool - 1) / pool));
  const int64_t side = g * patch_px;

  // Nearest-neighbour upscaling keeps the model's pixels visible as they are.
  const int64_t source = result.view.size(0);
  const torch::Tensor index =
      ((torch::arange(side, torch::kFloat64) + 0.5) * static_cast<double>(source) / static_cast<double>(side))
          .floor()
          .clamp_max(static_cast<double>(source - 1))
          .to(torch::kInt64);
  torch::Tensor canvas =
      result.view.to(torch::kCPU).index_select(0, index).index_select(1, index).contiguous();
  uint8_t* pixels = canvas.data_ptr<uint8_t>();

  // Grid lines on each cell's top and left edge and the picture's bottom and right edge.
  std::vector<bool> line(static_cast<size_t>(side), false);
  for (int64_t i = 0; i < result.grid; ++i)
    line[static_cast<size_t>(cell_span(i, pool, g, patch_px).first)] = true;
  line[static_cast<size_t>(side - 1)] = true;
  for (int64_t y = 0; y < side; ++y) {
    for (int64_t x = 0; x < side; ++x) {
      if (line[static_cast<size_t>(y)] || line[static_cast<size_t>(x)]) lighten(pixels + (y * side + x) * 3);
    }
  }

  const int scale = cell_px >= 96 ? 2 : 1;
  const Rgb white{255, 255, 255}, yellow{255, 230, 120}, black{0, 0, 0};
  const int line_h = text_height(scale) + 3 * scale;  // glyphs + outline + a gap
  for (const PatchWord& cell : result.patches) {
    const auto [x0, x1] = cell_span(cell.col, pool, g, patch_px);
    const auto [y0, y1] = cell_span(cell.row, pool, g, patch_px);
    const int w = x1 - x0, h = y1 - y0;
    // Room for n characters: n * advance - 1 font pixels plus the outline on both sides.
    const int fit = (w - 2 * scale - 2) / scale + 1;
    const size_t max_chars = fit > 0 ? static_cast<size_t>(fit / kGlyphAdvance) : 0;
    const std::string word = display_word(cell.token, max_chars);
    const std::string percent = fmt::format("{}%", static_cast<int>(std::lround(cell.prob * 100.0f)));
    const bool two_lines = h >= 2 * line_h + 2 && percent.size() <= max_chars;
    const int block_h = two_lines ? line_h + text_height(scale) : text_height(scale);
    const int top = y0 + (h - block_h) / 2;
    draw_text_outlined(canvas, x0 + (w - text_width(word, scale)) / 2, top, word, white, black, scale);
    if (two_lines) {
      draw_text_outlined(canvas, x0 + (w - text_width(percent, scale)) / 2, top + line_h, percent, yellow,
                         black, scale);
    }
  }
  return canvas;
}

void write_interpretation(const InterpretResult& result, const std::filesystem::path& out_dir,
                          const std::string& name, const std::string& image) {
  std::filesystem::create_directories(out_dir);
  write_json_file_atomic(out_dir / (name + ".json"), interpretation_json(result, image));
  data::write_png(out_dir / (name + ".png"), render_interpretation(result));
}

}  // namespace flame::eval
