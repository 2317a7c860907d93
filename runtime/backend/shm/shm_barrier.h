// ShmWait and ShmBarrier: how the ranks of one host wait for each other in
// shared memory.
//
// ShmWait waits for a condition on words in shared memory that peers change:
// it spins briefly and then sleeps on a futex, so oversubscribed ranks never
// starve each other. The spin is bounded in time and adapts: it doubles (up
// to max_spin_ns) when the condition came true while spinning and halves
// when it did not, so a rank whose peers are busy computing (the training
// case) soon stops burning the CPU they need, while a benchmark with idle
// cores keeps the low latency of spinning; once halved to nothing, every
// 64th sleep restores the full spin for a try, so that it recovers when the
// peers' waits turn short. max_spin_ns is 0 when ranks outnumber cores.
// While asleep a waiter checks every 50 ms that its peers live (PeerWatch):
// a dead, stopped or departed peer fails the wait with Aborted instead of a
// hang. A peer that changes a word calls into the kernel only when someone
// sleeps on it (its sleepers count), so waits among spinning ranks cost no
// system call.
//
// ShmBarrier is a sense-reversing barrier on top of it. Wake() rouses every
// waiter to look again (a peer abandoned the job).
#ifndef KOLO_RUNTIME_BACKEND_SHM_SHM_BARRIER_H_
#define KOLO_RUNTIME_BACKEND_SHM_SHM_BARRIER_H_

#include <atomic>
#include <cstdint>
#include <vector>

#include "absl/functional/function_ref.h"
#include "kolo/status.h"
#include "runtime/backend/shm/peer_life.h"
#include "runtime/common/futex.h"

namespace kolo {

// A word peers wait on, with the count of those asleep on it; lives in a
// segment, zero-initialised.
struct alignas(64) ShmWord {
  std::atomic<uint32_t> value;
  std::atomic<uint32_t> sleepers;

  // Stores `v` and wakes the sleepers, if any.
  void Publish(uint32_t v) {
    // Sequentially consistent with the sleepers' count: either the load
    // below sees a sleeper, or that sleeper's futex sees the new value and
    // does not sleep.
    value.store(v, std::memory_order_seq_cst);
    if (sleepers.load(std::memory_order_seq_cst) != 0) FutexWakeAll(&value);
  }
};
static_assert(std::atomic<uint32_t>::is_always_lock_free);

class ShmWait {
 public:
  // watch: checks the local ranks while this one sleeps.
  // max_spin_ns: the longest a wait spins before it sleeps (0: never).
  ShmWait(PeerWatch* watch, int64_t max_spin_ns)
      : watch_(watch), max_spin_ns_(max_spin_ns), spin_ns_(max_spin_ns) {}

  // Returns once done() holds (OK), or when a peer failed (Aborted). A peer
  // that may have made done() true changes word->value and publishes it
  // (ShmWord::Publish).
  Status Until(ShmWord* word, absl::FunctionRef<bool()> done);
  // How long the next wait spins before it sleeps, ns (for tests).
  int64_t spin_ns() const { return spin_ns_; }

 private:
  PeerWatch* watch_;
  int64_t max_spin_ns_;
  int64_t spin_ns_;
  int sleeps_without_spin_ = 0;
};

// Shared state; lives in a segment, zero-initialised.
struct alignas(64) ShmBarrierState {
  std::atomic<uint32_t> arrived;
  ShmWord generation;
};

class ShmBarrier {
 public:
  // watch: checks the local ranks while this one sleeps.
  // max_spin_ns: the longest a waiter spins before it sleeps (0: never).
  ShmBarrier(ShmBarrierState* state, int ranks, PeerWatch* watch,
             int64_t max_spin_ns);

  Status Wait();
  // Wakes every rank sleeping in this barrier.
  void Wake() { FutexWakeAll(&state_->generation.value); }
  // How long the next wait spins before it sleeps, ns (for tests).
  int64_t spin_ns() const { return wait_.spin_ns(); }

 private:
  ShmBarrierState* state_;
  uint32_t ranks_;
  ShmWait wait_;
};

}  // namespace kolo

#endif  // KOLO_RUNTIME_BACKEND_SHM_SHM_BARRIER_H_
