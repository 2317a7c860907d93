// Tests of the in-memory transport's own checks, which the ring tests rely
// on to tell a wrong message from a right one.
#include "tests/runtime/planes/memory_transport.h"

#include <gtest/gtest.h>

#include <string>

#include "tests/runtime/planes/plane_checks.h"

namespace kolo::testing {
namespace {

TEST(MemoryTransport, DeliversBytesBothWays) {
  MemoryNetwork network(2, 5);
  RunRanks(2, [&](int rank) {
    std::unique_ptr<Transport> t = network.Connect(rank);
    const std::string out(1000, static_cast<char>('a' + rank));
    std::string in(1000, '?');
    const int peer = 1 - rank;
    ASSERT_TRUE(
        t->SendRecv(peer, out.data(), out.size(), peer, in.data(), in.size())
            .ok());
    EXPECT_EQ(in, std::string(1000, static_cast<char>('a' + peer)));
  });
}

TEST(MemoryTransport, LengthTheReceiverDidNotExpectFails) {
  MemoryNetwork network(2, 5);
  RunRanks(2, [&](int rank) {
    std::unique_ptr<Transport> t = network.Connect(rank);
    std::string buffer(100, 'x');
    if (rank == 0) {
      ASSERT_TRUE(t->SendRecv(1, buffer.data(), 60, -1, nullptr, 0).ok());
    } else {
      const Status s = t->SendRecv(-1, nullptr, 0, 0, buffer.data(), 100);
      EXPECT_EQ(s.code(), absl::StatusCode::kInternal) << s;
      EXPECT_NE(std::string(s.message()).find("rank 0 sent 60 bytes"),
                std::string::npos)
          << s;
      EXPECT_EQ(buffer, std::string(100, 'x')) << "the message landed";
    }
  });
}

TEST(MemoryTransport, CorruptedMessageFailsWithDataLossAndDoesNotLand) {
  MemoryNetwork network(2, 5);
  network.CorruptNext(0, 1);
  RunRanks(2, [&](int rank) {
    std::unique_ptr<Transport> t = network.Connect(rank);
    std::string buffer(100, static_cast<char>('a' + rank));
    if (rank == 0) {
      ASSERT_TRUE(t->SendRecv(1, buffer.data(), 100, -1, nullptr, 0).ok());
    } else {
      const Status s = t->SendRecv(-1, nullptr, 0, 0, buffer.data(), 100);
      EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
      EXPECT_EQ(buffer, std::string(100, 'b')) << "the message landed";
    }
  });
}

TEST(MemoryTransport, ClosedPeerFailsItsReceiverWithAbortedNamingIt) {
  MemoryNetwork network(2, 30);
  RunRanks(2, [&](int rank) {
    std::unique_ptr<Transport> t = network.Connect(rank);
    if (rank == 0) {
      t->Abandon();
      return;
    }
    char byte = 0;
    const double start = Now();
    const Status s = t->SendRecv(-1, nullptr, 0, 0, &byte, 1);
    EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
    EXPECT_NE(std::string(s.message()).find("rank 0 closed"), std::string::npos)
        << s;
    EXPECT_LT(Now() - start, 5.0);
  });
}

}  // namespace
}  // namespace kolo::testing
