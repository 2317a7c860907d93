// ShmBarrier: a sense-reversing barrier for the ranks of one host, living in
// shared memory. Waiters spin briefly and then sleep on a futex, so
// oversubscribed ranks never starve each other. The spin adapts: it doubles
// (up to max_spins) when the barrier opened while spinning and halves when
// it did not, so a rank whose peers are busy computing (the training case)
// soon stops burning the CPU they need, while a benchmark with idle cores
// keeps the low latency of spinning; at 0, every 64th sleep restores the
// full spin for a try, so that it recovers once the peers' waits turn short.
// max_spins is 0 when ranks outnumber cores. While asleep a waiter checks every 50 ms that its peers live
// (PeerWatch): a dead, stopped or departed peer fails the wait with Aborted
// instead of a hang. Wake() rouses every waiter to look again (a peer
// abandoned the job). The rank that opens the barrier calls into the kernel
// only when a peer sleeps, so a barrier among spinning ranks costs no system
// call.
#ifndef KOLO_RUNTIME_BACKEND_SHM_SHM_BARRIER_H_
#define KOLO_RUNTIME_BACKEND_SHM_SHM_BARRIER_H_

#include <atomic>
#include <cstdint>
#include <vector>

#include "kolo/status.h"
#include "runtime/backend/shm/peer_life.h"
#include "runtime/common/futex.h"

namespace kolo {

// Shared state; lives in a segment, zero-initialised.
struct alignas(64) ShmBarrierState {
  std::atomic<uint32_t> arrived;
  std::atomic<uint32_t> generation;
  // Ranks asleep (or about to sleep) on generation: the rank that opens the
  // barrier makes the wake-up system call only when there are any.
  std::atomic<uint32_t> sleepers;
};
static_assert(std::atomic<uint32_t>::is_always_lock_free);

class ShmBarrier {
 public:
  // watch: checks the local ranks while this one sleeps.
  ShmBarrier(ShmBarrierState* state, int ranks, PeerWatch* watch,
             int max_spins);

  Status Wait();
  // Wakes every rank sleeping in this barrier.
  void Wake() { FutexWakeAll(&state_->generation); }
  // Pause instructions the next wait spins before it sleeps (for tests).
  int spins() const { return spins_; }

 private:
  ShmBarrierState* state_;
  uint32_t ranks_;
  PeerWatch* watch_;
  int max_spins_;
  int spins_;
  int sleeps_without_spin_ = 0;
};

}  // namespace kolo

#endif  // KOLO_RUNTIME_BACKEND_SHM_SHM_BARRIER_H_
