// Multi-rank tests of the fast lane (runtime/core/fast_lane.h): repeated
// tensors on one host are agreed in shared memory, and every result must
// still equal an independently computed reference, whatever the order in
// which ranks submit, mixed with operations that go through rank 0, when a
// tensor changes, when one rank submits something else, when a rank is late,
// never submits, or joins. Run under mpirun at np 2-4 on one host.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kolo/kolo.h"

namespace kolo {
namespace {

// Rank r's element i at step s; the sum over ranks is computed in closed
// form below (exact in float32: small integers).
float Value(int rank, int64_t i, int step) {
  return static_cast<float>((rank + 1) * (step % 7 + 1) + i % 5);
}

float SumOverRanks(int64_t i, int step, int ranks) {
  float sum = 0;
  for (int r = 0; r < ranks; ++r) sum += Value(r, i, step);
  return sum;
}

struct Op {
  std::string name;
  std::vector<float> data;
  Handle handle;
};

AllreduceOptions Sum() {
  AllreduceOptions options;
  options.op = ReduceOp::kSum;
  return options;
}

// Submits `count` allreduces of sizes 1..2053 (each in its own order per
// rank) and an allgather with a name of its own every step, waits and checks
// everything.
void Step(int step, int count, std::mt19937_64& rng) {
  const int rank = Rank();
  const int size = Size();
  std::vector<Op> ops(count);
  std::vector<int> order(count);
  for (int k = 0; k < count; ++k) {
    const int64_t n = 1 + (k * 331) % 2053;
    ops[k].name = absl::StrCat("grad.", k);
    ops[k].data.resize(n);
    for (int64_t i = 0; i < n; ++i) ops[k].data[i] = Value(rank, i, step);
    order[k] = k;
  }
  std::shuffle(order.begin(), order.end(), rng);
  // A slow-path operation in the middle: a new name every step.
  std::vector<float> mine(3, static_cast<float>(rank));
  StatusOr<Handle> gathered;
  for (int j = 0; j < count; ++j) {
    Op& op = ops[order[j]];
    Tensor t{op.data.data(),
             DataType::kFloat32,
             {static_cast<int64_t>(op.data.size())}};
    StatusOr<Handle> h = AllreduceAsync(op.name, t, t, Sum());
    ASSERT_TRUE(h.ok()) << h.status();
    op.handle = *h;
    if (j == count / 2) {
      gathered = AllgatherAsync(absl::StrCat("gather.", step),
                                Tensor{mine.data(), DataType::kFloat32, {3}});
      ASSERT_TRUE(gathered.ok()) << gathered.status();
    }
  }
  for (int k = 0; k < count; ++k) {
    Status s = ops[k].handle.Wait();
    ASSERT_TRUE(s.ok()) << ops[k].name << ": " << s;
    for (size_t i = 0; i < ops[k].data.size(); ++i) {
      ASSERT_EQ(ops[k].data[i], SumOverRanks(i, step, size))
          << ops[k].name << " element " << i << " at step " << step;
    }
  }
  ASSERT_TRUE(gathered->Wait().ok());
  const float* all = static_cast<const float*>(gathered->output_data());
  for (int r = 0; r < size; ++r) {
    for (int i = 0; i < 3; ++i) ASSERT_EQ(all[r * 3 + i], r);
  }
}

std::mt19937_64 Rng() { return std::mt19937_64(20261206 + 7919 * Rank()); }

TEST(FastLane, RepeatedTensorsTakeTheLaneInAnyOrderWithSlowOnesMixedIn) {
  std::mt19937_64 rng = Rng();
  const int64_t before = GetStats().fast_operations;
  for (int step = 0; step < 12; ++step) Step(step, 40, rng);
  const int64_t fast = GetStats().fast_operations - before;
  // The first two steps negotiate through rank 0 (new, then cached); the
  // rest should mostly run in the lane.
  EXPECT_GT(fast, 40 * 5) << "the fast lane was hardly used";
  std::printf("rank %d: %lld of %d operations in the fast lane\n", Rank(),
              static_cast<long long>(fast), 12 * 40);
}

TEST(FastLane, BroadcastTakesTheLaneToo) {
  const int64_t before = GetStats().fast_operations;
  for (int step = 0; step < 6; ++step) {
    std::vector<int64_t> value(5, Rank() == 1 % Size() ? 1000 + step : -1);
    Tensor t{value.data(), DataType::kInt64, {5}};
    ASSERT_TRUE(Broadcast("bcast", t, 1 % Size()).ok());
    for (int64_t v : value) ASSERT_EQ(v, 1000 + step);
  }
  EXPECT_GT(GetStats().fast_operations - before, 0);
}

TEST(FastLane, AllgatherWithUnevenRowsAndReducescatterTakeTheLane) {
  const int rank = Rank();
  const int size = Size();
  const int64_t before = GetStats().fast_operations;
  for (int step = 0; step < 6; ++step) {
    // Rank r contributes r + 1 rows of 3.
    const int64_t rows = rank + 1;
    std::vector<float> mine(rows * 3);
    for (int64_t i = 0; i < rows * 3; ++i) mine[i] = Value(rank, i, step);
    StatusOr<Handle> g = AllgatherAsync(
        "fast.gather", Tensor{mine.data(), DataType::kFloat32, {rows, 3}});
    ASSERT_TRUE(g.ok()) << g.status();
    ASSERT_TRUE(g->Wait().ok());
    ASSERT_EQ(g->output_shape()[0], size * (size + 1) / 2);
    const float* out = static_cast<const float*>(g->output_data());
    int64_t at = 0;
    for (int r = 0; r < size; ++r) {
      for (int64_t i = 0; i < (r + 1) * 3; ++i) {
        ASSERT_EQ(out[at++], Value(r, i, step)) << "step " << step;
      }
    }
    // Reducescatter: 2 rows per rank of 5.
    const int64_t n = 2 * size * 5;
    std::vector<float> in(n);
    for (int64_t i = 0; i < n; ++i) in[i] = Value(rank, i, step);
    StatusOr<Handle> rs = ReducescatterAsync(
        "fast.rs", Tensor{in.data(), DataType::kFloat32, {2 * size, 5}},
        nullptr, ReduceOp::kSum);
    ASSERT_TRUE(rs.ok()) << rs.status();
    ASSERT_TRUE(rs->Wait().ok());
    const float* part = static_cast<const float*>(rs->output_data());
    for (int64_t i = 0; i < 10; ++i) {
      ASSERT_EQ(part[i], SumOverRanks(rank * 10 + i, step, size))
          << "step " << step;
    }
  }
  EXPECT_GT(GetStats().fast_operations - before, 0);
}

// Alltoall repeats through the response cache and the lane like the others:
// each rank's splits are its own (rank r sends r + j + 1 rows of 2 to rank
// j); at step 4 one rank changes its splits, so every rank's output changes
// size and the lane must give way to a new negotiation, then resume.
TEST(FastLane,
     AlltoallWithUnevenSplitsTakesTheLaneAndChangedSplitsAreRenegotiated) {
  const int rank = Rank();
  const int size = Size();
  const int64_t before = GetStats().fast_operations;
  for (int step = 0; step < 10; ++step) {
    // From step 4 on, the last rank sends one more row to every rank.
    auto sends = [&](int from, int to) -> int64_t {
      return from + to + 1 + (step >= 4 && from == size - 1 ? 1 : 0);
    };
    std::vector<int64_t> splits(size);
    int64_t rows = 0;
    for (int j = 0; j < size; ++j) rows += splits[j] = sends(rank, j);
    // Row k of the block for rank j holds (step, rank, j, k).
    std::vector<float> in(rows * 2);
    int64_t at = 0;
    for (int j = 0; j < size; ++j) {
      for (int64_t k = 0; k < splits[j]; ++k, ++at) {
        in[2 * at] = static_cast<float>(1000 * step + 100 * rank + 10 * j);
        in[2 * at + 1] = static_cast<float>(k);
      }
    }
    StatusOr<Handle> h =
        AlltoallAsync("fast.alltoall",
                      Tensor{in.data(), DataType::kFloat32, {rows, 2}}, splits);
    ASSERT_TRUE(h.ok()) << h.status();
    ASSERT_TRUE(h->Wait().ok()) << "step " << step;
    int64_t expected_rows = 0;
    for (int r = 0; r < size; ++r) expected_rows += sends(r, rank);
    ASSERT_EQ(h->output_shape()[0], expected_rows) << "step " << step;
    const float* out = static_cast<const float*>(h->output_data());
    at = 0;
    for (int r = 0; r < size; ++r) {
      for (int64_t k = 0; k < sends(r, rank); ++k, ++at) {
        ASSERT_EQ(out[2 * at], 1000 * step + 100 * r + 10 * rank)
            << "step " << step << " from rank " << r << " row " << k;
        ASSERT_EQ(out[2 * at + 1], k) << "step " << step;
      }
    }
  }
  // The cache and the lane serve the alltoall when every rank is on one
  // host (as under this test's mpirun).
  EXPECT_GT(GetStats().fast_operations - before, 0);
}

TEST(FastLane, ChangedTensorIsNegotiatedAgain) {
  for (int step = 0; step < 8; ++step) {
    // Every rank changes the shape at step 4: the lane must not mix them.
    const int64_t n = step < 4 ? 16 : 24;
    std::vector<float> data(n);
    for (int64_t i = 0; i < n; ++i) data[i] = Value(Rank(), i, step);
    Tensor t{data.data(), DataType::kFloat32, {n}};
    ASSERT_TRUE(Allreduce("changing", t, t, Sum()).ok());
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_EQ(data[i], SumOverRanks(i, step, Size())) << "step " << step;
    }
  }
}

TEST(FastLane, OneRankSubmittingSomethingElseFailsOnEveryRank) {
  // Make "odd" fast first.
  for (int step = 0; step < 4; ++step) {
    std::vector<float> data(8, 1.0f);
    Tensor t{data.data(), DataType::kFloat32, {8}};
    ASSERT_TRUE(Allreduce("odd", t, t, Sum()).ok());
  }
  // Rank 0 sends another shape; everybody else the registered one.
  const int64_t n = Rank() == 0 ? 9 : 8;
  std::vector<float> data(n, 1.0f);
  Tensor t{data.data(), DataType::kFloat32, {n}};
  const Status s = Allreduce("odd", t, t, Sum());
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_NE(s.message().find("shape mismatch"), std::string::npos) << s;
  // The job goes on.
  std::vector<float> after(4, 1.0f);
  Tensor a{after.data(), DataType::kFloat32, {4}};
  ASSERT_TRUE(Allreduce("odd.after", a, a, Sum()).ok());
  EXPECT_EQ(after[0], Size());
}

TEST(FastLane, LatePeerStillGetsTheRightResult) {
  for (int step = 0; step < 5; ++step) {
    // At step 3 the last rank is 1.5 s late: the others' fast submissions
    // fall back to rank 0 after a second; the result is the same.
    if (step == 3 && Rank() == Size() - 1) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    }
    std::vector<float> data(100);
    for (int64_t i = 0; i < 100; ++i) data[i] = Value(Rank(), i, step);
    Tensor t{data.data(), DataType::kFloat32, {100}};
    ASSERT_TRUE(Allreduce("late", t, t, Sum()).ok());
    for (int64_t i = 0; i < 100; ++i) {
      ASSERT_EQ(data[i], SumOverRanks(i, step, Size())) << "step " << step;
    }
  }
}

TEST(FastLane, ResultsArriveWithoutWaiting) {
  // Submit, do not wait: the background threads run the lane, Poll sees it.
  for (int step = 0; step < 4; ++step) {
    std::vector<float> data(64, 1.0f);
    Tensor t{data.data(), DataType::kFloat32, {64}};
    StatusOr<Handle> h = AllreduceAsync("nowait", t, t, Sum());
    ASSERT_TRUE(h.ok());
    const auto start = std::chrono::steady_clock::now();
    while (!h->Poll() && std::chrono::steady_clock::now() - start <
                             std::chrono::seconds(20)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ASSERT_TRUE(h->Poll()) << "step " << step << " never completed";
    ASSERT_TRUE(h->Wait().ok());
    EXPECT_EQ(data[0], Size());
  }
}

TEST(FastLane, JoinTurnsTheLaneOffAndJoinedRanksContributeZeros) {
  if (Size() < 2) GTEST_SKIP();
  for (int step = 0; step < 4; ++step) {
    std::vector<float> data(32, 1.0f);
    Tensor t{data.data(), DataType::kFloat32, {32}};
    ASSERT_TRUE(Allreduce("joined", t, t, Sum()).ok());
  }
  // The last rank runs out of data and joins; the others go on.
  if (Rank() == Size() - 1) {
    StatusOr<int> last = Join();
    ASSERT_TRUE(last.ok()) << last.status();
  } else {
    for (int step = 0; step < 3; ++step) {
      std::vector<float> data(32, 1.0f);
      Tensor t{data.data(), DataType::kFloat32, {32}};
      ASSERT_TRUE(Allreduce("joined", t, t, Sum()).ok());
      EXPECT_EQ(data[0], Size() - 1) << "step " << step;
    }
    ASSERT_TRUE(Join().ok());
  }
}

}  // namespace
}  // namespace kolo

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (!kolo::Init().ok()) return 2;
  const int result = RUN_ALL_TESTS();
  kolo::Shutdown();
  return result;
}
