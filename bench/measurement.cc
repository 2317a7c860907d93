// The measuring procedure shared by kolo and the baselines.
#include "bench/measurement.h"

#include <mpi.h>

#include <chrono>
#include <climits>
#include <vector>

namespace kolo::bench {

Measurement Measure(const Procedure& procedure, const RunConfig& config) {
  std::string error;
  auto run = [&] {
    Status status = procedure.run();
    if (!status.ok() && error.empty()) error = status.ToString();
  };

  procedure.prepare(0);
  for (int i = 0; i < config.warmup; ++i) run();
  MPI_Barrier(MPI_COMM_WORLD);
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < config.iters; ++i) run();
  const auto stop = std::chrono::steady_clock::now();
  double local_us =
      std::chrono::duration<double, std::micro>(stop - start).count() /
      config.iters;

  int64_t local_wrong = 0;
  for (int seed = 1; seed <= config.check; ++seed) {
    procedure.prepare(seed);
    run();
    local_wrong += procedure.count_wrong(seed);
  }

  Measurement measurement;
  MPI_Allreduce(&local_us, &measurement.time_us, 1, MPI_DOUBLE, MPI_MAX,
                MPI_COMM_WORLD);
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
