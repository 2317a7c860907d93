// Single-thread memcpy bandwidth.
#include "bench/memory_bandwidth.h"

#include <mpi.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "bench/aligned_buffer.h"

namespace kolo::bench {
namespace {

// Waits for every rank to arrive without occupying a core.
void SleepingBarrier() {
  MPI_Request request;
  MPI_Ibarrier(MPI_COMM_WORLD, &request);
  int done = 0;
  while (true) {
    MPI_Test(&request, &done, MPI_STATUS_IGNORE);
    if (done) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

}  // namespace

MemoryBandwidth MeasureMemoryBandwidth(int64_t buffer_bytes, int repeats) {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MemoryBandwidth result{0, buffer_bytes, repeats};
  if (rank == 0) {
    AlignedBuffer source(buffer_bytes);
    AlignedBuffer destination(buffer_bytes);
    std::memset(source.data(), 1, buffer_bytes);
    // One untimed copy first: the destination's pages are then mapped and
    // the clock frequency has settled.
    std::memcpy(destination.data(), source.data(), buffer_bytes);
    double best_seconds = 0;
    for (int i = 0; i < repeats; ++i) {
      const auto start = std::chrono::steady_clock::now();
      std::memcpy(destination.data(), source.data(), buffer_bytes);
      const auto stop = std::chrono::steady_clock::now();
      const double seconds =
          std::chrono::duration<double>(stop - start).count();
      if (i == 0 || seconds < best_seconds) best_seconds = seconds;
    }
    result.bytes_per_second = 2.0 * buffer_bytes / best_seconds;
  }
  SleepingBarrier();
  MPI_Bcast(&result.bytes_per_second, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
  return result;
}

}  // namespace kolo::bench
