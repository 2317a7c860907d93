// Tests of the in-process bootstrap group that the plane tests stand on.
#include "tests/runtime/planes/in_process_bootstrap.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>

#include "tests/runtime/planes/plane_checks.h"

namespace kolo::testing {
namespace {

TEST(InProcessBootstrap, CollectivesDeliverEveryRanksBytes) {
  for (int size : {1, 2, 3, 4}) {
    InProcessGroup group(size, 10);
    RunRanks(size, [&](int rank) {
      std::unique_ptr<Bootstrap> b = group.Join(rank);
      for (int round = 0; round < 3; ++round) {
        const int64_t mine = rank * 1000 + round;
        std::vector<int64_t> all(size);
        ASSERT_TRUE(b->Allgather(&mine, all.data(), sizeof(mine)).ok());
        for (int r = 0; r < size; ++r) EXPECT_EQ(all[r], r * 1000 + round);
        int64_t value = rank == size - 1 ? 42 + round : -1;
        ASSERT_TRUE(b->Broadcast(&value, sizeof(value), size - 1).ok());
        EXPECT_EQ(value, 42 + round) << "rank " << rank;
        StatusOr<bool> all_true = b->AllTrue(rank != round);
        ASSERT_TRUE(all_true.ok());
        EXPECT_EQ(*all_true, round >= size) << "rank " << rank;
        ASSERT_TRUE(b->Barrier().ok());
      }
    });
  }
}

TEST(InProcessBootstrap, RankThatNeverArrivesFailsTheOthersWithinTheTimeout) {
  InProcessGroup group(3, 0.5);
  std::unique_ptr<Bootstrap> absent = group.Join(2);  // joins, never calls
  RunRanks(2, [&](int rank) {
    std::unique_ptr<Bootstrap> b = group.Join(rank);
    const double start = Now();
    const Status s = b->Barrier();
    EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
    EXPECT_NE(std::string(s.message()).find("rank(s) 2 did not reach"),
              std::string::npos)
        << s;
    EXPECT_LT(Now() - start, 5.0);
  });
}

TEST(InProcessBootstrap, RankThatLeavesFailsTheOthersAtOnce) {
  InProcessGroup group(3, 30);
  RunRanks(3, [&](int rank) {
    std::unique_ptr<Bootstrap> b = group.Join(rank);
    if (rank == 1) return;  // its handle goes: it left the group
    const double start = Now();
    const Status s = b->Barrier();
    EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
    EXPECT_NE(std::string(s.message()).find("rank(s) 1 left"),
              std::string::npos)
        << s;
    EXPECT_LT(Now() - start, 5.0);
  });
}

TEST(InProcessBootstrap, RanksThatDisagreeOnACollectiveFail) {
  InProcessGroup group(2, 2);
  RunRanks(2, [&](int rank) {
    std::unique_ptr<Bootstrap> b = group.Join(rank);
    int64_t value = rank;
    int64_t all[2];
    // Rank 0 gathers 8 bytes, rank 1 4: whichever comes second fails, and
    // the first then waits in vain.
    const Status s = b->Allgather(&value, all, rank == 0 ? 8 : 4);
    EXPECT_FALSE(s.ok());
    EXPECT_TRUE(s.code() == absl::StatusCode::kInvalidArgument ||
                s.code() == absl::StatusCode::kDeadlineExceeded ||
                s.code() == absl::StatusCode::kAborted)
        << s;
  });
}

}  // namespace
}  // namespace kolo::testing
