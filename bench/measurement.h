// How kolo_bench measures one operation at one size, whatever implements it
// (kolo, MPI_Allreduce, Gloo): warm-up iterations, timed iterations, then
// check iterations with fresh inputs, the figures agreed over all ranks.
//
// Timing follows nccl-tests: one barrier before the timed loop and none
// inside it; each rank divides its own loop time by the iteration count, and
// the slowest rank's mean is reported. Each rank also times every iteration
// and the slowest rank's median is kept beside the mean. With several trials
// (timed loops), the trial with the lowest median is reported.
#ifndef KOLO_BENCH_MEASUREMENT_H_
#define KOLO_BENCH_MEASUREMENT_H_

#include <cstdint>
#include <functional>
#include <string>

#include "kolo/status.h"
#include "kolo/types.h"

namespace kolo::bench {

struct RunConfig {
  DataType dtype = DataType::kFloat32;
  ReduceOp op = ReduceOp::kSum;
  int root = 0;
  int iters = 20;  // timed iterations
  int warmup = 5;  // untimed iterations first
  int check = 1;   // iterations checked against the reference; 0 = none
  // Timed loops of `iters` iterations; the one with the lowest median is
  // reported (1 = nccl-tests' single loop). More trials filter out bursts
  // of other work on a shared host.
  int trials = 1;
};

struct Measurement {
  double time_us = 0;  // mean time of one iteration on the slowest rank
  // The slowest rank's median iteration: unlike the mean, robust to the
  // occasional iteration that waits for a descheduled peer on a busy host.
  double median_us = 0;
  // Elements that differed from the reference, summed over ranks and check
  // iterations; -1 when nothing was checked.
  int64_t wrong = -1;
  // Why an iteration failed (the lowest failing rank's first error); empty
  // when every iteration succeeded.
  std::string error;
  // kolo only: collectives its data plane ran per iteration on rank 0 (below
  // the tensors per message when fusion merged them); -1 elsewhere.
  double collectives_per_iteration = -1;
};

// The steps of one benchmarked operation on this rank.
struct Procedure {
  // Writes this rank's inputs for `seed` (0 for the warm-up and timed
  // iterations, 1.. for the check iterations) and poisons its outputs.
  std::function<void(int seed)> prepare;
  // Runs one iteration; collective over all ranks.
  std::function<Status()> run;
  // Counts this rank's output elements that differ from the reference.
  std::function<int64_t(int seed)> count_wrong;
};

// Runs warm-up, timed and check iterations. Every rank runs every iteration
// even after a failure, so the ranks' calls stay matched. Collective over
// MPI_COMM_WORLD.
Measurement Measure(const Procedure& procedure, const RunConfig& config);

// The lowest rank's non-empty `local_error`, prefixed with that rank, or
// empty when every rank's is empty. Collective over MPI_COMM_WORLD.
std::string AgreeOnError(const std::string& local_error);

}  // namespace kolo::bench

#endif  // KOLO_BENCH_MEASUREMENT_H_
