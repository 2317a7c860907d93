// Implementation of the liveness signs of the ranks of one host.
#include "runtime/backend/shm/peer_life.h"

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace kolo {
namespace {

constexpr double kBeatSeconds = 0.1;

}  // namespace

StatusOr<std::unique_ptr<LifeSign>> LifeSign::Start(PeerLifeState* state) {
  pthread_mutexattr_t attributes;
  pthread_mutexattr_init(&attributes);
  pthread_mutexattr_setpshared(&attributes, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&attributes, PTHREAD_MUTEX_ROBUST);
  const int error = pthread_mutex_init(&state->held, &attributes);
  pthread_mutexattr_destroy(&attributes);
  if (error != 0) {
    return absl::InternalError(absl::StrCat(
        "shared memory: pthread_mutex_init: ", std::strerror(error)));
  }
  std::unique_ptr<LifeSign> sign(new LifeSign(state));
  sign->thread_ = std::thread([s = sign.get()] { s->Run(); });
  {
    MutexLock lock(&sign->mu_);
    while (!sign->held_) sign->cv_.Wait(&sign->mu_);
  }
  return sign;
}

void LifeSign::Run() {
  pthread_mutex_lock(&state_->held);
  state_->started.store(1, std::memory_order_release);
  {
    MutexLock lock(&mu_);
    held_ = true;
    cv_.SignalAll();
    while (!stop_) {
      // A beat each time a wait runs out (not on a wake-up).
      if (!cv_.WaitWithTimeout(&mu_, kBeatSeconds)) {
        state_->beats.fetch_add(1, std::memory_order_relaxed);
      }
    }
  }
  pthread_mutex_unlock(&state_->held);
}

LifeSign::~LifeSign() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
  }
  cv_.SignalAll();
  if (thread_.joinable()) thread_.join();
}

void LifeSign::Abandon(absl::string_view reason) {
  // The first reason stands: peers may be reading it.
  if (state_->abandoned.load(std::memory_order_acquire)) return;
  const size_t n = std::min(reason.size(), sizeof(state_->reason) - 1);
  std::memcpy(state_->reason, reason.data(), n);
  state_->reason[n] = '\0';
  state_->abandoned.store(1, std::memory_order_release);
}

PeerWatch::PeerWatch(std::vector<PeerLifeState*> peers, int self,
                     double timeout_seconds)
    : peers_(std::move(peers)),
      self_(self),
      timeout_seconds_(timeout_seconds),
      last_beats_(peers_.size(), 0),
      last_change_(peers_.size(), Clock::now()) {}

Status PeerWatch::Check() {
  const Clock::time_point now = Clock::now();
  for (size_t rank = 0; rank < peers_.size(); ++rank) {
    if (static_cast<int>(rank) == self_) continue;
    PeerLifeState* peer = peers_[rank];
    if (peer->abandoned.load(std::memory_order_acquire)) {
      return absl::AbortedError(absl::StrCat(
          "local rank ", rank, " stopped the job: ",
          std::string(peer->reason,
                      strnlen(peer->reason, sizeof(peer->reason)))));
    }
    if (!peer->started.load(std::memory_order_acquire)) continue;
    switch (pthread_mutex_trylock(&peer->held)) {
      case EBUSY:
        break;
      case EOWNERDEAD:
        // Left unrecoverable, so every other peer sees the death too.
        pthread_mutex_unlock(&peer->held);
        [[fallthrough]];
      case ENOTRECOVERABLE:
        return absl::AbortedError(
            absl::StrCat("local rank ", rank,
                         " died in the middle of a shared-memory collective"));
      case 0:
        pthread_mutex_unlock(&peer->held);
        return absl::AbortedError(absl::StrCat(
            "local rank ", rank,
            " left kolo in the middle of a shared-memory collective"));
      default:
        break;
    }
    const uint64_t beats = peer->beats.load(std::memory_order_relaxed);
    if (beats != last_beats_[rank]) {
      last_beats_[rank] = beats;
      last_change_[rank] = now;
    } else if (timeout_seconds_ > 0 &&
               std::chrono::duration<double>(now - last_change_[rank]).count() >
                   timeout_seconds_) {
      return absl::AbortedError(absl::StrCat(
          "local rank ", rank, " has shown no sign of life for ",
          timeout_seconds_,
          " s (KOLO_PEER_TIMEOUT_SECONDS): it was stopped (SIGSTOP, a "
          "debugger) or its host is starved"));
    }
  }
  return absl::OkStatus();
}

}  // namespace kolo
