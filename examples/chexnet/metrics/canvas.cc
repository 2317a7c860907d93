// Canvas drawing primitives.
#include "examples/chexnet/metrics/canvas.h"

#include <cstdlib>

#include "examples/chexnet/metrics/bitmap_font.h"

namespace kolo::chexnet {

Canvas::Canvas(int width, int height)
    : width_(width),
      height_(height),
      rgb_(static_cast<size_t>(width) * height * 3, 255) {}

void Canvas::Set(int x, int y, const Rgb& color) {
  if (x < 0 || y < 0 || x >= width_ || y >= height_) return;
  uint8_t* p = &rgb_[(static_cast<size_t>(y) * width_ + x) * 3];
  p[0] = color[0];
  p[1] = color[1];
  p[2] = color[2];
}

void Canvas::FillRect(int x0, int y0, int x1, int y1, const Rgb& color) {
  for (int y = y0; y <= y1; ++y) {
    for (int x = x0; x <= x1; ++x) Set(x, y, color);
  }
}

void Canvas::Line(int x0, int y0, int x1, int y1, const Rgb& color,
                  int thickness, int dash) {
  const int dx = std::abs(x1 - x0), dy = -std::abs(y1 - y0);
  const int sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
  int error = dx + dy;
  for (int step = 0;; ++step) {
    if (dash == 0 || (step / dash) % 2 == 0) {
      FillRect(x0, y0, x0 + thickness - 1, y0 + thickness - 1, color);
    }
    if (x0 == x1 && y0 == y1) break;
    const int e2 = 2 * error;
    if (e2 >= dy) {
      error += dy;
      x0 += sx;
    }
    if (e2 <= dx) {
      error += dx;
      y0 += sy;
    }
  }
}

void Canvas::Rect(int x0, int y0, int x1, int y1, const Rgb& color) {
  Line(x0, y0, x1, y0, color, 1);
  Line(x1, y0, x1, y1, color, 1);
  Line(x1, y1, x0, y1, color, 1);
  Line(x0, y1, x0, y0, color, 1);
}

void Canvas::Text(int x, int y, absl::string_view text, const Rgb& color,
                  int scale) {
  for (char c : text) {
    for (int gy = 0; gy < kGlyphHeight; ++gy) {
      for (int gx = 0; gx < kGlyphWidth; ++gx) {
        if (!GlyphPixel(c, gx, gy)) continue;
        FillRect(x + gx * scale, y + gy * scale, x + (gx + 1) * scale - 1,
                 y + (gy + 1) * scale - 1, color);
      }
    }
    x += kGlyphAdvance * scale;
  }
}

}  // namespace kolo::chexnet
