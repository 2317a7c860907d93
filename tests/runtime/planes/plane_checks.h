// Helpers for the in-process tests of the data planes: run N ranks as
// threads, and check every collective of a Backend against a reference the
// test computes itself (tests/runtime/test_values.h), in double precision.
#ifndef KOLO_TESTS_RUNTIME_PLANES_PLANE_CHECKS_H_
#define KOLO_TESTS_RUNTIME_PLANES_PLANE_CHECKS_H_

#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "runtime/backend/backend.h"

namespace kolo::testing {

// The seed of this run's random choices: KOLO_TEST_SEED, or a fixed value.
// Printed once, so that a failure can be replayed.
uint64_t Seed();

// Runs fn(rank) on `size` threads at once and joins them.
void RunRanks(int size, const std::function<void(int rank)>& fn);

// The steady clock in seconds, for bounds on how long a failure takes.
double Now();

// What CheckCollectives covers.
struct Sweep {
  // Element counts for every dtype and op of allreduce.
  std::vector<int64_t> counts = {0, 1, 13, 4099};
  // Random-valued sums (with a tolerance for the 16-bit types): a few MiB
  // of float32, and enough 16-bit elements to take the ring's 16-bit wire.
  std::vector<std::pair<DataType, int64_t>> random_sums = {
      {DataType::kFloat32, 1000003},
      {DataType::kFloat64, 100003},
      {DataType::kFloat16, 300007},
      {DataType::kBfloat16, 300007}};
};

// The sweep for `size` ranks: the random sums only at `large_at` ranks
// (they dominate the run time).
Sweep SweepFor(int size, int large_at);

// Runs on every rank (rank of size): allreduce of every dtype and op at
// every count (in place and out of place), the random-valued sums, allgatherv,
// broadcast from every root, alltoallv and reducescatter with uneven (and
// empty) shares, and a barrier; records a gtest failure naming the case, the
// index, the expected and actual value.
void CheckCollectives(Backend* backend, int rank, int size, const Sweep& sweep);

// One float32 sum allreduce of `count` elements; true when every element
// is right. For tests of late and slow peers.
bool AllreduceSumIsRight(Backend* backend, int rank, int size, int64_t count);

}  // namespace kolo::testing

#endif  // KOLO_TESTS_RUNTIME_PLANES_PLANE_CHECKS_H_
