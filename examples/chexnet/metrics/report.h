// Reporting of ChexnetMetrics: the per-class AUROC table beside the published
// results, and the same numbers as JSON and CSV files.
#ifndef KOLO_EXAMPLES_CHEXNET_METRICS_REPORT_H_
#define KOLO_EXAMPLES_CHEXNET_METRICS_REPORT_H_

#include <array>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "examples/chexnet/data/labels.h"
#include "examples/chexnet/metrics/auroc.h"

namespace kolo::chexnet {

// Published per-class test AUROC on the real ChestX-ray14, kLabelNames order.
struct ReferenceAuroc {
  absl::string_view name;  // Short column title.
  absl::string_view citation;
  std::array<double, kNumLabels> per_class;
  double mean;
};

// Rajpurkar et al. 2017, "CheXNet", Table 1 (DenseNet-121).
extern const ReferenceAuroc kChexnetPaper;
// Wang et al. 2017, "ChestX-ray8", as tabulated in the CheXNet paper.
extern const ReferenceAuroc kWang2017;

// A fixed-width table: one row per class with this run's AUROC (or "n/a"),
// its positive count, and both references; then the mean row and, when
// classes were left out of the mean, a line naming them and why.
std::string FormatAurocTable(const ChexnetMetrics& metrics);

// This run's AUROC per class without and with test-time augmentation
// (`augmented_name`, e.g. "ten-crop"), side by side with the CheXNet paper's,
// then the means.
std::string FormatAurocComparisonTable(const ChexnetMetrics& plain,
                                       const ChexnetMetrics& augmented,
                                       absl::string_view augmented_name);

// {"num_images": N, "mean_auroc": x or null, "num_classes_in_mean": k,
//  "classes_excluded_from_mean": [names], "reference_mean_auroc":
//  {"chexnet_2017": 0.841, "wang_2017": 0.738}, "classes": [{"name",
//  "auroc" (null when undefined), "positives", "negatives", "chexnet_2017",
//  "wang_2017"} x 14]}. ROC points are not included (see roc_plot.h).
// Callers may add their own fields (epoch, loss, ...) before writing.
nlohmann::json MetricsToJson(const ChexnetMetrics& metrics);

// Header "class,auroc,positives,negatives,chexnet_2017,wang_2017", one row per
// class ("nan" for an undefined AUROC), then a "mean" row.
std::string MetricsToCsv(const ChexnetMetrics& metrics);

// Write `json` (indented) or MetricsToCsv(metrics) to `path` atomically.
absl::Status WriteJsonFile(const std::string& path, const nlohmann::json& json);
absl::Status WriteMetricsCsv(const std::string& path,
                             const ChexnetMetrics& metrics);

}  // namespace kolo::chexnet

#endif  // KOLO_EXAMPLES_CHEXNET_METRICS_REPORT_H_
