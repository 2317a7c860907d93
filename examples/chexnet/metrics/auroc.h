// Per-class AUROC and ROC curves for the 14 CheXNet outputs.
//
// AUROC here is the Mann-Whitney statistic U / (P * N): the probability that
// a random positive scores above a random negative, ties counting one half
// (computed with average ranks). It equals the trapezoidal area under the ROC
// curve below. A class whose evaluation set has only positives or only
// negatives has no AUROC: it is reported as NaN and left out of the mean,
// and ChexnetMetrics says how many classes the mean covers.
#ifndef KOLO_EXAMPLES_CHEXNET_METRICS_AUROC_H_
#define KOLO_EXAMPLES_CHEXNET_METRICS_AUROC_H_

#include <array>
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "examples/chexnet/data/labels.h"

namespace kolo::chexnet {

// REQUIRES (checked; InvalidArgument otherwise): equal sizes, finite scores,
// labels exactly 0 or 1. Returns NaN when all labels are equal or empty.
absl::StatusOr<double> Auroc(absl::Span<const float> scores,
                             absl::Span<const float> labels);

// One operating point: predicting positive when score >= threshold gives
// these rates.
struct RocPoint {
  double false_positive_rate;
  double true_positive_rate;
  double threshold;
};

// The ROC curve from (0, 0) (threshold +infinity) to (1, 1), one point per
// distinct score in decreasing order, so tied scores give one diagonal step.
// Empty when all labels are equal. Same requirements as Auroc.
absl::StatusOr<std::vector<RocPoint>> RocCurve(absl::Span<const float> scores,
                                               absl::Span<const float> labels);

struct ClassMetrics {
  double auroc = 0.0;  // NaN when undefined.
  int64_t positives = 0;
  int64_t negatives = 0;
  std::vector<RocPoint> roc;  // Empty when undefined.
};

struct ChexnetMetrics {
  int64_t num_images = 0;
  std::array<ClassMetrics, kNumLabels> classes;  // kLabelNames order.
  // Mean over the classes with a defined AUROC; NaN when there are none.
  double mean_auroc = 0.0;
  int num_defined = 0;  // Classes included in mean_auroc.
};

// `scores` and `labels` are row-major [num_images, kNumLabels] (the model's
// sigmoid outputs and the multi-hot targets, e.g. tensor data pointers).
// REQUIRES (checked): both hold num_images * kNumLabels values, finite
// scores, 0/1 labels; errors give the row and class at fault.
absl::StatusOr<ChexnetMetrics> ComputeChexnetMetrics(
    absl::Span<const float> scores, absl::Span<const float> labels,
    int64_t num_images);

}  // namespace kolo::chexnet

#endif  // KOLO_EXAMPLES_CHEXNET_METRICS_AUROC_H_
