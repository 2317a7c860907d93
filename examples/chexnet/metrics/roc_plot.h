// A PNG of the 14 ROC curves, drawn without a plotting library.
//
// Layout (no legend needed): a 4 x 4 grid of square panels. Panels 1-14 show
// one class each, titled with its name and AUROC, the curve in the class's
// colour over the chance diagonal; an undefined class says so instead of a
// curve. Panel 15 overlays all 14 curves in the same colours, and panel 16
// prints the mean AUROC beside the published means. A title line runs above
// the grid.
#ifndef KOLO_EXAMPLES_CHEXNET_METRICS_ROC_PLOT_H_
#define KOLO_EXAMPLES_CHEXNET_METRICS_ROC_PLOT_H_

#include <array>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "examples/chexnet/data/labels.h"
#include "examples/chexnet/metrics/auroc.h"

namespace kolo::chexnet {

// RGB colour of each class's curve, kLabelNames order.
extern const std::array<std::array<uint8_t, 3>, kNumLabels> kClassColors;

struct RocPlotOptions {
  // Side of each panel in pixels; the image is 4 * panel_size wide and
  // 4 * panel_size + kRocPlotTitleHeight tall. At least 120.
  int panel_size = 200;
  // Drawn above the grid (upper case), e.g. the run's name.
  std::string title = "ChestX-ray14 ROC curves";
};

inline constexpr int kRocPlotTitleHeight = 24;

// Encodes the plot as an 8-bit RGB PNG.
absl::StatusOr<std::string> RenderRocPlotPng(const ChexnetMetrics& metrics,
                                             const RocPlotOptions& options);

// RenderRocPlotPng, written atomically to `path`.
absl::Status WriteRocPlot(const std::string& path,
                          const ChexnetMetrics& metrics,
                          const RocPlotOptions& options);

}  // namespace kolo::chexnet

#endif  // KOLO_EXAMPLES_CHEXNET_METRICS_ROC_PLOT_H_
