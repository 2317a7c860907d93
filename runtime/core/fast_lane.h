// FastLane: negotiation without rank 0, for operations every rank of one
// host has run before.
//
// The coordinator (rank 0) negotiates every new tensor. Once a collective of
// CPU tensors (not grouped) has run through the response cache, the
// coordinator may give it a fast id, announced in the response list that
// runs it; fast ids are never reused. From then on, when every rank is on one
// host, a rank that submits that tensor again unchanged does not ask rank 0:
//
//   Arrive    the rank counts its submission of the id (instance k, its k-th)
//             in a shared-memory word of its own; the rank that finds every
//             rank at instance k (the last to arrive) claims instance k with
//             a compare-and-swap and appends "execute id" to the log.
//   Log       one shared ring of entries that every rank consumes in the same
//             order: fast executions, rank 0's response lists (so the slow
//             path stays in the same total order), fallbacks and "off". The
//             first rank to consume an execute entry seals the batch of
//             consecutive execute entries after it, so every rank fuses the
//             same tensors.
//   Withdraw  an instance nobody claimed can be withdrawn (the same
//             compare-and-swap, marking it withdrawn): the rank appends
//             "fallback id k" and every rank moves that submission to the
//             slow path, where rank 0 negotiates it as usual (a changed
//             shape, a stall, a join). A rank that arrives at a withdrawn
//             instance goes to the slow path at once.
//   Off       rank 0 appends it when a rank joins: every rank withdraws what
//             it has pending and uses the slow path from then on.
//
// Consuming the log is the caller's business (Runtime): whichever thread
// holds the runtime's execution lock (the one waiting for the result, or the
// background thread) executes entries in order. Ranks that are behind never
// see an entry overwritten: a writer waits until every rank has consumed the
// slot it reuses.
//
// Thread-safe: Withdraw and the Append* calls from any thread of a rank;
// Arrive serialized by the caller; Peek, BatchEnd and Advance by the holder
// of the execution lock.
#ifndef KOLO_RUNTIME_CORE_FAST_LANE_H_
#define KOLO_RUNTIME_CORE_FAST_LANE_H_

#include <mpi.h>

#include <atomic>
#include <cstdint>
#include <ctime>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "kolo/status.h"
#include "runtime/backend/shm/shm_segment.h"

namespace kolo {

class FastLane {
 public:
  // Fast ids a job can hand out.
  static constexpr int kCapacity = 4096;
  // Entries in the log ring.
  static constexpr uint64_t kLogSize = 8192;
  // At most this many execute entries are fused in one batch.
  static constexpr uint64_t kMaxBatch = 512;

  enum class Kind : uint32_t { kExecute = 1, kFallback, kResponses, kOff };

  struct Entry {
    uint64_t index = 0;  // position in the log
    Kind kind = Kind::kExecute;
    int32_t id = -1;        // kExecute, kFallback
    uint32_t instance = 0;  // kExecute, kFallback
    uint64_t seq = 0;       // kResponses: the response list's sequence
  };

  // Collective over local_comm (every rank of the job on one host).
  // `ring(rank)` wakes that local rank's background thread.
  static StatusOr<std::unique_ptr<FastLane>> Create(
      MPI_Comm local_comm, std::function<void(int)> ring);

  int rank() const { return rank_; }
  int size() const { return size_; }

  // Counts this rank's next submission of `id`; returns its instance, or
  // nothing when a peer has already withdrawn that instance (then the
  // submission belongs to the slow path). Appends the execute entry when
  // this rank completes the instance. REQUIRES: calls serialized per rank.
  std::optional<uint32_t> Arrive(int id);
  // Withdraws `instance` of `id` unless it was claimed; true when it is
  // withdrawn (by this call or a peer's), false when it runs in the lane.
  bool Withdraw(int id, uint32_t instance);
  void AppendResponses(uint64_t seq);
  void AppendOff();
  // The instance this rank's next Arrive(id) will be.
  uint32_t next_instance(int id) const { return counts_[id] + 1; }

  // The entry at this rank's cursor, when it has been written.
  std::optional<Entry> Peek() const { return EntryAt(cursor()); }
  // The entry at `index`, when it has been written (and not yet reused).
  std::optional<Entry> EntryAt(uint64_t index) const;
  // For an execute entry at `index`: the end of its batch of consecutive
  // execute entries, the same for every rank.
  uint64_t BatchEnd(uint64_t index);
  // Marks entries before `index` consumed.
  void Advance(uint64_t index);
  uint64_t cursor() const;

  // Waiting for new entries: the count changes with every append.
  std::atomic<uint32_t>* appended() const { return appended_; }
  // Threads of this rank waiting on appended(); while there are any, this
  // rank's background thread is not rung.
  void AddHelper(int delta) {
    helpers_[rank_]->fetch_add(delta, std::memory_order_seq_cst);
  }
  int local_helpers() const {
    return helpers_[rank_]->load(std::memory_order_seq_cst);
  }
  // Wakes this rank's helpers (the background thread completed something
  // they may wait for).
  void WakeHelpers();
  // Sleeps while appended() still reads `seen`, at most `timeout`. Appends
  // make the wake-up system call only while some thread sleeps here.
  void WaitForAppend(uint32_t seen, const timespec* timeout);

 private:
  struct Slot;
  FastLane() = default;
  void Append(Kind kind, int32_t id, uint32_t instance, uint64_t seq,
              bool ring_self = true);
  Slot* SlotAt(uint64_t index) const;
  // Wakes the threads in WaitForAppend, if any. REQUIRES: appended_ was
  // just incremented (seq_cst).
  void WakeSleepers();

  int rank_ = 0;
  int size_ = 1;
  HostSegments segments_;
  std::function<void(int)> ring_;
  // Per rank, in that rank's segment.
  std::vector<std::atomic<uint32_t>*> arrived_;  // [rank][id]
  std::vector<std::atomic<uint64_t>*> cursors_;  // [rank]
  std::vector<std::atomic<int32_t>*> helpers_;   // [rank]
  // In local rank 0's segment.
  std::atomic<uint32_t>* claimed_ = nullptr;  // [id]
  std::atomic<uint64_t>* tail_ = nullptr;
  std::atomic<uint32_t>* appended_ = nullptr;
  std::atomic<uint32_t>* sleepers_ = nullptr;
  Slot* log_ = nullptr;
  // This rank's own submission counts.
  std::vector<uint32_t> counts_;
};

}  // namespace kolo

#endif  // KOLO_RUNTIME_CORE_FAST_LANE_H_
