// Doorbell: how kolo's background threads wake up without polling.
//
// Each rank has a 32-bit counter; ringing increments it and wakes whoever
// sleeps on it (a futex). The application's threads ring their own rank's
// bell when they submit work. When every rank runs on one host the bells
// live in shared memory, and ranks ring each other's after sending a
// negotiation message, so a rank waiting for an answer sleeps until the
// answer is there (microseconds) instead of polling. Across hosts only the
// local bell exists and waiting falls back to short timed sleeps.
#ifndef KOLO_RUNTIME_CORE_DOORBELL_H_
#define KOLO_RUNTIME_CORE_DOORBELL_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include <mpi.h>

#include "absl/time/time.h"
#include "kolo/status.h"
#include "runtime/backend/shm/shm_segment.h"

namespace kolo {

class Doorbell {
 public:
  // A bell only this process rings.
  Doorbell();
  // Bells shared by the ranks of local_comm (collective over it).
  static StatusOr<std::unique_ptr<Doorbell>> CreateShared(MPI_Comm local_comm);

  bool shared() const { return !peers_.empty(); }
  // The current count; pass it to Wait() to sleep until it changes.
  uint32_t Peek() const { return mine_->load(std::memory_order_acquire); }
  void RingSelf();
  // Rings the bell of `rank` (a rank of local_comm). REQUIRES: shared().
  void Ring(int rank);
  // Sleeps until the count differs from `seen` or `timeout` passes.
  void Wait(uint32_t seen, absl::Duration timeout);

 private:
  std::atomic<uint32_t> own_{0};
  std::atomic<uint32_t>* mine_ = &own_;
  HostSegments segments_;
  std::vector<std::atomic<uint32_t>*> peers_;  // index = local rank
};

}  // namespace kolo

#endif  // KOLO_RUNTIME_CORE_DOORBELL_H_
