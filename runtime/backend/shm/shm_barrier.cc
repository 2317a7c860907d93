// Implementation of the shared-memory barrier.
#include "runtime/backend/shm/shm_barrier.h"

#include <algorithm>
#include <ctime>

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

// While the spin is 0, every kProbeEvery-th sleep restores the full spin
// (a shorter probe would end before a peer that sleeps too has woken up).
constexpr int kProbeEvery = 64;

}  // namespace

ShmBarrier::ShmBarrier(ShmBarrierState* state, int ranks, PeerWatch* watch,
                       int max_spins)
    : state_(state),
      ranks_(static_cast<uint32_t>(ranks)),
      watch_(watch),
      max_spins_(max_spins),
      spins_(max_spins) {}

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
  for (int i = 0; i < spins_; ++i) {
    if (state_->generation.load(std::memory_order_acquire) != generation) {
      spins_ = std::min(max_spins_, 2 * spins_ + 64);
      return absl::OkStatus();
    }
    CpuRelax();
  }
  spins_ /= 2;
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
  // spin (about 20 us) per 64 sleeps.
  if (spins_ == 0 && max_spins_ > 0 && ++sleeps_without_spin_ >= kProbeEvery) {
    spins_ = max_spins_;
    sleeps_without_spin_ = 0;
  }
  return status;
}

}  // namespace kolo
