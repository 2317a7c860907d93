// Evaluation of issue 6's targets.
#include "bench/summary.h"

#include <algorithm>
#include <cstdio>

namespace kolo::bench {
namespace {

constexpr int64_t kMiB = int64_t{1} << 20;

std::string Format(const char* format, double value) {
  char text[64];
  std::snprintf(text, sizeof(text), format, value);
  return text;
}

// The named column of the float32 sum allreduce row of `implementation`
// (and kolo `label`) at `bytes`, when it was measured without error.
std::optional<Measurement> Find(const std::vector<Row>& rows,
                                const std::string& implementation,
                                const std::string& label, int64_t bytes,
                                bool in_place) {
  for (const Row& row : rows) {
    if (row.implementation != implementation ||
        row.collective != Collective::kAllreduce || row.bytes != bytes ||
        row.type != "float32" || row.redop != "sum") {
      continue;
    }
    if (implementation == "kolo" && row.label != label) continue;
    const std::optional<Measurement>& m =
        in_place ? row.in_place : row.out_of_place;
    if (m.has_value() && m->error.empty()) return m;
  }
  return std::nullopt;
}

// Which time of a measurement a figure is computed from.
using TimeField = double Measurement::*;

TargetResult BandwidthVersusBaselines(const SummaryInputs& in, int64_t bytes) {
  TargetResult result;
  result.backend = in.backend;
  result.target = "allreduce algbw " + std::to_string(bytes / kMiB) +
                  " MiB: kolo / max(MPI, Gloo)";
  result.requirement = ">= 3x";
  std::optional<Measurement> kolo =
      Find(*in.rows, "kolo", in.backend, bytes, false);
  std::optional<Measurement> mpi = Find(*in.rows, "mpi", "", bytes, false);
  std::optional<Measurement> gloo = Find(*in.rows, "gloo", "", bytes, true);
  if (!kolo.has_value() || (!mpi.has_value() && !gloo.has_value())) {
    result.detail = std::string("not measured: no ") +
                    (kolo.has_value() ? "baseline" : "kolo") +
                    " float32 sum row at " + std::to_string(bytes) +
                    " bytes in this run";
    return result;
  }
  // kolo's algbw over the better baseline's, and the figures, in GB/s.
  auto compare = [&](TimeField time, std::string* figures) {
    const double kolo_bw = AlgorithmBandwidth(bytes, (*kolo).*time);
    double best = 0;
    *figures = "kolo " + Format("%.2f", kolo_bw);
    for (const auto& [name, m] :
         {std::pair{"MPI", &mpi}, std::pair{"Gloo", &gloo}}) {
      if (!m->has_value()) {
        *figures += std::string(", ") + name + " not measured";
        continue;
      }
      const double bw = AlgorithmBandwidth(bytes, (**m).*time);
      best = std::max(best, bw);
      *figures += std::string(", ") + name + " " + Format("%.2f", bw);
    }
    return kolo_bw / best;
  };
  std::string median_figures;
  std::string mean_figures;
  result.measured = true;
  result.value = compare(&Measurement::median_us, &median_figures);
  result.value_of_means = compare(&Measurement::time_us, &mean_figures);
  result.detail =
      "GB/s from medians: " + median_figures + "; from means: " + mean_figures;
  result.pass = result.value >= 3.0;
  return result;
}

TargetResult BandwidthVersusMemory(const SummaryInputs& in, int64_t bytes) {
  TargetResult result;
  result.backend = in.backend;
  result.target = "allreduce algbw " + std::to_string(bytes / kMiB) +
                  " MiB: kolo / memory bound B/4";
  result.requirement = ">= 50%";
  std::optional<Measurement> kolo =
      Find(*in.rows, "kolo", in.backend, bytes, false);
  if (!kolo.has_value() || !in.memory.has_value()) {
    result.detail = kolo.has_value()
                        ? "not measured: memory bandwidth baseline was off"
                        : "not measured: no kolo float32 sum row at " +
                              std::to_string(bytes) + " bytes";
    return result;
  }
  const double bound = in.memory->AllreduceBound() / 1e9;
  const double median_bw = AlgorithmBandwidth(bytes, kolo->median_us);
  const double mean_bw = AlgorithmBandwidth(bytes, kolo->time_us);
  result.measured = true;
  result.value = median_bw / bound;
  result.value_of_means = mean_bw / bound;
  result.detail = "kolo " + Format("%.2f", median_bw) +
                  " GB/s from the median (" + Format("%.2f", mean_bw) +
                  " from the mean), bound " + Format("%.2f", bound) +
                  " GB/s (B " +
                  Format("%.2f", in.memory->bytes_per_second / 1e9) + " GB/s)";
  result.pass = result.value >= 0.5;
  return result;
}

TargetResult Latency(const SummaryInputs& in) {
  TargetResult result;
  result.backend = in.backend;
  result.target = "8-byte allreduce time: kolo API path / MPI_Allreduce";
  result.requirement = "<= 10x";
  if (!in.kolo_latency.has_value() || !in.mpi_latency.has_value() ||
      !in.kolo_latency->error.empty() || !in.mpi_latency->error.empty()) {
    result.detail = "not measured: needs both kolo and the MPI baseline";
    return result;
  }
  const Measurement& kolo = *in.kolo_latency;
  const Measurement& mpi = *in.mpi_latency;
  result.measured = true;
  result.value = kolo.median_us / mpi.median_us;
  result.value_of_means = kolo.time_us / mpi.time_us;
  result.detail = "median: kolo " + Format("%.2f", kolo.median_us) +
                  " us, MPI " + Format("%.2f", mpi.median_us) +
                  " us; mean: kolo " + Format("%.2f", kolo.time_us) +
                  " us, MPI " + Format("%.2f", mpi.time_us) + " us";
  result.pass = result.value <= 10.0;
  return result;
}

TargetResult NothingWrong(const SummaryInputs& in) {
  TargetResult result;
  result.backend = in.backend;
  result.target = "#wrong over every kolo row of this backend";
  result.requirement = "= 0";
  int64_t wrong = 0;
  int checked = 0;
  int failed = 0;
  for (const Row& row : *in.rows) {
    if (row.implementation != "kolo" || row.label != in.backend) continue;
    for (const std::optional<Measurement>* m :
         {&row.out_of_place, &row.in_place}) {
      if (!m->has_value()) continue;
      if (!(*m)->error.empty()) {
        ++failed;
      } else if ((*m)->wrong >= 0) {
        wrong += (*m)->wrong;
        ++checked;
      }
    }
  }
  if (checked == 0) {
    result.detail = "not measured: no checked kolo rows (-c 0?)";
    return result;
  }
  result.measured = true;
  result.value = static_cast<double>(wrong);
  result.detail = std::to_string(checked) + " checked columns, " +
                  std::to_string(failed) + " failed";
  result.pass = wrong == 0 && failed == 0;
  return result;
}

}  // namespace

std::vector<TargetResult> EvaluateTargets(const SummaryInputs& inputs) {
  std::vector<TargetResult> targets;
  for (int64_t mib : {4, 16, 64}) {
    targets.push_back(BandwidthVersusBaselines(inputs, mib * kMiB));
  }
  targets.push_back(BandwidthVersusMemory(inputs, 16 * kMiB));
  targets.push_back(Latency(inputs));
  targets.push_back(NothingWrong(inputs));
  return targets;
}

void PrintTargetsHeader() {
  std::printf("# %-12s %-52s %-7s %9s %9s  %-4s  %s\n", "backend", "target",
              "needs", "median", "(mean)", "", "figures");
}

void PrintTargets(const std::vector<TargetResult>& targets) {
  for (const TargetResult& t : targets) {
    std::string value = "-";
    if (t.measured) {
      if (t.requirement == ">= 50%") {
        value = Format("%.0f%%", 100 * t.value);
      } else if (t.requirement == "= 0") {
        value = Format("%.0f", t.value);
      } else {
        value = Format("%.2fx", t.value);
      }
    }
    std::string of_means = "";
    if (t.measured && t.value_of_means >= 0) {
      of_means = t.requirement == ">= 50%"
                     ? Format("%.0f%%", 100 * t.value_of_means)
                     : Format("%.2fx", t.value_of_means);
    }
    std::printf("# %-12s %-52s %-7s %9s %9s  %-4s  %s\n", t.backend.c_str(),
                t.target.c_str(), t.requirement.c_str(), value.c_str(),
                of_means.c_str(),
                t.measured ? (t.pass ? "PASS" : "MISS") : "----",
                t.detail.c_str());
  }
  std::fflush(stdout);
}

nlohmann::json TargetsToJson(const std::vector<TargetResult>& targets) {
  nlohmann::json json = nlohmann::json::array();
  for (const TargetResult& t : targets) {
    json.push_back({{"backend", t.backend},
                    {"target", t.target},
                    {"requirement", t.requirement},
                    {"measured", t.measured},
                    {"value", t.measured ? nlohmann::json(t.value)
                                         : nlohmann::json(nullptr)},
                    {"value_of_means", t.measured && t.value_of_means >= 0
                                           ? nlohmann::json(t.value_of_means)
                                           : nlohmann::json(nullptr)},
                    {"pass", t.measured ? nlohmann::json(t.pass)
                                        : nlohmann::json(nullptr)},
                    {"detail", t.detail}});
  }
  return json;
}

}  // namespace kolo::bench
