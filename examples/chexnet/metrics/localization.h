// Weakly supervised localization scores of heat maps against radiologist
// boxes, as the ChestX-ray8 paper (Wang et al. 2017, section 3.3 and
// Table 4) and the pointing game (Zhang et al. 2016) define them.
//
// Boxes from a heat map (Wang et al.): the map is min-max normalised to
// [0, 255] and thresholded (>= box_threshold, 180 by default; the paper
// names 60 and 180); every 8-connected region of the binary map gives the
// bounding box that covers it.
//
// A ground-truth box is localized at T(IoBB) when some box from the map has
// intersection / (that map box's area) > T, and at T(IoU) when some map box
// has intersection over union > T. Accuracy is the fraction of ground-truth
// boxes localized. A map box is a false positive when it localizes none of
// the image's boxes of that finding; AFP is their number averaged over the
// (image, finding) pairs.
//
// Pointing game: the map's peak, given by the caller, is a hit when it falls
// inside one of the (image, finding) pair's boxes, grown by a tolerance on
// each side (15 pixels at 224, i.e. 15/224 of the image side, as Zhang et
// al.). For Grad-CAM the peak is the centre of the strongest cell of the map
// at the feature maps' own resolution (heatmaps.h): bilinear upsampling with
// half-pixel centres holds the border cells' values out to the image edge,
// so the upsampled map's maximum is a plateau reaching into a corner.
//
// Maps are row-major floats over the image's pixel grid (the grid the boxes
// are given in). Plain C++; not thread-safe.
#ifndef KOLO_EXAMPLES_CHEXNET_METRICS_LOCALIZATION_H_
#define KOLO_EXAMPLES_CHEXNET_METRICS_LOCALIZATION_H_

#include <array>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "examples/chexnet/data/bbox_list.h"
#include "examples/chexnet/data/labels.h"

namespace kolo::chexnet {

// T(IoBB) of the paper's Table 4 and T(IoU) of its supplementary material.
inline constexpr std::array<double, 5> kIoBBThresholds = {0.1, 0.25, 0.5, 0.75,
                                                          0.9};
inline constexpr std::array<double, 7> kIoUThresholds = {0.1, 0.2, 0.3, 0.4,
                                                         0.5, 0.6, 0.7};
inline constexpr double kDefaultBoxThreshold = 180;
inline constexpr double kPointingToleranceFraction = 15.0 / 224.0;

// Wang et al. 2017, Table 4 (ResNet-50 on the real ChestX-ray8 boxes):
// accuracy and average false positives per finding (kLabelNames 0..7) at
// each kIoBBThresholds value.
struct WangLocalization {
  std::array<std::array<double, kNumBoxedFindings>, kIoBBThresholds.size()>
      accuracy;
  std::array<std::array<double, kNumBoxedFindings>, kIoBBThresholds.size()> afp;
};
extern const WangLocalization kWang2017Localization;

struct HeatMapPeak {
  double x = 0;  // Pixel centres are at integer + 0.5.
  double y = 0;
};

// The centre of the pixels within 1e-6 (relative) of the map's maximum, so
// that a plateau yields its middle.
// REQUIRES: width, height > 0; map holds width * height finite values.
HeatMapPeak FindPeak(const float* map, int width, int height);

// The boxes of the 8-connected regions where the min-max normalised map
// (0..255) is >= threshold. A constant map gives no box.
std::vector<BoundingBox> BoxesFromHeatMap(const float* map, int width,
                                          int height, double threshold);

double IntersectionOverUnion(const BoundingBox& a, const BoundingBox& b);
// Intersection over the area of `detected`.
double IntersectionOverDetected(const BoundingBox& detected,
                                const BoundingBox& truth);

struct ThresholdScore {
  double threshold = 0;
  int localized = 0;        // Ground-truth boxes localized.
  int false_positives = 0;  // Map boxes that localize nothing.
};

struct FindingLocalization {
  int boxes = 0;          // Ground-truth boxes.
  int pairs = 0;          // (image, finding) pairs scored.
  int pointing_hits = 0;  // Pairs whose map peak hit one of their boxes.
  std::array<ThresholdScore, kIoBBThresholds.size()> iobb{};
  std::array<ThresholdScore, kIoUThresholds.size()> iou{};
};

struct LocalizationMetrics {
  double box_threshold = kDefaultBoxThreshold;
  int images = 0;
  std::array<FindingLocalization, kNumLabels> findings{};
};

class LocalizationAccumulator {
 public:
  explicit LocalizationAccumulator(double box_threshold = kDefaultBoxThreshold);

  // One (image, finding) pair: the finding's heat map over the image, its
  // peak, and the pair's ground-truth boxes (at least one).
  void Add(const std::string& image, int finding, const float* map, int width,
           int height, const HeatMapPeak& peak,
           const std::vector<BoundingBox>& truth);

  const LocalizationMetrics& metrics() const { return metrics_; }

 private:
  LocalizationMetrics metrics_;
  std::set<std::string> images_seen_;
};

// A table per finding with boxes: the box count, the pointing-game accuracy,
// accuracy at each T(IoBB) beside Wang et al.'s (for their 8 findings), then
// accuracy at each T(IoU); a note on how boxes were made.
std::string FormatLocalizationTable(const LocalizationMetrics& metrics);

// {"images", "box_threshold", "pointing_tolerance_fraction", "findings":
//  [{"name", "boxes", "pairs", "pointing_accuracy", "iobb": [{"threshold",
//  "accuracy", "afp", "wang_2017_accuracy", "wang_2017_afp"}], "iou":
//  [{"threshold", "accuracy", "afp"}]}]} for the findings with boxes.
nlohmann::json LocalizationToJson(const LocalizationMetrics& metrics);

}  // namespace kolo::chexnet

#endif  // KOLO_EXAMPLES_CHEXNET_METRICS_LOCALIZATION_H_
