// Helpers for the in-process tests of the data planes: run N ranks as
// threads, and check every collective of a Backend against a reference the
// test computes itself (tests/runtime/test_values.h), in double precision.
#ifndef KOLO_TESTS_RUNTIME_PLANES_PLANE_CHECKS_H_
#define KOLO_TESTS_RUNTIME_PLANES_PLANE_CHECKS_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "runtime/backend/backend.h"

namespace kolo::testing {

// The seed of this run's random choices: KOLO_TEST_SEED, or a fixed value.
// Printed once, so that a failure can be replayed.
uint64_t Seed();

// Runs fn(rank) on `size` threads at once and joins them.
void RunRanks(int size, const std::function<void(int rank)>& fn);

// Seconds since `start` (a steady-clock reading taken with Now()).
double Now();

// What CheckCollectives covers.
struct Sweep {
  // Element counts for every dtype and op of allreduce.
  std::vector<int64_t> counts = {0, 1, 13, 4099};
  // Element counts of the random-valued float sums (tolerance for the
  // 16-bit types), run for float32, float64, float16 and bfloat16.
  std::vector<int64_t> large_counts = {1000003};
};

// Runs on every rank (rank of size): allreduce of every dtype and op at
// every count (in place and out of place), random-valued float sums at the
// large counts, allgatherv, broadcast from every root, alltoallv and
// reducescatter with uneven (and empty) shares, and a barrier; records a
// gtest failure naming the case, the index, the expected and actual value.
void CheckCollectives(Backend* backend, int rank, int size, const Sweep& sweep);

// One float32 sum allreduce of `count` elements; true when every element
// is right. For tests of late and slow peers.
bool AllreduceSumIsRight(Backend* backend, int rank, int size, int64_t count);

}  // namespace kolo::testing

#endif  // KOLO_TESTS_RUNTIME_PLANES_PLANE_CHECKS_H_
