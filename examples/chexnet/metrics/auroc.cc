// AUROC by average ranks and ROC curves.
#include "examples/chexnet/metrics/auroc.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace kolo::chexnet {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

absl::Status Validate(absl::Span<const float> scores,
                      absl::Span<const float> labels) {
  if (scores.size() != labels.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "AUROC: ", scores.size(), " scores but ", labels.size(), " labels"));
  }
  for (size_t i = 0; i < scores.size(); ++i) {
    if (!std::isfinite(scores[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("AUROC: score ", i, " is ", scores[i]));
    }
    if (labels[i] != 0.0f && labels[i] != 1.0f) {
      return absl::InvalidArgumentError(absl::StrCat(
          "AUROC: label ", i, " is ", labels[i], ", expected 0 or 1"));
    }
  }
  return absl::OkStatus();
}

// Indices of `scores` sorted by score, highest first (stable for
// reproducible output).
std::vector<size_t> OrderByScoreDescending(absl::Span<const float> scores) {
  std::vector<size_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return scores[a] > scores[b]; });
  return order;
}

}  // namespace

absl::StatusOr<double> Auroc(absl::Span<const float> scores,
                             absl::Span<const float> labels) {
  if (absl::Status status = Validate(scores, labels); !status.ok()) {
    return status;
  }
  const std::vector<size_t> order = OrderByScoreDescending(scores);
  const size_t n = order.size();
  // Rank 1 is the lowest score; a run of ties shares its average rank.
  double positive_rank_sum = 0.0;
  double positives = 0.0;
  for (size_t begin = 0; begin < n;) {
    size_t end = begin + 1;
    while (end < n && scores[order[end]] == scores[order[begin]]) ++end;
    // Descending positions begin..end-1 hold ascending ranks n-end+1..n-begin.
    const double average_rank = (2.0 * n - begin - end + 1) / 2.0;
    for (size_t i = begin; i < end; ++i) {
      if (labels[order[i]] == 1.0f) {
        positive_rank_sum += average_rank;
        positives += 1.0;
      }
    }
    begin = end;
  }
  const double negatives = static_cast<double>(n) - positives;
  if (positives == 0.0 || negatives == 0.0) return kNaN;
  const double u = positive_rank_sum - positives * (positives + 1.0) / 2.0;
  return u / (positives * negatives);
}

absl::StatusOr<std::vector<RocPoint>> RocCurve(absl::Span<const float> scores,
                                               absl::Span<const float> labels) {
  if (absl::Status status = Validate(scores, labels); !status.ok()) {
    return status;
  }
  const double positives =
      static_cast<double>(std::count(labels.begin(), labels.end(), 1.0f));
  const double negatives = static_cast<double>(labels.size()) - positives;
  std::vector<RocPoint> curve;
  if (positives == 0.0 || negatives == 0.0) return curve;
  curve.push_back({0.0, 0.0, std::numeric_limits<double>::infinity()});
  const std::vector<size_t> order = OrderByScoreDescending(scores);
  double true_positives = 0.0, false_positives = 0.0;
  for (size_t begin = 0; begin < order.size();) {
    size_t end = begin;
    const float threshold = scores[order[begin]];
    for (; end < order.size() && scores[order[end]] == threshold; ++end) {
      (labels[order[end]] == 1.0f ? true_positives : false_positives) += 1.0;
    }
    curve.push_back(
        {false_positives / negatives, true_positives / positives, threshold});
    begin = end;
  }
  return curve;
}

absl::StatusOr<ChexnetMetrics> ComputeChexnetMetrics(
    absl::Span<const float> scores, absl::Span<const float> labels,
    int64_t num_images) {
  const size_t expected = static_cast<size_t>(num_images) * kNumLabels;
  if (num_images < 0 || scores.size() != expected ||
      labels.size() != expected) {
    return absl::InvalidArgumentError(
        absl::StrCat("ComputeChexnetMetrics: expected ", num_images, " x ",
                     kNumLabels, " = ", expected, " scores and labels, got ",
                     scores.size(), " and ", labels.size()));
  }
  ChexnetMetrics metrics;
  metrics.num_images = num_images;
  double sum = 0.0;
  std::vector<float> class_scores(num_images), class_labels(num_images);
  for (int c = 0; c < kNumLabels; ++c) {
    for (int64_t i = 0; i < num_images; ++i) {
      class_scores[i] = scores[i * kNumLabels + c];
      class_labels[i] = labels[i * kNumLabels + c];
    }
    auto in_context = [&](const absl::Status& status) {
      return absl::InvalidArgumentError(absl::StrCat(
          "class ", kLabelNames[c], " (column ", c, "): ", status.message()));
    };
    absl::StatusOr<double> auroc = Auroc(class_scores, class_labels);
    if (!auroc.ok()) return in_context(auroc.status());
    absl::StatusOr<std::vector<RocPoint>> roc =
        RocCurve(class_scores, class_labels);
    if (!roc.ok()) return in_context(roc.status());
    ClassMetrics& m = metrics.classes[c];
    m.auroc = *auroc;
    m.roc = *std::move(roc);
    m.positives = std::count(class_labels.begin(), class_labels.end(), 1.0f);
    m.negatives = num_images - m.positives;
    if (!std::isnan(m.auroc)) {
      sum += m.auroc;
      ++metrics.num_defined;
    }
  }
  metrics.mean_auroc =
      metrics.num_defined > 0 ? sum / metrics.num_defined : kNaN;
  return metrics;
}

}  // namespace kolo::chexnet
