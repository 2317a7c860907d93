// Tests of the shared-memory barrier's adaptive spin: it stops spinning
// while peers keep it waiting long (training: they compute), and spins
// again once their waits turn short (a run of small collectives), instead
// of paying a futex wake-up for every later barrier.
#include "runtime/backend/shm/shm_barrier.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <thread>
#include <vector>

namespace kolo {
namespace {

constexpr int64_t kMaxSpinNs = 200000;

struct TwoRanks {
  ShmBarrierState state{};
  std::vector<PeerLifeState> lives = std::vector<PeerLifeState>(2);
  PeerWatch watch0{{&lives[0], &lives[1]}, 0, 0};
  PeerWatch watch1{{&lives[0], &lives[1]}, 1, 0};
  ShmBarrier barrier0{&state, 2, &watch0, kMaxSpinNs};
  ShmBarrier barrier1{&state, 2, &watch1, kMaxSpinNs};
};

TEST(ShmBarrier, SpinsAgainOnceLongWaitsTurnShort) {
  if (std::thread::hardware_concurrency() < 2) {
    GTEST_SKIP() << "spinning needs a core per rank";
  }
  TwoRanks ranks;
  constexpr int kLong = 40;
  constexpr int kShort = 2000;
  constexpr int kTries = 3;
  // The least spin seen during the long waits.
  int64_t spins_after_long = kMaxSpinNs;
  std::vector<int64_t> spins_after_short;
  std::thread peer([&] {
    for (int i = 0; i < kLong; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(3));
      ASSERT_TRUE(ranks.barrier1.Wait().ok());
    }
    for (int i = 0; i < kTries * kShort; ++i) {
      ASSERT_TRUE(ranks.barrier1.Wait().ok());
    }
  });
  for (int i = 0; i < kLong; ++i) {
    ASSERT_TRUE(ranks.barrier0.Wait().ok());
    spins_after_long = std::min(spins_after_long, ranks.barrier0.spin_ns());
  }
  for (int t = 0; t < kTries; ++t) {
    for (int i = 0; i < kShort; ++i) ASSERT_TRUE(ranks.barrier0.Wait().ok());
    spins_after_short.push_back(ranks.barrier0.spin_ns());
  }
  peer.join();
  // Forty waits of 3 ms halve the spin to nothing (a spin that was
  // preempted past its deadline does not count as covered, so this holds on
  // a busy host too)...
  EXPECT_EQ(spins_after_long, 0);
  // ...and back-to-back barriers bring it back (a busy host may preempt
  // the peer at the end of a run: one of three runs suffices).
  EXPECT_GE(*std::max_element(spins_after_short.begin(),
                              spins_after_short.end()),
            kMaxSpinNs / 4)
      << "spins after each run of " << kShort << " barriers: "
      << spins_after_short[0] << ", " << spins_after_short[1] << ", "
      << spins_after_short[2];
}

}  // namespace
}  // namespace kolo
