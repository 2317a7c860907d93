// AUROC tables, JSON and CSV.
#include "examples/chexnet/metrics/report.h"

#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "examples/chexnet/data/file_util.h"

namespace kolo::chexnet {

const ReferenceAuroc kChexnetPaper = {
    "CheXNet",
    "Rajpurkar et al. 2017, CheXNet",
    {0.8094, 0.9248, 0.8638, 0.7345, 0.8676, 0.7802, 0.7680, 0.8887, 0.7901,
     0.8878, 0.9371, 0.8047, 0.8062, 0.9164},
    0.841};

const ReferenceAuroc kWang2017 = {
    "Wang2017",
    "Wang et al. 2017, ChestX-ray8",
    {0.716, 0.807, 0.784, 0.609, 0.706, 0.671, 0.633, 0.806, 0.708, 0.835,
     0.815, 0.769, 0.708, 0.767},
    0.738};

namespace {

std::string FormatAuroc(double auroc) {
  return std::isnan(auroc) ? "n/a" : absl::StrFormat("%.4f", auroc);
}

std::vector<std::string> ExcludedClasses(const ChexnetMetrics& metrics) {
  std::vector<std::string> excluded;
  for (int c = 0; c < kNumLabels; ++c) {
    if (std::isnan(metrics.classes[c].auroc)) {
      excluded.emplace_back(kLabelNames[c]);
    }
  }
  return excluded;
}

}  // namespace

std::string FormatAurocTable(const ChexnetMetrics& metrics) {
  std::string table =
      absl::StrFormat("%-20s %8s %9s %9s %9s\n", "Pathology", "AUROC",
                      "Positive", kChexnetPaper.name, kWang2017.name);
  for (int c = 0; c < kNumLabels; ++c) {
    const ClassMetrics& m = metrics.classes[c];
    absl::StrAppendFormat(&table, "%-20s %8s %9d %9.4f %9.3f\n", kLabelNames[c],
                          FormatAuroc(m.auroc), m.positives,
                          kChexnetPaper.per_class[c], kWang2017.per_class[c]);
  }
  absl::StrAppendFormat(
      &table, "%-20s %8s %9s %9.3f %9.3f\n",
      absl::StrCat("Mean (", metrics.num_defined, " classes)"),
      FormatAuroc(metrics.mean_auroc), "", kChexnetPaper.mean, kWang2017.mean);
  const std::vector<std::string> excluded = ExcludedClasses(metrics);
  if (!excluded.empty()) {
    absl::StrAppend(&table,
                    "Not in the mean (AUROC undefined: only one label "
                    "value among ",
                    metrics.num_images,
                    " images): ", absl::StrJoin(excluded, ", "), "\n");
  }
  return table;
}

std::string FormatAurocComparisonTable(const ChexnetMetrics& plain,
                                       const ChexnetMetrics& augmented,
                                       absl::string_view augmented_name) {
  auto cell = [](double auroc) {
    return std::isnan(auroc) ? std::string("n/a")
                             : absl::StrFormat("%.4f", auroc);
  };
  std::string out =
      absl::StrFormat("%-20s %8s %10s %10s\n", "Pathology", "AUROC",
                      augmented_name, kChexnetPaper.name);
  for (int c = 0; c < kNumLabels; ++c) {
    absl::StrAppend(&out,
                    absl::StrFormat("%-20s %8s %10s %10.3f\n", kLabelNames[c],
                                    cell(plain.classes[c].auroc),
                                    cell(augmented.classes[c].auroc),
                                    kChexnetPaper.per_class[c]));
  }
  absl::StrAppend(
      &out,
      absl::StrFormat("%-20s %8s %10s %10.3f\n", "Mean", cell(plain.mean_auroc),
                      cell(augmented.mean_auroc), kChexnetPaper.mean));
  return out;
}

nlohmann::json MetricsToJson(const ChexnetMetrics& metrics) {
  auto number_or_null = [](double x) {
    return std::isnan(x) ? nlohmann::json(nullptr) : nlohmann::json(x);
  };
  nlohmann::json classes = nlohmann::json::array();
  for (int c = 0; c < kNumLabels; ++c) {
    const ClassMetrics& m = metrics.classes[c];
    classes.push_back({{"name", std::string(kLabelNames[c])},
                       {"auroc", number_or_null(m.auroc)},
                       {"positives", m.positives},
                       {"negatives", m.negatives},
                       {"chexnet_2017", kChexnetPaper.per_class[c]},
                       {"wang_2017", kWang2017.per_class[c]}});
  }
  return {
      {"num_images", metrics.num_images},
      {"mean_auroc", number_or_null(metrics.mean_auroc)},
      {"num_classes_in_mean", metrics.num_defined},
      {"classes_excluded_from_mean", ExcludedClasses(metrics)},
      {"reference_mean_auroc",
       {{"chexnet_2017", kChexnetPaper.mean}, {"wang_2017", kWang2017.mean}}},
      {"classes", classes}};
}

std::string MetricsToCsv(const ChexnetMetrics& metrics) {
  auto number = [](double x) {
    return std::isnan(x) ? std::string("nan") : absl::StrFormat("%.6f", x);
  };
  std::string csv = "class,auroc,positives,negatives,chexnet_2017,wang_2017\n";
  for (int c = 0; c < kNumLabels; ++c) {
    const ClassMetrics& m = metrics.classes[c];
    absl::StrAppend(&csv, kLabelNames[c], ",", number(m.auroc), ",",
                    m.positives, ",", m.negatives, ",",
                    number(kChexnetPaper.per_class[c]), ",",
                    number(kWang2017.per_class[c]), "\n");
  }
  absl::StrAppend(&csv, "mean,", number(metrics.mean_auroc), ",,,",
                  number(kChexnetPaper.mean), ",", number(kWang2017.mean),
                  "\n");
  return csv;
}

absl::Status WriteJsonFile(const std::string& path,
                           const nlohmann::json& json) {
  return WriteStringToFile(path, json.dump(2) + "\n");
}

absl::Status WriteMetricsCsv(const std::string& path,
                             const ChexnetMetrics& metrics) {
  return WriteStringToFile(path, MetricsToCsv(metrics));
}

}  // namespace kolo::chexnet
