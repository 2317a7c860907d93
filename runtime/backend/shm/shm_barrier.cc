// Implementation of the shared-memory waits and barrier.
#include "runtime/backend/shm/shm_barrier.h"

#include <algorithm>
#include <ctime>

#include <sched.h>

namespace kolo {
namespace {

// While the spin is below kSpinStepNs (halved to nothing), every
// kProbeEvery-th sleep restores the full spin (a shorter probe would end
// before a peer that sleeps too has woken up).
constexpr int kProbeEvery = 64;
// What a spin that covered its wait grows by, besides doubling.
constexpr int64_t kSpinStepNs = 500;

}  // namespace

int64_t ShmWait::MonotonicNs() {
  timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return int64_t{now.tv_sec} * 1'000'000'000 + now.tv_nsec;
}

void ShmWait::Yield() { sched_yield(); }

void ShmWait::SpinCovered(int64_t deadline) {
  // Covered by the spin, unless this thread was away (preempted, or yielded
  // to a busy core's other threads) past the deadline: that wait was long,
  // and growing the spin would misread it.
  if (MonotonicNs() <= deadline) {
    spin_ns_ = std::min(max_spin_ns_, 2 * spin_ns_ + kSpinStepNs);
  }
}

Status ShmWait::Sleep(ShmWord* word, absl::FunctionRef<bool()> done) {
  spin_ns_ /= 2;
  const timespec timeout{0, 50 * 1000 * 1000};
  word->sleepers.fetch_add(1, std::memory_order_seq_cst);
  Status status;
  for (;;) {
    const uint32_t seen = word->value.load(std::memory_order_seq_cst);
    if (done()) break;
    FutexWait(&word->value, seen, &timeout);
    if (done()) break;
    status = watch_->Check();
    if (!status.ok()) break;
  }
  word->sleepers.fetch_sub(1, std::memory_order_relaxed);
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

ShmBarrier::ShmBarrier(ShmBarrierState* state, int ranks, PeerWatch* watch,
                       int64_t max_spin_ns)
    : state_(state),
      ranks_(static_cast<uint32_t>(ranks)),
      wait_(watch, max_spin_ns) {}

Status ShmBarrier::Wait() {
  if (ranks_ <= 1) return absl::OkStatus();
  const uint32_t generation =
      state_->generation.value.load(std::memory_order_acquire);
  if (state_->arrived.fetch_add(1, std::memory_order_acq_rel) == ranks_ - 1) {
    state_->arrived.store(0, std::memory_order_relaxed);
    state_->generation.Publish(generation + 1);
    return absl::OkStatus();
  }
  return wait_.Until(&state_->generation, [&] {
    return state_->generation.value.load(std::memory_order_acquire) !=
           generation;
  });
}

}  // namespace kolo
