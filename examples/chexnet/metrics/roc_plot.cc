// ROC curve panels rasterised into an RGB buffer and encoded with libspng.
#include "examples/chexnet/metrics/roc_plot.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "examples/chexnet/data/file_util.h"
#include "examples/chexnet/data/png_io.h"
#include "examples/chexnet/metrics/canvas.h"
#include "examples/chexnet/metrics/report.h"

namespace kolo::chexnet {

const std::array<std::array<uint8_t, 3>, kNumLabels> kClassColors = {{
    {31, 119, 180},   // Atelectasis: blue
    {255, 127, 14},   // Cardiomegaly: orange
    {44, 160, 44},    // Effusion: green
    {214, 39, 40},    // Infiltration: red
    {148, 103, 189},  // Mass: purple
    {140, 86, 75},    // Nodule: brown
    {227, 119, 194},  // Pneumonia: pink
    {96, 96, 96},     // Pneumothorax: grey
    {188, 189, 34},   // Consolidation: olive
    {23, 190, 207},   // Edema: cyan
    {0, 0, 128},      // Emphysema: navy
    {128, 0, 0},      // Fibrosis: maroon
    {0, 128, 128},    // Pleural_Thickening: teal
    {230, 171, 2},    // Hernia: amber
}};

namespace {

constexpr Rgb kBlack = {0, 0, 0};
constexpr Rgb kFrame = {160, 160, 160};
constexpr Rgb kGrid = {225, 225, 225};
constexpr Rgb kChance = {190, 190, 190};

std::string FormatAuroc(double auroc) {
  return std::isnan(auroc) ? std::string("N/A")
                           : absl::StrFormat("%.3f", auroc);
}

// The plotting square of a panel whose top-left corner is (left, top).
struct PlotArea {
  int x0, y0, x1, y1;  // Inclusive pixel bounds; (x0, y1) is FPR 0, TPR 0.

  int X(double fpr) const {
    return x0 + static_cast<int>(std::lround(fpr * (x1 - x0)));
  }
  int Y(double tpr) const {
    return y1 - static_cast<int>(std::lround(tpr * (y1 - y0)));
  }
};

PlotArea DrawAxes(Canvas& canvas, int left, int top, int size) {
  const int side = size - 44;
  const PlotArea area{left + 26, top + 18, left + 26 + side, top + 18 + side};
  for (double g : {0.25, 0.5, 0.75}) {
    canvas.Line(area.X(g), area.y0, area.X(g), area.y1, kGrid, 1);
    canvas.Line(area.x0, area.Y(g), area.x1, area.Y(g), kGrid, 1);
  }
  canvas.Line(area.x0, area.y1, area.x1, area.y0, kChance, 1, 3);
  canvas.Rect(area.x0, area.y0, area.x1, area.y1, kFrame);
  canvas.Text(area.x0 - 8, area.y1 + 4, "0", kBlack);
  canvas.Text(area.x1 - 2, area.y1 + 4, "1", kBlack);
  canvas.Text(area.x0 - 8, area.y0 - 3, "1", kBlack);
  canvas.Text((area.x0 + area.x1) / 2 - 8, area.y1 + 4, "FPR", kBlack);
  canvas.Text(left + 2, (area.y0 + area.y1) / 2 - 3, "TPR", kBlack);
  return area;
}

void DrawCurve(Canvas& canvas, const PlotArea& area,
               const std::vector<RocPoint>& roc, const Rgb& color,
               int thickness) {
  for (size_t i = 1; i < roc.size(); ++i) {
    canvas.Line(area.X(roc[i - 1].false_positive_rate),
                area.Y(roc[i - 1].true_positive_rate),
                area.X(roc[i].false_positive_rate),
                area.Y(roc[i].true_positive_rate), color, thickness);
  }
}

}  // namespace

absl::StatusOr<std::string> RenderRocPlotPng(const ChexnetMetrics& metrics,
                                             const RocPlotOptions& options) {
  const int size = options.panel_size;
  if (size < 120) {
    return absl::InvalidArgumentError(absl::StrCat(
        "RocPlotOptions::panel_size must be at least 120, got ", size));
  }
  Canvas canvas(4 * size, 4 * size + kRocPlotTitleHeight);
  canvas.Text(8, 6, options.title, kBlack, 2);

  for (int panel = 0; panel < 16; ++panel) {
    const int left = (panel % 4) * size;
    const int top = kRocPlotTitleHeight + (panel / 4) * size;
    canvas.Rect(left + 1, top + 1, left + size - 2, top + size - 2, kFrame);
    if (panel < kNumLabels) {
      const ClassMetrics& m = metrics.classes[panel];
      const Rgb& color = kClassColors[panel];
      canvas.Text(left + 6, top + 6,
                  absl::StrCat(kLabelNames[panel], " ", FormatAuroc(m.auroc)),
                  color);
      const PlotArea area = DrawAxes(canvas, left, top, size);
      if (m.roc.empty()) {
        canvas.Text(area.x0 + 8, (area.y0 + area.y1) / 2 - 12,
                    "UNDEFINED:", kBlack);
        canvas.Text(area.x0 + 8, (area.y0 + area.y1) / 2,
                    absl::StrCat(m.positives, " POS, ", m.negatives, " NEG"),
                    kBlack);
      } else {
        DrawCurve(canvas, area, m.roc, color, 2);
      }
    } else if (panel == kNumLabels) {
      canvas.Text(left + 6, top + 6, "ALL CLASSES", kBlack);
      const PlotArea area = DrawAxes(canvas, left, top, size);
      for (int c = 0; c < kNumLabels; ++c) {
        DrawCurve(canvas, area, metrics.classes[c].roc, kClassColors[c], 1);
      }
    } else {
      int y = top + 12;
      canvas.Text(left + 10, y, "MEAN AUROC", kBlack);
      canvas.Text(left + 10, y += 14, FormatAuroc(metrics.mean_auroc), kBlack,
                  3);
      canvas.Text(
          left + 10, y += 30,
          absl::StrCat(metrics.num_defined, " OF ", kNumLabels, " CLASSES"),
          kBlack);
      canvas.Text(left + 10, y += 12,
                  absl::StrCat(metrics.num_images, " IMAGES"), kBlack);
      canvas.Text(left + 10, y += 24,
                  absl::StrCat(kChexnetPaper.name, " ",
                               FormatAuroc(kChexnetPaper.mean)),
                  kBlack);
      canvas.Text(
          left + 10, y += 12,
          absl::StrCat(kWang2017.name, " ", FormatAuroc(kWang2017.mean)),
          kBlack);
      canvas.Text(left + 10, y += 12, "(PUBLISHED, REAL DATA)", kBlack);
    }
  }
  return EncodePng8(canvas.rgb().data(), 4 * size,
                    4 * size + kRocPlotTitleHeight, 3);
}

absl::Status WriteRocPlot(const std::string& path,
                          const ChexnetMetrics& metrics,
                          const RocPlotOptions& options) {
  absl::StatusOr<std::string> png = RenderRocPlotPng(metrics, options);
  if (!png.ok()) return png.status();
  return WriteStringToFile(path, *png);
}

}  // namespace kolo::chexnet
