// Tests of the networked doorbells (ranks on several hosts) at np 2: a ring
// from the other rank, over loopback (same host name) and over the host's
// own addresses (different host names), and the application's RingSelf.
#include "runtime/core/doorbell.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <mpi.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "runtime/common/job_secret.h"
#include "runtime/common/net.h"

namespace kolo {
namespace {

using Clock = std::chrono::steady_clock;

const std::string kSecret(32, 's');

int Rank() {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

// Rank 1 rings rank 0 after a pause; rank 0 must wake for it well before
// its 10 s timeout.
void ExpectRingWakesRankZero(Doorbell& bell) {
  ASSERT_TRUE(bell.shared());
  ASSERT_TRUE(bell.lossy());
  const uint32_t seen = bell.Peek();
  MPI_Barrier(MPI_COMM_WORLD);
  if (Rank() == 1) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    bell.Ring(0);
  } else {
    const auto start = Clock::now();
    while (bell.Peek() == seen &&
           Clock::now() - start < std::chrono::seconds(10)) {
      bell.Wait(seen, absl::Seconds(10));
    }
    const double waited =
        std::chrono::duration<double>(Clock::now() - start).count();
    EXPECT_NE(bell.Peek(), seen) << "no ring arrived in 10 s";
    EXPECT_LT(waited, 2.0) << "the ring took " << waited << " s";
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

TEST(NetworkedDoorbell, RingOverLoopbackWakesThePeer) {
  auto bell =
      Doorbell::CreateNetworked(MPI_COMM_WORLD, "samehost", "", kSecret);
  ASSERT_TRUE(bell.ok()) << bell.status();
  ExpectRingWakesRankZero(**bell);
}

TEST(NetworkedDoorbell, RingAcrossHostsWakesThePeer) {
  // Every rank must take the same branch: the decision is collective.
  int have = LocalIpv4Addresses("").empty() ? 0 : 1;
  int all = 0;
  MPI_Allreduce(&have, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (all == 0) GTEST_SKIP() << "no non-loopback IPv4 address on this host";
  auto bell = Doorbell::CreateNetworked(
      MPI_COMM_WORLD, absl::StrCat("host", Rank()), "", kSecret);
  ASSERT_TRUE(bell.ok()) << bell.status();
  ExpectRingWakesRankZero(**bell);
}

TEST(NetworkedDoorbell, RingSelfWakesAndSilenceTimesOut) {
  auto bell =
      Doorbell::CreateNetworked(MPI_COMM_WORLD, "samehost", "", kSecret);
  ASSERT_TRUE(bell.ok()) << bell.status();
  Doorbell& b = **bell;
  // Nobody rings: the wait ends at its timeout with the count unchanged.
  uint32_t seen = b.Peek();
  auto start = Clock::now();
  b.Wait(seen, absl::Milliseconds(100));
  double waited = std::chrono::duration<double>(Clock::now() - start).count();
  EXPECT_EQ(b.Peek(), seen);
  EXPECT_GE(waited, 0.09);
  // Another thread of this process rings.
  seen = b.Peek();
  std::thread ringer([&b] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    b.RingSelf();
  });
  start = Clock::now();
  while (b.Peek() == seen && Clock::now() - start < std::chrono::seconds(10)) {
    b.Wait(seen, absl::Seconds(10));
  }
  waited = std::chrono::duration<double>(Clock::now() - start).count();
  ringer.join();
  EXPECT_NE(b.Peek(), seen);
  EXPECT_LT(waited, 2.0);
  MPI_Barrier(MPI_COMM_WORLD);
}

TEST(NetworkedDoorbell, DatagramsFromStrangersNeverRingAndAFloodDoesNotStarve) {
  auto bell =
      Doorbell::CreateNetworked(MPI_COMM_WORLD, "samehost", "", kSecret);
  ASSERT_TRUE(bell.ok()) << bell.status();
  Doorbell& b = **bell;
  int port = b.port();
  MPI_Bcast(&port, 1, MPI_INT, 0, MPI_COMM_WORLD);
  const uint32_t seen = b.Peek();
  MPI_Barrier(MPI_COMM_WORLD);
  if (Rank() == 1) {
    // A stranger's socket floods rank 0 with junk and with the right tag
    // (which a local user cannot know, but even so) for 0.6 s; then the
    // real peer rings.
    const int stranger = socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in target{};
    target.sin_family = AF_INET;
    target.sin_port = htons(static_cast<uint16_t>(port));
    target.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const std::string tag = Mac(kSecret, "kolo-doorbell").substr(0, 8);
    const auto start = Clock::now();
    while (Clock::now() - start < std::chrono::milliseconds(600)) {
      for (int i = 0; i < 50; ++i) {
        sendto(stranger, "junk", 4, 0, reinterpret_cast<sockaddr*>(&target),
               sizeof(target));
        sendto(stranger, tag.data(), tag.size(), 0,
               reinterpret_cast<sockaddr*>(&target), sizeof(target));
      }
    }
    close(stranger);
    // The real ring: rings are lossy, so ring until rank 0 has seen one.
    int seen_it = 0;
    while (!seen_it) {
      b.Ring(0);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      int flag = 0;
      MPI_Status status;
      MPI_Iprobe(0, 7, MPI_COMM_WORLD, &flag, &status);
      if (flag) MPI_Recv(&seen_it, 1, MPI_INT, 0, 7, MPI_COMM_WORLD, &status);
    }
  } else {
    // During the flood nothing counts as a ring, and waiting goes on
    // (each wait returns; the flood does not hold the thread).
    const auto start = Clock::now();
    int waits = 0;
    while (Clock::now() - start < std::chrono::milliseconds(500)) {
      b.Wait(seen, absl::Milliseconds(50));
      ++waits;
    }
    EXPECT_EQ(b.Peek(), seen) << "a stranger's datagram rang the bell";
    EXPECT_GT(b.rejected(), 0);
    EXPECT_GT(waits, 0);
    // After it, the real peer's ring gets through.
    while (b.Peek() == seen &&
           Clock::now() - start < std::chrono::seconds(10)) {
      b.Wait(seen, absl::Milliseconds(50));
    }
    EXPECT_NE(b.Peek(), seen) << "the peer's ring never arrived";
    int seen_it = 1;
    MPI_Send(&seen_it, 1, MPI_INT, 1, 7, MPI_COMM_WORLD);
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

}  // namespace
}  // namespace kolo

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  const int result = RUN_ALL_TESTS();
  MPI_Finalize();
  return result;
}
