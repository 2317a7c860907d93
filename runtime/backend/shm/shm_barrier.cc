// Implementation of the shared-memory barrier.
#include "runtime/backend/shm/shm_barrier.h"

#include <algorithm>
#include <ctime>

#include <sched.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace kolo {
namespace {

void CpuRelax() {
#if defined(__x86_64__)
  _mm_pause();
#endif
}

// While the spin is below kSpinStepNs (halved to nothing), every
// kProbeEvery-th sleep restores the full spin (a shorter probe would end
// before a peer that sleeps too has woken up).
constexpr int kProbeEvery = 64;
// What a spin that covered its wait grows by, besides doubling.
constexpr int64_t kSpinStepNs = 500;

int64_t MonotonicNs() {
  timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return int64_t{now.tv_sec} * 1'000'000'000 + now.tv_nsec;
}

}  // namespace

ShmBarrier::ShmBarrier(ShmBarrierState* state, int ranks, PeerWatch* watch,
                       int64_t max_spin_ns)
    : state_(state),
      ranks_(static_cast<uint32_t>(ranks)),
      watch_(watch),
      max_spin_ns_(max_spin_ns),
      spin_ns_(max_spin_ns) {}

Status ShmBarrier::Wait() {
  if (ranks_ <= 1) return absl::OkStatus();
  const uint32_t generation =
      state_->generation.load(std::memory_order_acquire);
  if (state_->arrived.fetch_add(1, std::memory_order_acq_rel) == ranks_ - 1) {
    state_->arrived.store(0, std::memory_order_relaxed);
    // Sequentially consistent with the sleepers' count below: either this
    // load sees a sleeper, or that sleeper's futex sees the new generation
    // and does not sleep.
    state_->generation.fetch_add(1, std::memory_order_seq_cst);
    if (state_->sleepers.load(std::memory_order_seq_cst) != 0) {
      FutexWakeAll(&state_->generation);
    }
    return absl::OkStatus();
  }
  if (spin_ns_ > 0) {
    // A spin is bounded in time, not in pause instructions (a pause takes
    // from about 1 to 40 ns depending on the CPU): the clock is read every
    // 16 pauses.
    const int64_t deadline = MonotonicNs() + spin_ns_;
    for (int i = 1;; ++i) {
      if (state_->generation.load(std::memory_order_acquire) != generation) {
        // Covered by the spin, unless this thread was away (preempted, or
        // yielded to a busy core's other threads) past the deadline: that
        // wait was long, and growing the spin would misread it.
        if (MonotonicNs() <= deadline) {
          spin_ns_ = std::min(max_spin_ns_, 2 * spin_ns_ + kSpinStepNs);
        }
        return absl::OkStatus();
      }
      CpuRelax();
      if (i % 16 != 0) continue;
      if (MonotonicNs() >= deadline) break;
      // Lets a thread that waits for this core (the application's, kolo's
      // other thread, a peer rank's) run: without it a rank that spins on a
      // core its peer needs holds the barrier shut for the whole spin.
      if (i % 256 == 0) sched_yield();
    }
  }
  spin_ns_ /= 2;
  const timespec timeout{0, 50 * 1000 * 1000};
  state_->sleepers.fetch_add(1, std::memory_order_seq_cst);
  Status status;
  while (state_->generation.load(std::memory_order_seq_cst) == generation) {
    FutexWait(&state_->generation, generation, &timeout);
    if (state_->generation.load(std::memory_order_acquire) != generation) {
      break;
    }
    status = watch_->Check();
    if (!status.ok()) break;
  }
  state_->sleepers.fetch_sub(1, std::memory_order_relaxed);
  // Once halved to nothing the spin would never learn that the peers'
  // waits have turned short again (a run of small collectives after the
  // peers computed): every 64th sleep it spins in full once more, and stays
  // there if the peers arrive within it. While they compute that costs one
  // spin (at most max_spin_ns) per 64 sleeps.
  if (spin_ns_ < kSpinStepNs && max_spin_ns_ > 0 &&
      ++sleeps_without_spin_ >= kProbeEvery) {
    spin_ns_ = max_spin_ns_;
    sleeps_without_spin_ = 0;
  }
  return status;
}

}  // namespace kolo
