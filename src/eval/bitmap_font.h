// A tiny 5 x 7 bitmap font for printable ASCII (0x20-0x7E), drawn straight
// into uint8 RGB images: eval pictures need labels, and a font table of our
// own keeps the project free of font files and rendering libraries.
#pragma once

#include <torch/torch.h>

#include <array>
#include <cstdint>
#include <string>

namespace flame::eval {

using Rgb = std::array<uint8_t, 3>;

inline constexpr int kGlyphWidth = 5;
inline constexpr int kGlyphHeight = 7;
inline constexpr int kGlyphAdvance = kGlyphWidth + 1;  // one blank column between characters

// Pixel width and height of `text` drawn at `scale` (each font pixel becomes
// scale x scale image pixels); no trailing gap.
int text_width(const std::string& text, int scale = 1);
inline int text_height(int scale = 1) {
  return kGlyphHeight * scale;
}

// Draws `text` with its top-left corner at (x, y) into a uint8 [H, W, 3] CPU
// tensor, in place. Pixels outside the image are clipped; characters outside
// 0x20-0x7E are drawn as '?'. Only the glyphs' set pixels are written.
void draw_text(torch::Tensor& rgb_u8_hwc, int x, int y, const std::string& text, const Rgb& color,
               int scale = 1);

// draw_text over a one-pixel (times scale) outline in `outline`, so the text
// reads on any background.
void draw_text_outlined(torch::Tensor& rgb_u8_hwc, int x, int y, const std::string& text, const Rgb& color,
                        const Rgb& outline, int scale = 1);

}  // namespace flame::eval
