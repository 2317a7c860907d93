// MemoryNetwork: a Transport (runtime/transport/transport.h) for N ranks
// that are threads of one process, with the faults a real network has, so
// that the ring algorithms can be tested in one process.
//
// Each ordered pair of ranks has a mailbox. SendRecv posts a copy of the
// outgoing bytes to the receiver's mailbox (a send never blocks) and waits
// for the next message from recv_peer. Every message carries a checksum
// of its bytes and its length, and the receiver checks both, so a message
// that was corrupted on the way fails with DataLoss and one whose length
// differs from what the receiver expects fails with Internal; neither ever
// lands in the receiver's buffer.
//
// Faults, injected by the test:
//   - Close(rank) or the rank's Abandon(): its endpoint is gone. Peers
//     waiting for a message from it (once its queued messages are read),
//     and peers sending to it, fail with Aborted naming it.
//   - SetDelay(rank, seconds): messages from rank are delivered that much
//     later (a slow or late peer).
//   - CorruptNext(from, to): the next non-empty message from `from` to `to`
//     has a byte flipped after its checksum was taken.
// A receive that waits longer than the peer timeout fails with Aborted
// naming the silent peer, as TcpTransport's does.
//
// Thread-safe: each rank's transport is used by its own thread.
#ifndef KOLO_TESTS_RUNTIME_PLANES_MEMORY_TRANSPORT_H_
#define KOLO_TESTS_RUNTIME_PLANES_MEMORY_TRANSPORT_H_

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "runtime/common/mutex.h"
#include "runtime/transport/transport.h"

namespace kolo::testing {

class MemoryNetwork {
 public:
  MemoryNetwork(int size, double peer_timeout_seconds);

  int size() const { return size_; }
  // Rank `rank`'s endpoint. REQUIRES: the network outlives it.
  std::unique_ptr<Transport> Connect(int rank);

  void Close(int rank);
  void SetDelay(int rank, double seconds);
  void CorruptNext(int from, int to);

 private:
  friend class MemoryTransport;
  using Clock = std::chrono::steady_clock;

  struct Message {
    std::string bytes;
    uint64_t checksum = 0;
    Clock::time_point deliver_at;
  };

  Status Send(int from, int to, const void* data, int64_t bytes);
  Status Receive(int to, int from, void* data, int64_t bytes);
  // Index of the mailbox from -> to.
  int Box(int from, int to) const { return from * size_ + to; }

  const int size_;
  const double peer_timeout_seconds_;
  Mutex mu_;
  CondVar changed_;
  std::vector<std::deque<Message>> mailboxes_ ABSL_GUARDED_BY(mu_);
  std::vector<bool> closed_ ABSL_GUARDED_BY(mu_);
  std::vector<double> delay_seconds_ ABSL_GUARDED_BY(mu_);
  std::vector<bool> corrupt_next_ ABSL_GUARDED_BY(mu_);  // per mailbox
};

}  // namespace kolo::testing

#endif  // KOLO_TESTS_RUNTIME_PLANES_MEMORY_TRANSPORT_H_
