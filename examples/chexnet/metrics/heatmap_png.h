// A heat map over a chest X-ray as a PNG a reader can look at: the X-ray in
// gray with the map laid over it in a colour map (blue = low, red = high,
// transparent where the map is near zero), a header with the finding's name
// and probability, and a colour bar legend. Drawn with Canvas; no graphics
// library.
#ifndef KOLO_EXAMPLES_CHEXNET_METRICS_HEATMAP_PNG_H_
#define KOLO_EXAMPLES_CHEXNET_METRICS_HEATMAP_PNG_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "examples/chexnet/data/bbox_list.h"
#include "examples/chexnet/data/image.h"
#include "examples/chexnet/metrics/canvas.h"

namespace kolo::chexnet {

// The colour map (the classic "jet" of Grad-CAM figures) at t in [0, 1].
Rgb HeatColor(double t);

struct HeatmapOverlay {
  // The image as read (its first channel is drawn, in [0, 1]).
  const Image* image = nullptr;
  // image->width * image->height values, row-major; drawn min-max
  // normalised (a flat map is drawn as no colour, and said so).
  const float* map = nullptr;
  std::string finding;  // e.g. "Cardiomegaly"
  double probability = 0;
  std::string caption;  // Second header line, e.g. "GRAD-CAM, DENSENET121"
  // Ground-truth boxes to outline (white), in image pixels.
  std::vector<BoundingBox> boxes;
  // Where to mark the map's peak (a cross), in image pixels.
  std::optional<std::pair<double, double>> peak;
};

// The overlay as an 8-bit RGB PNG. Images smaller than 256 pixels a side are
// magnified by a whole factor so that the picture is at least 256 wide.
absl::StatusOr<std::string> RenderHeatmapPng(const HeatmapOverlay& overlay);

// RenderHeatmapPng, written atomically to `path`.
absl::Status WriteHeatmapPng(const std::string& path,
                             const HeatmapOverlay& overlay);

}  // namespace kolo::chexnet

#endif  // KOLO_EXAMPLES_CHEXNET_METRICS_HEATMAP_PNG_H_
