// The measuring procedure shared by kolo and the baselines.
#include "bench/measurement.h"

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <vector>

namespace kolo::bench {
namespace {

double Median(std::vector<double> values) {
  const size_t middle = values.size() / 2;
  std::nth_element(values.begin(), values.begin() + middle, values.end());
  if (values.size() % 2 == 1) return values[middle];
  const double upper = values[middle];
  const double lower =
      *std::max_element(values.begin(), values.begin() + middle);
  return (lower + upper) / 2;
}

}  // namespace

Measurement Measure(const Procedure& procedure, const RunConfig& config) {
  std::string error;
  auto run = [&] {
    Status status = procedure.run();
    if (!status.ok() && error.empty()) error = status.ToString();
  };

  procedure.prepare(0);
  for (int i = 0; i < config.warmup; ++i) run();
  // Each trial's slowest-rank mean and median; the trial with the lowest
  // median is kept.
  double best_us[2] = {0, 0};
  std::vector<double> iteration_us(config.iters);
  for (int trial = 0; trial < config.trials; ++trial) {
    MPI_Barrier(MPI_COMM_WORLD);
    const auto start = std::chrono::steady_clock::now();
    auto iteration_start = start;
    for (int i = 0; i < config.iters; ++i) {
      run();
      const auto now = std::chrono::steady_clock::now();
      iteration_us[i] =
          std::chrono::duration<double, std::micro>(now - iteration_start)
              .count();
      iteration_start = now;
    }
    double local_us[2] = {
        std::chrono::duration<double, std::micro>(iteration_start - start)
                .count() /
            config.iters,
        Median(iteration_us)};
    double slowest_us[2] = {0, 0};
    MPI_Allreduce(local_us, slowest_us, 2, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    if (trial == 0 || slowest_us[1] < best_us[1]) {
      best_us[0] = slowest_us[0];
      best_us[1] = slowest_us[1];
    }
  }

  int64_t local_wrong = 0;
  for (int seed = 1; seed <= config.check; ++seed) {
    procedure.prepare(seed);
    run();
    local_wrong += procedure.count_wrong(seed);
  }

  Measurement measurement;
  measurement.time_us = best_us[0];
  measurement.median_us = best_us[1];
  int64_t wrong = 0;
  MPI_Allreduce(&local_wrong, &wrong, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
  measurement.wrong = config.check > 0 ? wrong : -1;
  measurement.error = AgreeOnError(error);
  return measurement;
}

std::string AgreeOnError(const std::string& local_error) {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  int mine = local_error.empty() ? INT_MAX : rank;
  int first = INT_MAX;
  MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (first == INT_MAX) return "";
  int length = rank == first ? static_cast<int>(local_error.size()) : 0;
  MPI_Bcast(&length, 1, MPI_INT, first, MPI_COMM_WORLD);
  std::vector<char> text(local_error.begin(), local_error.end());
  text.resize(length);
  MPI_Bcast(text.data(), length, MPI_CHAR, first, MPI_COMM_WORLD);
  return "rank " + std::to_string(first) + ": " +
         std::string(text.begin(), text.end());
}

}  // namespace kolo::bench
