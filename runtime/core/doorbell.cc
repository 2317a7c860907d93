// Implementation of the doorbells.
#include "runtime/core/doorbell.h"

#include "runtime/common/futex.h"

namespace kolo {
namespace {

void RingWord(std::atomic<uint32_t>* word) {
  word->fetch_add(1, std::memory_order_release);
  FutexWakeAll(word);
}

}  // namespace

Doorbell::Doorbell() = default;

StatusOr<std::unique_ptr<Doorbell>> Doorbell::CreateShared(
    MPI_Comm local_comm) {
  auto bell = std::make_unique<Doorbell>();
  StatusOr<HostSegments> segments = MapHostSegments(local_comm, 4096);
  if (!segments.ok()) return segments.status();
  bell->segments_ = *std::move(segments);
  int rank = 0;
  MPI_Comm_rank(local_comm, &rank);
  for (const ShmSegment& segment : bell->segments_.segments) {
    bell->peers_.push_back(
        reinterpret_cast<std::atomic<uint32_t>*>(segment.data()));
  }
  bell->mine_ = bell->peers_[rank];
  return bell;
}

void Doorbell::RingSelf() { RingWord(mine_); }

void Doorbell::Ring(int rank) { RingWord(peers_[rank]); }

void Doorbell::Wait(uint32_t seen, absl::Duration timeout) {
  if (Peek() != seen) return;
  const timespec limit = absl::ToTimespec(timeout);
  FutexWait(mine_, seen, &limit);
}

}  // namespace kolo
