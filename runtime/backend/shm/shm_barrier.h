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
  template <typename Done>
  Status Until(ShmWord* word, Done done) {
    if (done()) return absl::OkStatus();
    if (spin_ns_ > 0) {
      // A spin is bounded in time, not in pause instructions (a pause takes
      // from about 1 to 40 ns depending on the CPU): the clock is read every
      // 16 pauses.
      const int64_t deadline = MonotonicNs() + spin_ns_;
      for (int i = 1;; ++i) {
        if (done()) {
          SpinCovered(deadline);
          return absl::OkStatus();
        }
        CpuRelax();
        if (i % 16 != 0) continue;
        if (MonotonicNs() >= deadline) break;
        // Lets a thread that waits for this core (the application's, kolo's
        // other thread, a peer rank's) run: without it a rank that spins on
        // a core its peer needs holds the wait shut for the whole spin.
        if (i % 256 == 0) Yield();
      }
    }
    return Sleep(word, done);
  }
  // How long the next wait spins before it sleeps, ns (for tests).
  int64_t spin_ns() const { return spin_ns_; }

 private:
  static int64_t MonotonicNs();
  static void CpuRelax() {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
  }
  static void Yield();
  // done() came true during a spin that was to end at `deadline`.
  void SpinCovered(int64_t deadline);
  // The spin did not cover the wait: sleeps until done().
  Status Sleep(ShmWord* word, absl::FunctionRef<bool()> done);

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
