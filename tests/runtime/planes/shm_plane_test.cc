// The shared-memory data plane (ShmComm, ShmBackend) with N ranks as threads
// of this process: real POSIX segments, each mapped by every rank's thread,
// set up through an in-process bootstrap.
#include <gtest/gtest.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <thread>

#include "kolo/options.h"
#include "runtime/backend/shm/shm_backend.h"
#include "tests/runtime/planes/in_process_bootstrap.h"
#include "tests/runtime/planes/plane_checks.h"

namespace kolo::testing {
namespace {

// Small slots (the minimum for 4 ranks), so that modest counts take many
// rounds and every chunk boundary is crossed.
constexpr int64_t kSlotBytes = 16 << 10;
constexpr double kPeerTimeoutSeconds = 5;

// The default threshold of single copy (kolo/options.h).
const int64_t kSingleCopyBytes = Options().shm_single_copy_bytes;

std::unique_ptr<Backend> MakeShm(Bootstrap* bootstrap,
                                 int64_t single_copy_bytes = kSingleCopyBytes) {
  StatusOr<std::unique_ptr<ShmComm>> comm = ShmComm::Create(
      bootstrap, kSlotBytes, kPeerTimeoutSeconds, single_copy_bytes);
  if (!comm.ok()) {
    ADD_FAILURE() << "ShmComm::Create on rank " << bootstrap->rank() << ": "
                  << comm.status();
    return nullptr;
  }
  return std::make_unique<ShmBackend>(*std::move(comm));
}

// A survivor's failure: Aborted naming local rank `victim`, within 3 s of
// `start`.
void ExpectAbortedNaming(const Status& s, int victim, double start) {
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
  EXPECT_NE(
      std::string(s.message()).find("local rank " + std::to_string(victim)),
      std::string::npos)
      << s;
  EXPECT_LT(Now() - start, 3.0);
}

// Survivors keep their planes until all of them have checked: one that left
// first would be the first departure the others see, and blamed instead of
// the victim.
void LeaveTogether(std::atomic<int>& checked, int survivors) {
  checked.fetch_add(1);
  while (checked.load() < survivors) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

// Every collective with single copy off (two copies through the slots),
// on for every size (1 byte: broadcasts, allgathers and every alltoall
// part read from the peers' buffers) and at 4 KiB (alltoalls mix both
// paths, small parts through the slots).
TEST(ShmPlane, EveryCollectiveMatchesTheReference) {
  for (int64_t single_copy : {int64_t{0}, int64_t{1}, int64_t{4096}}) {
    for (int size : {1, 2, 3, 4}) {
      SCOPED_TRACE("ranks " + std::to_string(size) + ", single copy from " +
                   std::to_string(single_copy) + " bytes");
      InProcessGroup group(size, 30);
      RunRanks(size, [&](int rank) {
        std::unique_ptr<Bootstrap> bootstrap = group.Join(rank);
        std::unique_ptr<Backend> shm = MakeShm(bootstrap.get(), single_copy);
        if (shm != nullptr)
          CheckCollectives(shm.get(), rank, size,
                           SweepFor(size, single_copy == 0 ? 4 : 0));
        // Nobody leaves while a peer may still read its segment.
        EXPECT_TRUE(bootstrap->Barrier().ok());
      });
      if (HasFatalFailure()) return;
    }
  }
}

// Single copy is on where the kernel allows it (here: one process, so
// always) and off when asked; the choice is the same on every rank.
TEST(ShmPlane, SingleCopyIsOnUnlessTurnedOff) {
  for (int64_t single_copy : {int64_t{0}, int64_t{65536}}) {
    InProcessGroup group(3, 30);
    RunRanks(3, [&](int rank) {
      std::unique_ptr<Bootstrap> bootstrap = group.Join(rank);
      StatusOr<std::unique_ptr<ShmComm>> comm = ShmComm::Create(
          bootstrap.get(), kSlotBytes, kPeerTimeoutSeconds, single_copy);
      ASSERT_TRUE(comm.ok()) << comm.status();
      EXPECT_EQ((*comm)->single_copy(), single_copy > 0);
      EXPECT_EQ((*comm)->SingleCopy(65535), false);
      EXPECT_EQ((*comm)->SingleCopy(65536), single_copy > 0);
      // The timeline's name for the path.
      EXPECT_STREQ((*comm)->CopyAlgorithm(65535), "rounds");
      EXPECT_STREQ((*comm)->CopyAlgorithm(65536),
                   single_copy > 0 ? "single_copy" : "rounds");
      EXPECT_TRUE(bootstrap->Barrier().ok());
    });
  }
}

// Waiters spin when the ranks have a CPU each between them, also when each
// is bound to a core of its own (mpirun's default binding); not when they
// share fewer cores than there are of them.
TEST(ShmPlane, SpinsOnlyWhenTheRanksHaveACpuEach) {
  cpu_set_t all;
  ASSERT_EQ(sched_getaffinity(0, sizeof(all), &all), 0);
  std::vector<int> cpus;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &all)) cpus.push_back(cpu);
  }
  if (cpus.size() < 2) GTEST_SKIP() << "needs two CPUs";
  enum class Binding { kNone, kACoreEach, kOneCoreForAll };
  struct Case {
    const char* what;
    int ranks;
    Binding binding;
    bool spins;
  };
  const int n = static_cast<int>(cpus.size());
  for (const Case& c :
       {Case{"unbound, a CPU each", n, Binding::kNone, true},
        Case{"unbound, more ranks than CPUs", n + 1, Binding::kNone, false},
        Case{"bound to a core each", 2, Binding::kACoreEach, true},
        Case{"bound to one core together", 2, Binding::kOneCoreForAll,
             false}}) {
    SCOPED_TRACE(c.what);
    InProcessGroup group(c.ranks, 30);
    RunRanks(c.ranks, [&](int rank) {
      if (c.binding != Binding::kNone) {
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpus[c.binding == Binding::kACoreEach ? rank % n : 0], &one);
        ASSERT_EQ(sched_setaffinity(0, sizeof(one), &one), 0);
      }
      std::unique_ptr<Bootstrap> bootstrap = group.Join(rank);
      StatusOr<std::unique_ptr<ShmComm>> comm = ShmComm::Create(
          bootstrap.get(), std::max<int64_t>(kSlotBytes, 4096 * c.ranks),
          kPeerTimeoutSeconds, kSingleCopyBytes);
      ASSERT_TRUE(comm.ok()) << comm.status();
      EXPECT_EQ((*comm)->spinning(), c.spins);
      EXPECT_TRUE(bootstrap->Barrier().ok());
    });
  }
}

// A root that is gone before a single-copy broadcast fails the readers with
// Aborted naming it, within the peer-death bound, instead of a hang or a
// read of freed memory.
TEST(ShmPlane, RootThatDiesBeforeASingleCopyBroadcastFailsTheOthers) {
  InProcessGroup group(3, 30);
  std::atomic<int> checked{0};  // LeaveTogether
  RunRanks(3, [&](int rank) {
    std::unique_ptr<Bootstrap> bootstrap = group.Join(rank);
    std::unique_ptr<Backend> shm = MakeShm(bootstrap.get(), 1);
    ASSERT_NE(shm, nullptr);
    std::vector<char> data(1 << 20, static_cast<char>(rank));
    ASSERT_TRUE(shm->Broadcast(data.data(), data.size(), 1).ok());
    ASSERT_EQ(data.back(), 1);
    if (rank == 1) {
      shm.reset();
      return;
    }
    const double start = Now();
    const Status s = shm->Broadcast(data.data(), data.size(), 1);
    ExpectAbortedNaming(s, 1, start);
    LeaveTogether(checked, 2);
  });
}

// Small allreduces take the one-barrier path, where every rank reduces every
// peer's copy itself: the ranks must still agree bit for bit (each sums in
// rank order), also across the switch to the two-barrier path at the slot
// size and with calls of both paths interleaved.
TEST(ShmPlane, SmallAllreducesGiveEveryRankTheSameBits) {
  for (int size : {3, 4}) {
    SCOPED_TRACE("ranks " + std::to_string(size));
    const std::vector<int64_t> counts = {
        1, 7, 1000, kSlotBytes / 4, kSlotBytes / 4 + 1, 3, 50000, 2};
    std::vector<std::vector<std::vector<float>>> results(
        size, std::vector<std::vector<float>>(counts.size()));
    InProcessGroup group(size, 30);
    RunRanks(size, [&](int rank) {
      std::unique_ptr<Bootstrap> bootstrap = group.Join(rank);
      std::unique_ptr<Backend> shm = MakeShm(bootstrap.get());
      ASSERT_NE(shm, nullptr);
      for (size_t c = 0; c < counts.size(); ++c) {
        // Values of very different magnitudes, so that the order of the
        // additions changes the rounded sum.
        std::mt19937 rng(static_cast<uint32_t>(Seed() + 97 * c + rank));
        std::uniform_real_distribution<float> mantissa(-1.0f, 1.0f);
        std::vector<float> input(counts[c]);
        for (float& v : input) {
          const float m = mantissa(rng);
          v = std::ldexp(m, static_cast<int>(rng() % 40) - 20);
        }
        std::vector<float>& out = results[rank][c];
        out.assign(counts[c], -1.0f);
        ReductionSpec spec;
        spec.postscale = 0.5;
        ASSERT_TRUE(
            shm->Allreduce(input.data(), out.data(), counts[c], spec).ok());
      }
      EXPECT_TRUE(bootstrap->Barrier().ok());
    });
    if (HasFatalFailure()) return;
    for (size_t c = 0; c < counts.size(); ++c) {
      SCOPED_TRACE("count " + std::to_string(counts[c]));
      // The reference, in double precision from the same inputs.
      // Float32 sums are off by a few units of the largest term's last
      // place.
      std::vector<double> expected(counts[c], 0.0);
      std::vector<double> magnitude(counts[c], 0.0);
      for (int rank = 0; rank < size; ++rank) {
        std::mt19937 rng(static_cast<uint32_t>(Seed() + 97 * c + rank));
        std::uniform_real_distribution<float> mantissa(-1.0f, 1.0f);
        for (int64_t i = 0; i < counts[c]; ++i) {
          const float m = mantissa(rng);
          const float v = std::ldexp(m, static_cast<int>(rng() % 40) - 20);
          expected[i] += v;
          magnitude[i] += std::fabs(v);
        }
      }
      for (int64_t i = 0; i < counts[c]; ++i) {
        ASSERT_NEAR(results[0][c][i], 0.5 * expected[i], 1e-6 * magnitude[i])
            << "element " << i;
      }
      for (int rank = 1; rank < size; ++rank) {
        ASSERT_EQ(std::memcmp(results[rank][c].data(), results[0][c].data(),
                              counts[c] * sizeof(float)),
                  0)
            << "rank " << rank << " disagrees with rank 0";
      }
    }
  }
}

TEST(ShmPlane, LatePeerStillGetsTheRightResult) {
  std::mt19937_64 rng(Seed());
  const int late = static_cast<int>(rng() % 3);
  InProcessGroup group(3, 30);
  RunRanks(3, [&](int rank) {
    std::unique_ptr<Bootstrap> bootstrap = group.Join(rank);
    if (rank == late) std::this_thread::sleep_for(std::chrono::seconds(1));
    std::unique_ptr<Backend> shm = MakeShm(bootstrap.get());
    ASSERT_NE(shm, nullptr);
    // Late again, inside the data plane this time: longer than a barrier
    // spins, shorter than the peer timeout.
    if (rank == late) {
      std::this_thread::sleep_for(std::chrono::milliseconds(700));
    }
    EXPECT_TRUE(AllreduceSumIsRight(shm.get(), rank, 3, 100003));
    // And late for a small allreduce (the one-barrier path).
    if (rank == late) {
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
    }
    EXPECT_TRUE(AllreduceSumIsRight(shm.get(), rank, 3, 1000));
    EXPECT_TRUE(bootstrap->Barrier().ok());
  });
}

// The one-barrier path of a small allreduce fails like the others when a
// peer is gone.
TEST(ShmPlane, PeerThatDiesBeforeASmallAllreduceFailsTheOthersWithAborted) {
  InProcessGroup group(3, 30);
  std::atomic<int> checked{0};  // LeaveTogether
  RunRanks(3, [&](int rank) {
    std::unique_ptr<Bootstrap> bootstrap = group.Join(rank);
    std::unique_ptr<Backend> shm = MakeShm(bootstrap.get());
    ASSERT_NE(shm, nullptr);
    std::vector<float> data(1000, 1.0f);
    ASSERT_TRUE(shm->Allreduce(data.data(), data.size(), {}).ok());
    if (rank == 1) {
      shm.reset();
      return;
    }
    const double start = Now();
    const Status s = shm->Allreduce(data.data(), data.size(), {});
    ExpectAbortedNaming(s, 1, start);
    LeaveTogether(checked, 2);
  });
}

// The victim takes part in the first rounds of an allreduce and then
// disappears (its plane is destroyed, which stops its sign of life), while
// its peers wait for it in a later round.
TEST(ShmPlane, PeerThatDiesMidRoundFailsTheOthersWithAborted) {
  std::mt19937_64 rng(Seed() + 1);
  const int victim = static_cast<int>(rng() % 3);
  InProcessGroup group(3, 30);
  std::atomic<int> checked{0};  // LeaveTogether
  RunRanks(3, [&](int rank) {
    std::unique_ptr<Bootstrap> bootstrap = group.Join(rank);
    std::unique_ptr<Backend> shm = MakeShm(bootstrap.get());
    ASSERT_NE(shm, nullptr);
    const int64_t count = 1 << 18;  // 64 rounds of 4096 floats
    std::vector<float> data(count, 1.0f);
    ReductionSpec spec;
    if (rank == victim) {
      // Only the first 8 rounds: then it is gone.
      ASSERT_TRUE(shm->Allreduce(data.data(), 8 * 4096, spec).ok());
      shm.reset();
      return;
    }
    const double start = Now();
    const Status s = shm->Allreduce(data.data(), count, spec);
    ExpectAbortedNaming(s, victim, start);
    LeaveTogether(checked, 2);
  });
}

TEST(ShmPlane, PeerThatAbandonsFailsTheOthersWithItsReason) {
  InProcessGroup group(3, 30);
  RunRanks(3, [&](int rank) {
    std::unique_ptr<Bootstrap> bootstrap = group.Join(rank);
    std::unique_ptr<Backend> shm = MakeShm(bootstrap.get());
    ASSERT_NE(shm, nullptr);
    std::vector<float> data(100000, 1.0f);
    if (rank == 2) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      shm->Abandon("rank 2 could not allocate its output", true);
    } else {
      const double start = Now();
      const Status s = shm->Allreduce(data.data(), data.size(), {});
      EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
      EXPECT_NE(std::string(s.message()).find("could not allocate"),
                std::string::npos)
          << s;
      EXPECT_LT(Now() - start, 3.0);
    }
    // Stay mapped until every rank has seen the abandonment.
    EXPECT_TRUE(bootstrap->Barrier().ok());
  });
}

// A rank that never reaches set-up fails its peers' set-up within the
// bootstrap's bound instead of hanging them.
TEST(ShmPlane, PeerThatNeverArrivesFailsSetUp) {
  InProcessGroup group(3, 1);
  std::unique_ptr<Bootstrap> absent = group.Join(2);
  RunRanks(2, [&](int rank) {
    std::unique_ptr<Bootstrap> bootstrap = group.Join(rank);
    StatusOr<std::unique_ptr<ShmComm>> comm =
        ShmComm::Create(bootstrap.get(), kSlotBytes, kPeerTimeoutSeconds,
                        kSingleCopyBytes);
    EXPECT_FALSE(comm.ok());
    EXPECT_NE(std::string(comm.status().message()).find("rank(s) 2"),
              std::string::npos)
        << comm.status();
  });
}

}  // namespace
}  // namespace kolo::testing
