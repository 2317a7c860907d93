// Tests of the TCP transport at np 2 against hostile and silent connections:
// while rank 1 is late to wire-up, a thread on rank 0 finds rank 0's
// listening sockets and attacks each (a connection that sends nothing, one
// that sends junk, a port scan, and one that claims rank 1 without the job
// secret). Wire-up must still finish with the real rank 1, whose data must
// arrive; listeners must be bound only to loopback and published addresses;
// and a peer that goes silent mid-transfer must fail the wait within the
// peer timeout, naming it.
#include "runtime/transport/tcp/tcp_transport.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <mpi.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "runtime/common/mpi_bootstrap.h"
#include "runtime/common/net.h"
#include "tests/runtime/tcp_listeners.h"

namespace kolo {
namespace {

using Clock = std::chrono::steady_clock;

int Rank() {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

TcpTransportOptions Options() {
  TcpTransportOptions options;
  options.secret = std::string(32, 'k');
  options.hostname = "samehost";
  options.peer_timeout_seconds = 1;
  options.handshake_timeout = absl::Milliseconds(500);
  options.connect_timeout = absl::Seconds(20);
  return options;
}

using testing::ConnectAsImpostor;
using testing::ConnectTo;
using testing::Listener;
using testing::OwnListeners;

TEST(TcpTransport, HostileConnectionsDuringWireupAreDroppedAndWireupFinishes) {
  std::vector<int> attacks;
  std::vector<Listener> seen;
  std::atomic<bool> stop{false};
  std::thread attacker;
  if (Rank() == 0) {
    const std::vector<Listener> mpi_listeners = OwnListeners();
    const std::set<Listener> known(mpi_listeners.begin(), mpi_listeners.end());
    attacker = std::thread([&, known] {
      // Rank 0's listeners exist before it waits for rank 1 in the address
      // exchange; attack them as soon as they appear.
      while (!stop && seen.empty()) {
        seen = OwnListeners(known);
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      for (const Listener& l : seen) {
        // A silent connection (nc HOST PORT).
        attacks.push_back(ConnectTo(l));
        // Junk.
        if (int fd = ConnectTo(l); fd >= 0) {
          const std::string junk(200, 'x');
          send(fd, junk.data(), junk.size(), MSG_NOSIGNAL);
          attacks.push_back(fd);
        }
        // A port scan: connect and close at once.
        if (int fd = ConnectTo(l); fd >= 0) close(fd);
        // An impostor claiming rank 1 with a made-up MAC.
        if (int fd = ConnectAsImpostor(l); fd >= 0) attacks.push_back(fd);
      }
    });
  } else {
    // Late, so the attacks arrive first.
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  }
  const auto start = Clock::now();
  MpiBootstrap world(MPI_COMM_WORLD);
  auto transport = TcpTransport::Create(&world, Options());
  const double took =
      std::chrono::duration<double>(Clock::now() - start).count();
  stop = true;
  if (attacker.joinable()) attacker.join();
  ASSERT_TRUE(transport.ok()) << transport.status();
  EXPECT_LT(took, 15.0) << "wire-up took " << took << " s";
  if (Rank() == 0) {
    ASSERT_FALSE(seen.empty()) << "the attacker found no listener";
    // Only loopback and the published addresses are listened on.
    std::set<uint32_t> allowed = {htonl(INADDR_LOOPBACK)};
    for (uint32_t a : LocalIpv4Addresses("")) allowed.insert(a);
    for (const Listener& l : seen) {
      EXPECT_NE(l.address, htonl(INADDR_ANY)) << "listener on every interface";
      EXPECT_TRUE(allowed.count(l.address))
          << FormatAddress(l.address, l.port) << " is not a published address";
    }
  }
  // The real rank 1 holds the connection: its bytes arrive intact.
  std::vector<int32_t> out(1000), in(1000, -1);
  for (int i = 0; i < 1000; ++i) out[i] = Rank() * 100000 + i;
  const int peer = 1 - Rank();
  Status s =
      (*transport)->SendRecv(peer, out.data(), 4000, peer, in.data(), 4000);
  ASSERT_TRUE(s.ok()) << s;
  for (int i = 0; i < 1000; ++i) {
    ASSERT_EQ(in[i], peer * 100000 + i) << "element " << i;
  }
  for (int fd : attacks) {
    if (fd >= 0) close(fd);
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

TEST(TcpTransport, SilentPeerFailsTheWaitWithinThePeerTimeout) {
  MpiBootstrap world(MPI_COMM_WORLD);
  auto transport = TcpTransport::Create(&world, Options());
  ASSERT_TRUE(transport.ok()) << transport.status();
  if (Rank() == 0) {
    std::vector<char> in(1 << 20);
    const auto start = Clock::now();
    Status s = (*transport)->SendRecv(-1, nullptr, 0, 1, in.data(), in.size());
    const double took =
        std::chrono::duration<double>(Clock::now() - start).count();
    EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
    EXPECT_NE(std::string(s.message()).find("rank 1 on host 'samehost'"),
              std::string::npos)
        << s;
    EXPECT_GE(took, 0.9);
    EXPECT_LT(took, 3.0);
  } else {
    // Silent (alive, but sends nothing) for longer than the peer timeout.
    std::this_thread::sleep_for(std::chrono::milliseconds(2500));
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
