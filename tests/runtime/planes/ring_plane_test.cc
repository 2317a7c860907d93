// The ring data plane (RingComm, RingBackend) with N ranks as threads of
// this process, over the in-memory transport (with its faults) and over the
// real TcpTransport on 127.0.0.1 (wired up through an in-process
// bootstrap).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <random>
#include <set>
#include <string>
#include <thread>

#include "runtime/backend/ring/ring_backend.h"
#include "runtime/transport/tcp/tcp_transport.h"
#include "tests/runtime/planes/in_process_bootstrap.h"
#include "tests/runtime/planes/memory_transport.h"
#include "tests/runtime/planes/plane_checks.h"
#include "tests/runtime/tcp_listeners.h"

namespace kolo::testing {
namespace {

// Small pieces, so that the ring's piece loop runs many times.
constexpr int64_t kChunkBytes = 4096;

std::unique_ptr<Backend> MakeRing(std::unique_ptr<Transport> transport) {
  return std::make_unique<RingBackend>(
      std::make_unique<RingComm>(std::move(transport), kChunkBytes));
}

TcpTransportOptions TcpOptions() {
  TcpTransportOptions options;
  options.secret = std::string(32, 's');
  options.hostname = "samehost";
  options.peer_timeout_seconds = 5;
  options.connect_timeout = absl::Seconds(20);
  return options;
}

std::unique_ptr<Transport> MakeTcp(Bootstrap* bootstrap) {
  StatusOr<std::unique_ptr<TcpTransport>> tcp =
      TcpTransport::Create(bootstrap, TcpOptions());
  if (!tcp.ok()) {
    ADD_FAILURE() << "TcpTransport::Create on rank " << bootstrap->rank()
                  << ": " << tcp.status();
    return nullptr;
  }
  return *std::move(tcp);
}

TEST(RingPlane, EveryCollectiveMatchesTheReferenceOverMemory) {
  for (int size : {1, 2, 3, 4}) {
    SCOPED_TRACE("ranks " + std::to_string(size));
    MemoryNetwork network(size, 10);
    RunRanks(size, [&](int rank) {
      std::unique_ptr<Backend> ring = MakeRing(network.Connect(rank));
      CheckCollectives(ring.get(), rank, size, SweepFor(size, 4));
    });
    if (HasFatalFailure()) return;
  }
}

TEST(RingPlane, EveryCollectiveMatchesTheReferenceOverTcp) {
  for (int size : {2, 3}) {
    SCOPED_TRACE("ranks " + std::to_string(size));
    InProcessGroup group(size, 30);
    RunRanks(size, [&](int rank) {
      std::unique_ptr<Bootstrap> bootstrap = group.Join(rank);
      std::unique_ptr<Transport> tcp = MakeTcp(bootstrap.get());
      ASSERT_NE(tcp, nullptr);
      std::unique_ptr<Backend> ring = MakeRing(std::move(tcp));
      CheckCollectives(ring.get(), rank, size, SweepFor(size, 3));
      // Connections stay up until every rank is done with them.
      EXPECT_TRUE(bootstrap->Barrier().ok());
    });
    if (HasFatalFailure()) return;
  }
}

TEST(RingPlane, SlowAndLatePeersStillGetTheRightResult) {
  std::mt19937_64 rng(Seed() + 2);
  const int slow = static_cast<int>(rng() % 4);
  const int late = static_cast<int>((slow + 1 + rng() % 3) % 4);
  MemoryNetwork network(4, 10);
  network.SetDelay(slow, 0.02);  // every message of `slow` 20 ms late
  RunRanks(4, [&](int rank) {
    if (rank == late) std::this_thread::sleep_for(std::chrono::seconds(1));
    std::unique_ptr<Backend> ring = MakeRing(network.Connect(rank));
    EXPECT_TRUE(AllreduceSumIsRight(ring.get(), rank, 4, 1000));    // doubling
    EXPECT_TRUE(AllreduceSumIsRight(ring.get(), rank, 4, 100003));  // ring
  });
}

TEST(RingPlane, LatePeerStillGetsTheRightResultOverTcp) {
  InProcessGroup group(3, 30);
  RunRanks(3, [&](int rank) {
    std::unique_ptr<Bootstrap> bootstrap = group.Join(rank);
    if (rank == 1) std::this_thread::sleep_for(std::chrono::seconds(1));
    std::unique_ptr<Transport> tcp = MakeTcp(bootstrap.get());
    ASSERT_NE(tcp, nullptr);
    std::unique_ptr<Backend> ring = MakeRing(std::move(tcp));
    if (rank == 2) std::this_thread::sleep_for(std::chrono::seconds(1));
    EXPECT_TRUE(AllreduceSumIsRight(ring.get(), rank, 3, 100003));
    EXPECT_TRUE(bootstrap->Barrier().ok());
  });
}

// Every rank that fails abandons its plane, as the runtime does, so the
// failure travels around the ring; each must fail with Aborted, and within
// a bound far below the peer timeout.
void ExpectEveryRankAborted(Backend* ring, int rank, int victim,
                            const std::string& names) {
  std::vector<float> data(1 << 18, 1.0f);
  const double start = Now();
  const Status s = ring->Allreduce(data.data(), data.size(), {});
  ring->Abandon("failed", false);
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << "rank " << rank << s;
  EXPECT_LT(Now() - start, 3.0) << "rank " << rank;
  if (rank == (victim + 1) % 4) {
    // The rank that receives from it names it (others may first see a
    // neighbour that gave up).
    EXPECT_NE(std::string(s.message()).find(names), std::string::npos) << s;
  }
}

TEST(RingPlane, PeerThatDiesMidRoundFailsTheOthersWithAbortedOverMemory) {
  std::mt19937_64 rng(Seed() + 3);
  const int victim = static_cast<int>(rng() % 4);
  MemoryNetwork network(4, 30);  // the bound comes from the closed endpoint
  RunRanks(4, [&](int rank) {
    std::unique_ptr<Backend> ring = MakeRing(network.Connect(rank));
    if (rank == victim) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      ring.reset();  // its endpoint closes
      return;
    }
    ExpectEveryRankAborted(ring.get(), rank, victim,
                           "rank " + std::to_string(victim) + " closed");
  });
}

TEST(RingPlane, PeerThatDiesMidRoundFailsTheOthersWithAbortedOverTcp) {
  std::mt19937_64 rng(Seed() + 4);
  const int victim = static_cast<int>(rng() % 4);
  InProcessGroup group(4, 30);
  RunRanks(4, [&](int rank) {
    std::unique_ptr<Bootstrap> bootstrap = group.Join(rank);
    std::unique_ptr<Transport> tcp = MakeTcp(bootstrap.get());
    ASSERT_NE(tcp, nullptr);
    std::unique_ptr<Backend> ring = MakeRing(std::move(tcp));
    if (rank == victim) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      ring.reset();  // its sockets close
      return;
    }
    ExpectEveryRankAborted(ring.get(), rank, victim,
                           "rank " + std::to_string(victim) + " on host");
  });
}

TEST(RingPlane, SilentPeerFailsTheOthersWithinThePeerTimeout) {
  MemoryNetwork network(3, 1);
  RunRanks(3, [&](int rank) {
    std::unique_ptr<Backend> ring = MakeRing(network.Connect(rank));
    if (rank == 0) {
      // Alive (its endpoint stays open) but silent past the peer timeout.
      std::this_thread::sleep_for(std::chrono::milliseconds(2500));
      return;
    }
    std::vector<float> data(1000, 1.0f);
    const double start = Now();
    const Status s = ring->Allreduce(data.data(), data.size(), {});
    ring->Abandon("failed", false);
    EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
    EXPECT_LT(Now() - start, 2.4);
  });
}

// A message corrupted on the way is refused by its receiver (DataLoss), and
// the failure reaches the ranks that wait on it; no rank returns a wrong
// result.
TEST(RingPlane, CorruptedMessageFailsAndNeverYieldsAResult) {
  for (int64_t count : {int64_t{1000}, int64_t{100003}}) {
    SCOPED_TRACE("count " + std::to_string(count));
    MemoryNetwork network(3, 10);
    network.CorruptNext(0, 1);
    std::vector<Status> results(3);
    RunRanks(3, [&](int rank) {
      std::unique_ptr<Backend> ring = MakeRing(network.Connect(rank));
      std::vector<float> data(count);
      for (int64_t i = 0; i < count; ++i) data[i] = rank + 1.0f;
      results[rank] = ring->Allreduce(data.data(), count, {});
      if (!results[rank].ok()) {
        ring->Abandon("failed", false);
        return;
      }
      for (int64_t i = 0; i < count; ++i) {
        ASSERT_EQ(data[i], 6.0f) << "rank " << rank << " element " << i;
      }
    });
    EXPECT_EQ(results[1].code(), absl::StatusCode::kDataLoss) << results[1];
    EXPECT_NE(std::string(results[1].message()).find("from rank 0"),
              std::string::npos)
        << results[1];
  }
}

// A message that ends early (its sender's connection closes after part of
// it) fails the receiver with Aborted; the part never passes for a result.
TEST(RingPlane, TruncatedTcpMessageFailsTheReceiver) {
  InProcessGroup group(2, 30);
  RunRanks(2, [&](int rank) {
    std::unique_ptr<Bootstrap> bootstrap = group.Join(rank);
    std::unique_ptr<Transport> tcp = MakeTcp(bootstrap.get());
    ASSERT_NE(tcp, nullptr);
    std::vector<char> buffer(1 << 20, 'x');
    if (rank == 0) {
      ASSERT_TRUE(tcp->SendRecv(1, buffer.data(), 1000, -1, nullptr, 0).ok());
      tcp->Abandon();
    } else {
      const Status s =
          tcp->SendRecv(-1, nullptr, 0, 0, buffer.data(), buffer.size());
      EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
      EXPECT_NE(std::string(s.message()).find("rank 0"), std::string::npos)
          << s;
    }
    EXPECT_TRUE(bootstrap->Barrier().ok());
  });
}

// Hostile bytes on the wire-up sockets: while rank 1 is late, the attacker
// opens connections to rank 0's listeners that send junk (refused: it
// claims no valid rank), send nothing, or claim rank 1 without the job's
// secret. None of them takes rank 1's place: the real rank 1 is connected
// and the ring's result is right (tests/runtime/mpi/tcp_transport_test.cc
// checks the same across processes).
TEST(RingPlane, HostileTcpConnectionsAreDroppedAndTheResultIsRight) {
  const std::vector<Listener> before = OwnListeners();
  const std::set<Listener> known(before.begin(), before.end());
  std::vector<Listener> seen;
  std::vector<int> attacks;
  std::atomic<bool> stop{false};
  std::thread attacker([&] {
    while (!stop && seen.empty()) {
      seen = OwnListeners(known);
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    for (const Listener& l : seen) {
      attacks.push_back(ConnectTo(l));  // silent
      if (int fd = ConnectTo(l); fd >= 0) {
        const std::string junk(200, 'x');
        send(fd, junk.data(), junk.size(), MSG_NOSIGNAL);
        attacks.push_back(fd);
      }
      if (int fd = ConnectAsImpostor(l); fd >= 0) attacks.push_back(fd);
    }
  });
  InProcessGroup group(2, 30);
  RunRanks(2, [&](int rank) {
    std::unique_ptr<Bootstrap> bootstrap = group.Join(rank);
    if (rank == 1) std::this_thread::sleep_for(std::chrono::seconds(1));
    TcpTransportOptions options = TcpOptions();
    options.handshake_timeout = absl::Milliseconds(500);
    StatusOr<std::unique_ptr<TcpTransport>> tcp =
        TcpTransport::Create(bootstrap.get(), options);
    ASSERT_TRUE(tcp.ok()) << tcp.status();
    std::unique_ptr<Backend> ring = MakeRing(*std::move(tcp));
    EXPECT_TRUE(AllreduceSumIsRight(ring.get(), rank, 2, 100003));
    EXPECT_TRUE(bootstrap->Barrier().ok());
  });
  stop = true;
  attacker.join();
  EXPECT_FALSE(seen.empty()) << "the attacker found no listener";
  for (int fd : attacks) {
    if (fd >= 0) close(fd);
  }
}

}  // namespace
}  // namespace kolo::testing
