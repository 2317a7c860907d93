// ShmBarrier: a sense-reversing barrier for the ranks of one host, living in
// shared memory. Waiters spin briefly and then sleep on a futex, so
// oversubscribed ranks never starve each other. The spin is bounded in time
// and adapts: it doubles (up to max_spin_ns) when the barrier opened while
// spinning and halves when it did not, so a rank whose peers are busy
// computing (the training case) soon stops burning the CPU they need, while
// a benchmark with idle cores keeps the low latency of spinning; once
// halved to nothing, every 64th sleep restores the full spin for a try, so
// that it recovers when the peers' waits turn short. max_spin_ns is 0 when
// ranks outnumber cores. While asleep a waiter checks every 50 ms that its
// peers live
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
  // max_spin_ns: the longest a waiter spins before it sleeps (0: never).
  ShmBarrier(ShmBarrierState* state, int ranks, PeerWatch* watch,
             int64_t max_spin_ns);

  Status Wait();
  // Wakes every rank sleeping in this barrier.
  void Wake() { FutexWakeAll(&state_->generation); }
  // How long the next wait spins before it sleeps, ns (for tests).
  int64_t spin_ns() const { return spin_ns_; }

 private:
  ShmBarrierState* state_;
  uint32_t ranks_;
  PeerWatch* watch_;
  int64_t max_spin_ns_;
  int64_t spin_ns_;
  int sleeps_without_spin_ = 0;
};

}  // namespace kolo

#endif  // KOLO_RUNTIME_BACKEND_SHM_SHM_BARRIER_H_
