// Tables and JSON of kolo_bench.
#include "bench/report.h"

#include <cstdio>

namespace kolo::bench {
namespace {

// nccl-tests' time format: fewer decimals as the value grows.
std::string FormatTime(double time_us) {
  char text[32];
  if (time_us >= 10000.0) {
    std::snprintf(text, sizeof(text), "%8.0f", time_us);
  } else if (time_us >= 100.0) {
    std::snprintf(text, sizeof(text), "%8.1f", time_us);
  } else {
    std::snprintf(text, sizeof(text), "%8.2f", time_us);
  }
  return text;
}

void PrintColumns(const std::optional<Measurement>& measurement, int64_t bytes,
                  double factor) {
  if (!measurement.has_value()) {
    std::printf("  %8s  %6s  %6s  %6s", "n/a", "n/a", "n/a", "n/a");
    return;
  }
  if (!measurement->error.empty()) {
    std::printf("  %8s  %6s  %6s  %6s", "error", "-", "-", "-");
    return;
  }
  const double algbw = AlgorithmBandwidth(bytes, measurement->time_us);
  std::string wrong =
      measurement->wrong < 0 ? "N/A" : std::to_string(measurement->wrong);
  std::printf("  %s  %6.2f  %6.2f  %6s",
              FormatTime(measurement->time_us).c_str(), algbw, algbw * factor,
              wrong.c_str());
}

nlohmann::json MeasurementToJson(const std::optional<Measurement>& measurement,
                                 int64_t bytes, double factor) {
  if (!measurement.has_value()) return nullptr;
  nlohmann::json json;
  if (!measurement->error.empty()) {
    json["error"] = measurement->error;
    return json;
  }
  const double algbw = AlgorithmBandwidth(bytes, measurement->time_us);
  json["time_us"] = measurement->time_us;
  json["median_us"] = measurement->median_us;
  json["algbw_GBps"] = algbw;
  json["busbw_GBps"] = algbw * factor;
  json["wrong"] = measurement->wrong < 0 ? nlohmann::json(nullptr)
                                         : nlohmann::json(measurement->wrong);
  if (measurement->collectives_per_iteration >= 0) {
    json["collectives_per_iteration"] = measurement->collectives_per_iteration;
  }
  return json;
}

}  // namespace

double AlgorithmBandwidth(int64_t bytes, double time_us) {
  return time_us > 0 ? static_cast<double>(bytes) / time_us / 1e3 : 0;
}

void PrintTableHeader(const std::string& title) {
  std::printf("#\n# %s\n", title.c_str());
  std::printf("#%74s%32s\n", "out-of-place", "in-place");
  std::printf(
      "# %10s  %12s  %8s  %6s  %6s  %8s  %6s  %6s  %6s  %8s  %6s  %6s  "
      "%6s\n",
      "size", "count", "type", "redop", "root", "time", "algbw", "busbw",
      "#wrong", "time", "algbw", "busbw", "#wrong");
  std::printf(
      "# %10s  %12s  %8s  %6s  %6s  %8s  %6s  %6s  %6s  %8s  %6s  %6s  "
      "%6s\n",
      "(B)", "(elements)", "", "", "", "(us)", "(GB/s)", "(GB/s)", "", "(us)",
      "(GB/s)", "(GB/s)", "");
  std::fflush(stdout);
}

void PrintRow(const Row& row, int ranks) {
  const double factor = BusBandwidthFactor(row.collective, ranks);
  std::printf("  %10lld  %12lld  %8s  %6s  %6d",
              static_cast<long long>(row.bytes),
              static_cast<long long>(row.count), row.type.c_str(),
              row.redop.c_str(), row.root);
  PrintColumns(row.out_of_place, row.bytes, factor);
  PrintColumns(row.in_place, row.bytes, factor);
  std::printf("\n");
  for (const auto& [placement, measurement] :
       {std::pair{"out-of-place", &row.out_of_place},
        std::pair{"in-place", &row.in_place}}) {
    if (measurement->has_value() && !(*measurement)->error.empty()) {
      std::printf("#   %lld bytes %s failed: %s\n",
                  static_cast<long long>(row.bytes), placement,
                  (*measurement)->error.c_str());
    }
  }
  std::fflush(stdout);
}

void PrintAverageBusBandwidth(double busbw_sum, int columns) {
  std::printf("# Avg bus bandwidth    : %g \n",
              columns > 0 ? busbw_sum / columns : 0.0);
  std::fflush(stdout);
}

nlohmann::json RowToJson(const Row& row, int ranks) {
  const double factor = BusBandwidthFactor(row.collective, ranks);
  return {
      {"implementation", row.implementation},
      {"label", row.label},
      {"collective", CollectiveName(row.collective)},
      {"size_bytes", row.bytes},
      {"count", row.count},
      {"type", row.type},
      {"redop", row.redop},
      {"root", row.root},
      {"busbw_factor", factor},
      {"out_of_place", MeasurementToJson(row.out_of_place, row.bytes, factor)},
      {"in_place", MeasurementToJson(row.in_place, row.bytes, factor)}};
}

void AccumulateBusBandwidth(const Row& row, int ranks, double* busbw_sum,
                            int* columns) {
  const double factor = BusBandwidthFactor(row.collective, ranks);
  for (const std::optional<Measurement>* m :
       {&row.out_of_place, &row.in_place}) {
    if (m->has_value() && (*m)->error.empty()) {
      *busbw_sum += AlgorithmBandwidth(row.bytes, (*m)->time_us) * factor;
      ++*columns;
    }
  }
}

}  // namespace kolo::bench
