// The hierarchical data plane with pretend hosts, all ranks threads of this
// process: world rank w lives on host w / local_size as local rank
// w % local_size. Each host's ranks share a ShmComm (real segments); the
// ranks with the same local rank form a cross-host RingComm over
// TcpTransport on 127.0.0.1 (every pretend host publishes one host name, so
// loopback is dialled first); the fallback for the collectives the plane
// does not run itself is a ring over every rank on the in-memory transport.
#include <gtest/gtest.h>

#include <chrono>
#include <random>
#include <string>
#include <thread>

#include "kolo/options.h"
#include "runtime/backend/hierarchical/hierarchical_backend.h"
#include "runtime/backend/ring/ring_backend.h"
#include "runtime/transport/tcp/tcp_transport.h"
#include "tests/runtime/planes/in_process_bootstrap.h"
#include "tests/runtime/planes/memory_transport.h"
#include "tests/runtime/planes/plane_checks.h"

namespace kolo::testing {
namespace {

constexpr int64_t kSlotBytes = 16 << 10;
constexpr int64_t kChunkBytes = 4096;

// The groups of one pretend cluster.
class Cluster {
 public:
  Cluster(int hosts, int local_size)
      : hosts_(hosts), local_size_(local_size), world_(hosts * local_size, 10) {
    for (int h = 0; h < hosts; ++h) {
      locals_.push_back(std::make_unique<InProcessGroup>(local_size, 30));
    }
    for (int l = 0; l < local_size; ++l) {
      crosses_.push_back(std::make_unique<InProcessGroup>(hosts, 30));
    }
  }

  int size() const { return hosts_ * local_size_; }

  // World rank `rank`'s plane; its bootstraps go to *local and *cross,
  // which must outlive the plane's set-up.
  std::unique_ptr<Backend> Make(int rank, std::unique_ptr<Bootstrap>* local,
                                std::unique_ptr<Bootstrap>* cross) {
    const int host = rank / local_size_;
    const int local_rank = rank % local_size_;
    *local = locals_[host]->Join(local_rank);
    *cross = crosses_[local_rank]->Join(host);
    StatusOr<std::unique_ptr<ShmComm>> shm =
        ShmComm::Create(local->get(), kSlotBytes, 5,
                        Options().shm_single_copy_bytes);
    if (!shm.ok()) {
      ADD_FAILURE() << "rank " << rank << ": " << shm.status();
      return nullptr;
    }
    TcpTransportOptions options;
    options.secret = std::string(32, 'h');
    // One name for every pretend host: connections go over loopback, which
    // every machine has.
    options.hostname = "samehost";
    options.peer_timeout_seconds = 5;
    StatusOr<std::unique_ptr<TcpTransport>> tcp =
        TcpTransport::Create(cross->get(), options);
    if (!tcp.ok()) {
      ADD_FAILURE() << "rank " << rank << ": " << tcp.status();
      return nullptr;
    }
    std::vector<int> local_rank_of(size());
    std::vector<int> cross_rank_of(size());
    for (int r = 0; r < size(); ++r) {
      local_rank_of[r] = r % local_size_;
      cross_rank_of[r] = r / local_size_;
    }
    return std::make_unique<HierarchicalBackend>(
        *std::move(shm),
        std::make_unique<RingComm>(*std::move(tcp), kChunkBytes),
        std::make_unique<RingBackend>(
            std::make_unique<RingComm>(world_.Connect(rank), kChunkBytes)),
        std::move(local_rank_of), std::move(cross_rank_of));
  }

 private:
  const int hosts_;
  const int local_size_;
  MemoryNetwork world_;
  std::vector<std::unique_ptr<InProcessGroup>> locals_;
  std::vector<std::unique_ptr<InProcessGroup>> crosses_;
};

TEST(HierarchicalPlane, EveryCollectiveMatchesTheReference) {
  for (auto [hosts, local_size] : {std::pair{2, 2}, std::pair{3, 1}}) {
    SCOPED_TRACE(std::to_string(hosts) + " hosts x " +
                 std::to_string(local_size) + " ranks");
    Cluster cluster(hosts, local_size);
    RunRanks(cluster.size(), [&](int rank) {
      std::unique_ptr<Bootstrap> local;
      std::unique_ptr<Bootstrap> cross;
      std::unique_ptr<Backend> plane = cluster.Make(rank, &local, &cross);
      if (plane != nullptr) {
        CheckCollectives(plane.get(), rank, cluster.size(),
                         SweepFor(cluster.size(), 4));
      }
      // Every rank of the host and of the cross ring is done.
      EXPECT_TRUE(local->Barrier().ok());
      EXPECT_TRUE(cross->Barrier().ok());
    });
    if (HasFatalFailure()) return;
  }
}

TEST(HierarchicalPlane, LatePeerStillGetsTheRightResult) {
  std::mt19937_64 rng(Seed() + 5);
  const int late = static_cast<int>(rng() % 4);
  Cluster cluster(2, 2);
  RunRanks(4, [&](int rank) {
    std::unique_ptr<Bootstrap> local;
    std::unique_ptr<Bootstrap> cross;
    if (rank == late) std::this_thread::sleep_for(std::chrono::seconds(1));
    std::unique_ptr<Backend> plane = cluster.Make(rank, &local, &cross);
    ASSERT_NE(plane, nullptr);
    EXPECT_TRUE(AllreduceSumIsRight(plane.get(), rank, 4, 100003));
    EXPECT_TRUE(local->Barrier().ok());
    EXPECT_TRUE(cross->Barrier().ok());
  });
}

// A rank that disappears between collectives while its peers run an
// allreduce: its host peer notices in shared memory, its cross-host peer on
// the ring; every survivor that abandons in turn releases the rest.
TEST(HierarchicalPlane, PeerThatDiesMidRoundFailsTheOthersWithAborted) {
  std::mt19937_64 rng(Seed() + 6);
  const int victim = static_cast<int>(rng() % 4);
  Cluster cluster(2, 2);
  RunRanks(4, [&](int rank) {
    std::unique_ptr<Bootstrap> local;
    std::unique_ptr<Bootstrap> cross;
    std::unique_ptr<Backend> plane = cluster.Make(rank, &local, &cross);
    ASSERT_NE(plane, nullptr);
    if (rank == victim) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      plane.reset();
      return;
    }
    std::vector<float> data(1 << 18, 1.0f);
    const double start = Now();
    const Status s = plane->Allreduce(data.data(), data.size(), {});
    plane->Abandon("failed", false);
    EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << "rank " << rank << s;
    EXPECT_LT(Now() - start, 3.0) << "rank " << rank;
  });
}

}  // namespace
}  // namespace kolo::testing
