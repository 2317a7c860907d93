// Implementation of the fast lane (see fast_lane.h for the protocol).
#include "runtime/core/fast_lane.h"

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "runtime/common/futex.h"
#include "runtime/common/mpi_bootstrap.h"

namespace kolo {
namespace {

constexpr uint32_t kWithdrawn = 0x80000000u;
constexpr uint32_t kInstanceMask = 0x7fffffffu;

// Every rank's segment.
struct RankArea {
  alignas(64) std::atomic<uint64_t> cursor;
  alignas(64) std::atomic<int32_t> helpers;
  alignas(64) std::atomic<uint32_t> arrived[FastLane::kCapacity];
};

}  // namespace

struct FastLane::Slot {
  std::atomic<uint64_t> published;  // index + 1 once written
  std::atomic<uint64_t> batch_end;  // 0 until the first consumer seals
  uint64_t word;                    // kind << 56 | id << 32 | instance
  uint64_t seq;
};

namespace {

// Local rank 0's segment holds the shared log after its RankArea.
struct SharedArea {
  alignas(64) std::atomic<uint64_t> tail;
  alignas(64) std::atomic<uint32_t> appended;
  // Threads (of any local rank) asleep on `appended`.
  std::atomic<uint32_t> sleepers;
  alignas(64) std::atomic<uint32_t> claimed[FastLane::kCapacity];
};

constexpr int64_t kRankBytes = (sizeof(RankArea) + 63) / 64 * 64;
constexpr int64_t kSharedBytes = (sizeof(SharedArea) + 63) / 64 * 64;

}  // namespace

StatusOr<std::unique_ptr<FastLane>> FastLane::Create(
    MPI_Comm local_comm, std::function<void(int)> ring) {
  std::unique_ptr<FastLane> lane(new FastLane());
  MPI_Comm_rank(local_comm, &lane->rank_);
  MPI_Comm_size(local_comm, &lane->size_);
  lane->ring_ = std::move(ring);
  const int64_t bytes =
      kRankBytes + kSharedBytes + sizeof(Slot) * static_cast<int64_t>(kLogSize);
  MpiBootstrap local(local_comm);
  StatusOr<HostSegments> segments = MapHostSegments(&local, bytes);
  if (!segments.ok()) return segments.status();
  lane->segments_ = *std::move(segments);
  for (const ShmSegment& segment : lane->segments_.segments) {
    auto* area = reinterpret_cast<RankArea*>(segment.data());
    lane->arrived_.push_back(area->arrived);
    lane->cursors_.push_back(&area->cursor);
    lane->helpers_.push_back(&area->helpers);
  }
  char* first = lane->segments_.segments[0].data();
  auto* shared = reinterpret_cast<SharedArea*>(first + kRankBytes);
  lane->claimed_ = shared->claimed;
  lane->tail_ = &shared->tail;
  lane->appended_ = &shared->appended;
  lane->sleepers_ = &shared->sleepers;
  lane->log_ = reinterpret_cast<Slot*>(first + kRankBytes + kSharedBytes);
  lane->counts_.assign(kCapacity, 0);
  return lane;
}

FastLane::Slot* FastLane::SlotAt(uint64_t index) const {
  return &log_[index % kLogSize];
}

std::optional<uint32_t> FastLane::Arrive(int id) {
  const uint32_t instance = ++counts_[id];
  // Sequentially consistent: of two ranks arriving at once, at least one
  // sees the other's arrival (release/acquire alone would let both miss it
  // and leave the instance unclaimed forever).
  arrived_[rank_][id].store(instance, std::memory_order_seq_cst);
  uint32_t claimed = claimed_[id].load(std::memory_order_seq_cst);
  while ((claimed & kInstanceMask) == instance - 1) {
    for (int rank = 0; rank < size_; ++rank) {
      if (arrived_[rank][id].load(std::memory_order_seq_cst) < instance) {
        return instance;  // a peer has yet to arrive; it will claim
      }
    }
    if (claimed_[id].compare_exchange_weak(claimed, instance,
                                           std::memory_order_acq_rel)) {
      // The arriving thread is about to wait for (or poll) its own
      // operation: its own background thread is not rung for it.
      Append(Kind::kExecute, id, instance, 0, /*ring_self=*/false);
      return instance;
    }
  }
  // Claimed by a peer (runs in the lane) or withdrawn (the slow path).
  if ((claimed & kWithdrawn) != 0) return std::nullopt;
  return instance;
}

bool FastLane::Withdraw(int id, uint32_t instance) {
  uint32_t claimed = claimed_[id].load(std::memory_order_acquire);
  while ((claimed & kInstanceMask) == instance - 1) {
    if (claimed_[id].compare_exchange_weak(claimed, instance | kWithdrawn,
                                           std::memory_order_acq_rel)) {
      Append(Kind::kFallback, id, instance, 0);
      return true;
    }
  }
  return (claimed & kInstanceMask) == instance && (claimed & kWithdrawn) != 0;
}

void FastLane::AppendResponses(uint64_t seq) {
  Append(Kind::kResponses, -1, 0, seq);
}

void FastLane::AppendOff() { Append(Kind::kOff, -1, 0, 0); }

void FastLane::Append(Kind kind, int32_t id, uint32_t instance, uint64_t seq,
                      bool ring_self) {
  const uint64_t index = tail_->fetch_add(1, std::memory_order_acq_rel);
  // The slot was last used kLogSize entries ago: wait until every rank has
  // consumed it (only a rank far behind makes anyone wait here).
  if (index >= kLogSize) {
    for (;;) {
      uint64_t slowest = index;
      for (std::atomic<uint64_t>* cursor : cursors_) {
        slowest = std::min(slowest, cursor->load(std::memory_order_acquire));
      }
      if (slowest + kLogSize > index) break;
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }
  Slot* slot = SlotAt(index);
  slot->word =
      (static_cast<uint64_t>(kind) << 56) |
      (static_cast<uint64_t>(static_cast<uint32_t>(id) & 0xffffff) << 32) |
      instance;
  slot->seq = seq;
  slot->batch_end.store(0, std::memory_order_relaxed);
  slot->published.store(index + 1, std::memory_order_release);
  appended_->fetch_add(1, std::memory_order_seq_cst);
  for (int rank = 0; rank < size_; ++rank) {
    if (helpers_[rank]->load(std::memory_order_seq_cst) == 0 &&
        (rank != rank_ || ring_self)) {
      ring_(rank);
    }
  }
  WakeSleepers();
}

void FastLane::WakeHelpers() {
  if (helpers_[rank_]->load(std::memory_order_seq_cst) == 0) return;
  appended_->fetch_add(1, std::memory_order_seq_cst);
  WakeSleepers();
}

void FastLane::WakeSleepers() {
  // After the seq_cst increment of appended_: a helper that registered as a
  // sleeper after this load sees the new count in its futex and stays awake.
  if (sleepers_->load(std::memory_order_seq_cst) != 0) {
    FutexWakeAll(appended_);
  }
}

void FastLane::WaitForAppend(uint32_t seen, const timespec* timeout) {
  sleepers_->fetch_add(1, std::memory_order_seq_cst);
  if (appended_->load(std::memory_order_seq_cst) == seen) {
    FutexWait(appended_, seen, timeout);
  }
  sleepers_->fetch_sub(1, std::memory_order_relaxed);
}

std::optional<FastLane::Entry> FastLane::EntryAt(uint64_t index) const {
  const Slot* slot = SlotAt(index);
  if (slot->published.load(std::memory_order_acquire) != index + 1) {
    return std::nullopt;
  }
  Entry entry;
  entry.index = index;
  entry.kind = static_cast<Kind>(slot->word >> 56);
  const uint32_t id = static_cast<uint32_t>(slot->word >> 32) & 0xffffff;
  entry.id = id == 0xffffff ? -1 : static_cast<int32_t>(id);
  entry.instance = static_cast<uint32_t>(slot->word);
  entry.seq = slot->seq;
  return entry;
}

uint64_t FastLane::BatchEnd(uint64_t index) {
  Slot* first = SlotAt(index);
  uint64_t end = first->batch_end.load(std::memory_order_acquire);
  if (end != 0) return end;
  // The first consumer decides: consecutive execute entries written so far.
  end = index + 1;
  while (end < index + kMaxBatch) {
    const Slot* next = SlotAt(end);
    if (next->published.load(std::memory_order_acquire) != end + 1 ||
        static_cast<Kind>(next->word >> 56) != Kind::kExecute) {
      break;
    }
    ++end;
  }
  uint64_t expected = 0;
  if (!first->batch_end.compare_exchange_strong(expected, end,
                                                std::memory_order_acq_rel)) {
    end = expected;
  }
  return end;
}

void FastLane::Advance(uint64_t index) {
  cursors_[rank_]->store(index, std::memory_order_release);
}

uint64_t FastLane::cursor() const {
  return cursors_[rank_]->load(std::memory_order_acquire);
}

}  // namespace kolo
