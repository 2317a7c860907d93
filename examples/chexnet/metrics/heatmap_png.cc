// Heat map overlays; see heatmap_png.h.
#include "examples/chexnet/metrics/heatmap_png.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "examples/chexnet/data/file_util.h"
#include "examples/chexnet/data/png_io.h"
#include "examples/chexnet/metrics/bitmap_font.h"

namespace kolo::chexnet {
namespace {

constexpr int kMinPictureSide = 256;
constexpr int kMargin = 8;
constexpr int kHeaderHeight = 40;
constexpr int kLegendWidth = 64;
constexpr int kBarWidth = 14;
// Opacity of the colour at the map's maximum; it falls linearly to 0 at the
// minimum, so that quiet regions show the X-ray untouched.
constexpr double kMaxAlpha = 0.6;
constexpr Rgb kBlack = {0, 0, 0};
constexpr Rgb kWhite = {255, 255, 255};
constexpr Rgb kPeak = {255, 255, 255};

uint8_t Byte(double x) {
  return static_cast<uint8_t>(std::lround(std::clamp(x, 0.0, 1.0) * 255.0));
}

}  // namespace

Rgb HeatColor(double t) {
  t = std::clamp(t, 0.0, 1.0);
  return {Byte(1.5 - std::abs(4.0 * t - 3.0)),
          Byte(1.5 - std::abs(4.0 * t - 2.0)),
          Byte(1.5 - std::abs(4.0 * t - 1.0))};
}

absl::StatusOr<std::string> RenderHeatmapPng(const HeatmapOverlay& overlay) {
  const Image& image = *overlay.image;
  if (image.width <= 0 || image.height <= 0 || overlay.map == nullptr) {
    return absl::InvalidArgumentError("RenderHeatmapPng: empty image or map");
  }
  const int zoom =
      std::max(1, (kMinPictureSide + image.width - 1) / image.width);
  const int picture_w = image.width * zoom, picture_h = image.height * zoom;
  const int left = kMargin, top = kHeaderHeight;
  const std::string title =
      absl::StrFormat("%s  P = %.3f", absl::AsciiStrToUpper(overlay.finding),
                      overlay.probability);
  Canvas canvas(std::max(left + picture_w + kLegendWidth,
                         2 * kMargin + TextWidth(title, 2)),
                top + picture_h + kMargin);

  const size_t count = static_cast<size_t>(image.width) * image.height;
  const auto [min_it, max_it] =
      std::minmax_element(overlay.map, overlay.map + count);
  const float min = *min_it, max = *max_it;
  const float range = max - min;
  for (int y = 0; y < picture_h; ++y) {
    for (int x = 0; x < picture_w; ++x) {
      const int sx = x / zoom, sy = y / zoom;
      const double gray = image.at(0, sy, sx);
      const double t =
          range > 0 ? (overlay.map[static_cast<size_t>(sy) * image.width + sx] -
                       min) /
                          range
                    : 0.0;
      const Rgb heat = HeatColor(t);
      const double alpha = kMaxAlpha * t;
      Rgb out;
      for (int c = 0; c < 3; ++c) {
        out[c] = Byte((1.0 - alpha) * gray + alpha * heat[c] / 255.0);
      }
      canvas.Set(left + x, top + y, out);
    }
  }
  for (const BoundingBox& box : overlay.boxes) {
    const int x0 = left + static_cast<int>(std::lround(box.x * zoom));
    const int y0 = top + static_cast<int>(std::lround(box.y * zoom));
    const int x1 =
        left + static_cast<int>(std::lround((box.x + box.width) * zoom)) - 1;
    const int y1 =
        top + static_cast<int>(std::lround((box.y + box.height) * zoom)) - 1;
    canvas.Rect(x0, y0, x1, y1, kWhite);
    canvas.Rect(x0 - 1, y0 - 1, x1 + 1, y1 + 1, kBlack);
  }
  if (overlay.peak.has_value()) {
    const int px = left + static_cast<int>(overlay.peak->first * zoom);
    const int py = top + static_cast<int>(overlay.peak->second * zoom);
    canvas.Line(px - 6, py, px + 6, py, kPeak, 2);
    canvas.Line(px, py - 6, px, py + 6, kPeak, 2);
  }

  canvas.Text(kMargin, 6, title, kBlack, 2);
  canvas.Text(kMargin, 26,
              range > 0 ? overlay.caption
                        : absl::StrCat(overlay.caption, "  (MAP IS FLAT)"),
              kBlack);

  // The legend: the colour bar from the map's maximum down to its minimum.
  const int bar_x = left + picture_w + 10;
  for (int y = 0; y < picture_h; ++y) {
    const Rgb color = HeatColor(1.0 - double(y) / std::max(1, picture_h - 1));
    canvas.FillRect(bar_x, top + y, bar_x + kBarWidth - 1, top + y, color);
  }
  canvas.Rect(bar_x - 1, top - 1, bar_x + kBarWidth, top + picture_h, kBlack);
  canvas.Text(bar_x + kBarWidth + 4, top, "MAX", kBlack);
  canvas.Text(bar_x + kBarWidth + 4, top + picture_h - kGlyphHeight, "MIN",
              kBlack);
  return EncodePng8(canvas.rgb().data(), canvas.width(), canvas.height(), 3);
}

absl::Status WriteHeatmapPng(const std::string& path,
                             const HeatmapOverlay& overlay) {
  absl::StatusOr<std::string> png = RenderHeatmapPng(overlay);
  if (!png.ok()) {
    return absl::Status(png.status().code(),
                        absl::StrCat(path, ": ", png.status().message()));
  }
  return WriteStringToFile(path, *png);
}

}  // namespace kolo::chexnet
