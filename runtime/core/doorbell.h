// Doorbell: how kolo's background threads wake up without polling.
//
// Each rank has a 32-bit counter; ringing increments it and wakes whoever
// sleeps on it. The application's threads ring their own rank's bell when
// they submit work, and ranks ring each other's after sending a negotiation
// message, so a rank waiting for an answer sleeps until the answer is there
// instead of polling. Two kinds:
//   - shared: every rank on one host. The counters live in shared memory and
//     sleepers wait on them as futexes (microseconds, never lost).
//   - networked: ranks on several hosts. Each rank also owns a UDP socket;
//     ringing a peer sends it a small datagram carrying the job's tag (a
//     value derived from the job secret) to its loopback address when it is
//     on the same host, and a sleeper waits in ppoll() on that socket and on
//     an eventfd its own application threads write. Only datagrams from a
//     peer's socket (source address and port) with the job's tag count;
//     anything else is dropped, and a flood of them cannot keep the sleeper
//     busy: a wait drains at most a few dozen datagrams, and after a batch of
//     nothing but junk the socket is ignored for a millisecond. Datagrams can
//     be lost or filtered, so callers keep a timed fallback poll.
// A bell of neither kind (one process, or when the socket cannot be set up)
// only wakes for the application's own submissions.
//
// Thread safety: RingSelf() from any thread; the rest from the background
// thread only.
#ifndef KOLO_RUNTIME_CORE_DOORBELL_H_
#define KOLO_RUNTIME_CORE_DOORBELL_H_

#include <mpi.h>
#include <netinet/in.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "kolo/status.h"
#include "runtime/backend/shm/shm_segment.h"

namespace kolo {

class Doorbell {
 public:
  // A bell only this process rings.
  Doorbell();
  ~Doorbell();
  Doorbell(const Doorbell&) = delete;
  Doorbell& operator=(const Doorbell&) = delete;

  // Bells shared by the ranks of local_comm (collective over it).
  static StatusOr<std::unique_ptr<Doorbell>> CreateShared(MPI_Comm local_comm);
  // Networked bells of the ranks of comm (collective over it); `host` is
  // this rank's host name (ranks with the same name use loopback), `iface`
  // the interface whose addresses it publishes (empty: all), `secret` the
  // job secret its tag is derived from.
  static StatusOr<std::unique_ptr<Doorbell>> CreateNetworked(
      MPI_Comm comm, const std::string& host, const std::string& iface,
      const std::string& secret);

  // Datagrams dropped so far because of their source or content.
  int64_t rejected() const { return rejected_; }
  // The UDP port of a networked bell (host byte order); 0 otherwise.
  uint16_t port() const { return port_; }

  // Whether Ring() reaches other ranks at all.
  bool shared() const { return !peers_.empty() || udp_ >= 0; }
  // Whether a ring can be lost (networked bells).
  bool lossy() const { return udp_ >= 0; }
  // The current count; pass it to Wait() to sleep until it changes.
  uint32_t Peek() const { return mine_->load(std::memory_order_acquire); }
  void RingSelf();
  // Rings the bell of `rank` (of the communicator the bells were made
  // over). REQUIRES: shared().
  void Ring(int rank);
  // Sleeps until the count differs from `seen` or `timeout` passes.
  void Wait(uint32_t seen, absl::Duration timeout);

 private:
  std::atomic<uint32_t> own_{0};
  std::atomic<uint32_t>* mine_ = &own_;
  HostSegments segments_;
  std::vector<std::atomic<uint32_t>*> peers_;  // index = local rank
  // Networked bells.
  bool Accepted(const sockaddr_in& from, const char* data, ssize_t bytes) const;
  int udp_ = -1;
  int event_fd_ = -1;
  std::string tag_;
  std::vector<std::vector<sockaddr_in>> targets_;  // index = rank
  std::vector<sockaddr_in> senders_;  // every peer socket's possible source
  uint16_t port_ = 0;
  int64_t rejected_ = 0;
  absl::Time muted_until_ = absl::InfinitePast();
  absl::Time next_report_ = absl::InfinitePast();
};

}  // namespace kolo

#endif  // KOLO_RUNTIME_CORE_DOORBELL_H_
