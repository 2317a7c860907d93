// Localization scoring; see localization.h.
#include "examples/chexnet/metrics/localization.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace kolo::chexnet {

// Transcribed from Table 4 of "ChestX-ray8: Hospital-scale Chest X-ray
// Database and Benchmarks on Weakly-Supervised Classification and
// Localization of Common Thorax Diseases" (CVPR 2017).
const WangLocalization kWang2017Localization = {
    {{
        {0.7277, 0.9931, 0.7124, 0.7886, 0.4352, 0.1645, 0.7500, 0.4591},
        {0.5500, 0.9794, 0.5424, 0.5772, 0.2823, 0.0506, 0.5583, 0.3469},
        {0.2833, 0.8767, 0.3333, 0.4227, 0.1411, 0.0126, 0.3833, 0.1836},
        {0.1666, 0.7260, 0.2418, 0.3252, 0.1176, 0.0126, 0.2583, 0.1020},
        {0.1333, 0.6849, 0.2091, 0.2520, 0.0588, 0.0126, 0.2416, 0.0816},
    }},
    {{
        {0.8323, 0.3506, 0.7998, 0.5589, 0.6423, 0.6047, 0.9055, 0.4776},
        {0.9167, 0.4553, 0.8598, 0.6077, 0.6707, 0.6158, 0.9614, 0.5000},
        {1.0203, 0.5630, 0.9268, 0.6585, 0.6941, 0.6189, 1.0132, 0.5285},
        {1.0619, 0.6616, 0.9603, 0.6921, 0.7043, 0.6199, 1.0569, 0.5396},
        {1.0752, 0.7226, 0.9797, 0.7124, 0.7144, 0.6199, 1.0732, 0.5437},
    }},
};

namespace {

constexpr double kPeakTolerance = 1e-6;

double Intersection(const BoundingBox& a, const BoundingBox& b) {
  const double w = std::min(a.x + a.width, b.x + b.width) - std::max(a.x, b.x);
  const double h =
      std::min(a.y + a.height, b.y + b.height) - std::max(a.y, b.y);
  return w > 0 && h > 0 ? w * h : 0.0;
}

template <size_t N, typename Overlap>
void Score(const std::vector<BoundingBox>& detected,
           const std::vector<BoundingBox>& truth,
           const std::array<double, N>& thresholds, Overlap overlap,
           std::array<ThresholdScore, N>* scores) {
  for (size_t t = 0; t < N; ++t) {
    ThresholdScore& score = (*scores)[t];
    score.threshold = thresholds[t];
    for (const BoundingBox& box : truth) {
      for (const BoundingBox& d : detected) {
        if (overlap(d, box) > thresholds[t]) {
          ++score.localized;
          break;
        }
      }
    }
    for (const BoundingBox& d : detected) {
      bool localizes = false;
      for (const BoundingBox& box : truth) {
        localizes = localizes || overlap(d, box) > thresholds[t];
      }
      if (!localizes) ++score.false_positives;
    }
  }
}

std::string Fraction(int part, int whole) {
  return whole == 0 ? "n/a" : absl::StrFormat("%.3f", double(part) / whole);
}

}  // namespace

HeatMapPeak FindPeak(const float* map, int width, int height) {
  const size_t count = static_cast<size_t>(width) * height;
  const float max = *std::max_element(map, map + count);
  const double floor = max - kPeakTolerance * std::max(1.0f, std::abs(max));
  double sum_x = 0, sum_y = 0;
  int n = 0;
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      if (map[static_cast<size_t>(y) * width + x] < floor) continue;
      sum_x += x + 0.5;
      sum_y += y + 0.5;
      ++n;
    }
  }
  return {sum_x / n, sum_y / n};
}

std::vector<BoundingBox> BoxesFromHeatMap(const float* map, int width,
                                          int height, double threshold) {
  const size_t count = static_cast<size_t>(width) * height;
  const auto [min_it, max_it] = std::minmax_element(map, map + count);
  const double min = *min_it, range = *max_it - *min_it;
  std::vector<BoundingBox> boxes;
  if (!(range > 0)) return boxes;
  std::vector<uint8_t> on(count), seen(count, 0);
  for (size_t i = 0; i < count; ++i) {
    on[i] = (map[i] - min) / range * 255.0 >= threshold;
  }
  std::vector<size_t> stack;
  for (size_t start = 0; start < count; ++start) {
    if (!on[start] || seen[start]) continue;
    int x0 = width, y0 = height, x1 = -1, y1 = -1;
    seen[start] = 1;
    stack.push_back(start);
    while (!stack.empty()) {
      const size_t i = stack.back();
      stack.pop_back();
      const int x = static_cast<int>(i % width),
                y = static_cast<int>(i / width);
      x0 = std::min(x0, x);
      x1 = std::max(x1, x);
      y0 = std::min(y0, y);
      y1 = std::max(y1, y);
      for (int dy = -1; dy <= 1; ++dy) {
        for (int dx = -1; dx <= 1; ++dx) {
          const int nx = x + dx, ny = y + dy;
          if (nx < 0 || ny < 0 || nx >= width || ny >= height) continue;
          const size_t j = static_cast<size_t>(ny) * width + nx;
          if (on[j] && !seen[j]) {
            seen[j] = 1;
            stack.push_back(j);
          }
        }
      }
    }
    boxes.push_back(
        {double(x0), double(y0), double(x1 - x0 + 1), double(y1 - y0 + 1)});
  }
  return boxes;
}

double IntersectionOverUnion(const BoundingBox& a, const BoundingBox& b) {
  const double inter = Intersection(a, b);
  const double uni = a.area() + b.area() - inter;
  return uni > 0 ? inter / uni : 0.0;
}

double IntersectionOverDetected(const BoundingBox& detected,
                                const BoundingBox& truth) {
  return detected.area() > 0 ? Intersection(detected, truth) / detected.area()
                             : 0.0;
}

LocalizationAccumulator::LocalizationAccumulator(double box_threshold) {
  metrics_.box_threshold = box_threshold;
}

void LocalizationAccumulator::Add(const std::string& image, int finding,
                                  const float* map, int width, int height,
                                  const HeatMapPeak& peak,
                                  const std::vector<BoundingBox>& truth) {
  if (images_seen_.insert(image).second) ++metrics_.images;
  FindingLocalization& f = metrics_.findings[finding];
  f.boxes += static_cast<int>(truth.size());
  ++f.pairs;
  const double tolerance = kPointingToleranceFraction * std::max(width, height);
  for (const BoundingBox& box : truth) {
    if (peak.x >= box.x - tolerance &&
        peak.x <= box.x + box.width + tolerance &&
        peak.y >= box.y - tolerance &&
        peak.y <= box.y + box.height + tolerance) {
      ++f.pointing_hits;
      break;
    }
  }
  const std::vector<BoundingBox> detected =
      BoxesFromHeatMap(map, width, height, metrics_.box_threshold);
  Score(detected, truth, kIoBBThresholds, IntersectionOverDetected, &f.iobb);
  Score(detected, truth, kIoUThresholds, IntersectionOverUnion, &f.iou);
}

std::string FormatLocalizationTable(const LocalizationMetrics& metrics) {
  int boxes = 0;
  for (const FindingLocalization& f : metrics.findings) boxes += f.boxes;
  std::string out = absl::StrFormat(
      "Localization: %d boxes on %d images; Grad-CAM boxes where the map is "
      ">= %g/255 of its range\n",
      boxes, metrics.images, metrics.box_threshold);
  absl::StrAppend(&out, absl::StrFormat("%-20s %5s %8s", "", "", "pointing"));
  absl::StrAppend(&out, "  accuracy at T(IoBB): kolo (Wang et al. 2017)\n");
  absl::StrAppend(&out,
                  absl::StrFormat("%-20s %5s %8s", "Finding", "Boxes", "game"));
  for (double t : kIoBBThresholds) {
    absl::StrAppend(&out, absl::StrFormat(" %15s", absl::StrCat(t)));
  }
  out += "\n";
  for (int c = 0; c < kNumLabels; ++c) {
    const FindingLocalization& f = metrics.findings[c];
    if (f.boxes == 0) continue;
    absl::StrAppend(&out,
                    absl::StrFormat("%-20s %5d %8s", kLabelNames[c], f.boxes,
                                    Fraction(f.pointing_hits, f.pairs)));
    for (size_t t = 0; t < kIoBBThresholds.size(); ++t) {
      std::string cell = Fraction(f.iobb[t].localized, f.boxes);
      if (c < kNumBoxedFindings) {
        absl::StrAppend(
            &cell,
            absl::StrFormat(" (%.3f)", kWang2017Localization.accuracy[t][c]));
      }
      absl::StrAppend(&out, absl::StrFormat(" %15s", cell));
    }
    out += "\n";
  }
  absl::StrAppend(&out, absl::StrFormat("%-20s %5s %8s", "", "", ""),
                  "  accuracy at T(IoU)\n",
                  absl::StrFormat("%-20s %5s %8s", "Finding", "", ""));
  for (double t : kIoUThresholds) {
    absl::StrAppend(&out, absl::StrFormat(" %6s", absl::StrCat(t)));
  }
  out += "\n";
  for (int c = 0; c < kNumLabels; ++c) {
    const FindingLocalization& f = metrics.findings[c];
    if (f.boxes == 0) continue;
    absl::StrAppend(&out,
                    absl::StrFormat("%-20s %5s %8s", kLabelNames[c], "", ""));
    for (const ThresholdScore& s : f.iou) {
      absl::StrAppend(&out,
                      absl::StrFormat(" %6s", Fraction(s.localized, f.boxes)));
    }
    out += "\n";
  }
  return out;
}

nlohmann::json LocalizationToJson(const LocalizationMetrics& metrics) {
  nlohmann::json findings = nlohmann::json::array();
  auto ratio = [](double part, double whole) {
    return whole > 0 ? nlohmann::json(part / whole) : nlohmann::json(nullptr);
  };
  for (int c = 0; c < kNumLabels; ++c) {
    const FindingLocalization& f = metrics.findings[c];
    if (f.boxes == 0) continue;
    nlohmann::json iobb = nlohmann::json::array();
    for (size_t t = 0; t < kIoBBThresholds.size(); ++t) {
      nlohmann::json row = {{"threshold", kIoBBThresholds[t]},
                            {"accuracy", ratio(f.iobb[t].localized, f.boxes)},
                            {"afp", ratio(f.iobb[t].false_positives, f.pairs)}};
      if (c < kNumBoxedFindings) {
        row["wang_2017_accuracy"] = kWang2017Localization.accuracy[t][c];
        row["wang_2017_afp"] = kWang2017Localization.afp[t][c];
      }
      iobb.push_back(row);
    }
    nlohmann::json iou = nlohmann::json::array();
    for (const ThresholdScore& s : f.iou) {
      iou.push_back({{"threshold", s.threshold},
                     {"accuracy", ratio(s.localized, f.boxes)},
                     {"afp", ratio(s.false_positives, f.pairs)}});
    }
    findings.push_back({{"name", std::string(kLabelNames[c])},
                        {"boxes", f.boxes},
                        {"pairs", f.pairs},
                        {"pointing_accuracy", ratio(f.pointing_hits, f.pairs)},
                        {"iobb", iobb},
                        {"iou", iou}});
  }
  return {{"images", metrics.images},
          {"box_threshold", metrics.box_threshold},
          {"pointing_tolerance_fraction", kPointingToleranceFraction},
          {"findings", findings}};
}

}  // namespace kolo::chexnet
