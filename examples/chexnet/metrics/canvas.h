// An RGB raster for drawing plots and overlays without a graphics library:
// pixels, filled and outlined rectangles, Bresenham lines and text in the 5x7
// bitmap font (bitmap_font.h). Drawing outside the canvas is clipped. Starts
// white. A plain value type.
#ifndef KOLO_EXAMPLES_CHEXNET_METRICS_CANVAS_H_
#define KOLO_EXAMPLES_CHEXNET_METRICS_CANVAS_H_

#include <array>
#include <cstdint>
#include <vector>

#include "absl/strings/string_view.h"

namespace kolo::chexnet {

using Rgb = std::array<uint8_t, 3>;

class Canvas {
 public:
  Canvas(int width, int height);

  int width() const { return width_; }
  int height() const { return height_; }
  // Interleaved RGB, row by row (what EncodePng8 takes).
  const std::vector<uint8_t>& rgb() const { return rgb_; }

  void Set(int x, int y, const Rgb& color);
  // Inclusive bounds.
  void FillRect(int x0, int y0, int x1, int y1, const Rgb& color);
  // Bresenham; `thickness` paints a square brush; `dash` > 0 skips every
  // other run of `dash` pixels.
  void Line(int x0, int y0, int x1, int y1, const Rgb& color, int thickness,
            int dash = 0);
  // One-pixel outline, inclusive bounds.
  void Rect(int x0, int y0, int x1, int y1, const Rgb& color);
  // Top-left corner at (x, y); each font pixel is a scale x scale square.
  void Text(int x, int y, absl::string_view text, const Rgb& color,
            int scale = 1);

 private:
  int width_;
  int height_;
  std::vector<uint8_t> rgb_;
};

}  // namespace kolo::chexnet

#endif  // KOLO_EXAMPLES_CHEXNET_METRICS_CANVAS_H_
