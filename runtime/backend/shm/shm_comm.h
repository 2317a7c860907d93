// ShmComm: collectives among the ranks of one host through POSIX shared
// memory.
//
// Terms. Every local rank owns a segment with two slots of slot_bytes; a
// round writes this rank's slot of the current phase, crosses a barrier and
// reads peers' slots directly (no intermediate copies). The phase alternates
// with every round across all calls, so a slot is rewritten only two rounds
// later, after every peer has passed a barrier that follows its last read:
// one barrier per round suffices (two for allreduce, whose reduce step
// writes results that peers then read).
//
// Allreduce is reduce-scatter + allgather: in each round (a chunk of at most
// slot_bytes) every rank copies its chunk into its slot, reduces its slice of
// the chunk by reading that slice from every peer's slot, finishes it
// (average, postscale) in place, and after the second barrier copies every
// peer's finished slice out. float16/bfloat16 are widened into float32 slots
// on the way in and narrowed once on the way out. A small allreduce (at most
// 64 KiB in the reduction type, within one slot) crosses one barrier instead
// of two: every rank copies its input in and then reduces every slot itself,
// all ranks in the same order, so that they agree bit for bit.
//
// An alltoall's first round also carries each rank's longest part, from
// which every rank learns how many rounds the exchange takes. With single
// copy on (Create) large broadcast, allgather and alltoall parts skip the
// slots: each rank publishes its buffer's address, and readers copy from it
// with process_vm_readv between two barriers.
//
// Not thread-safe; every local rank must make the same calls in the same
// order.
#ifndef KOLO_RUNTIME_BACKEND_SHM_SHM_COMM_H_
#define KOLO_RUNTIME_BACKEND_SHM_SHM_COMM_H_

#include <memory>
#include <vector>

#include "absl/strings/string_view.h"
#include "runtime/backend/shm/peer_life.h"
#include "runtime/backend/shm/shm_barrier.h"
#include "runtime/backend/shm/shm_segment.h"
#include "runtime/common/bootstrap.h"
#include "runtime/common/reduce.h"

namespace kolo {

class ShmComm {
 public:
  // Collective over `local` (the ranks of one host; used during Create
  // only). A peer that shows no sign of life for peer_timeout_seconds (0:
  // forever) while this rank waits for it fails the wait (peer_life.h).
  //
  // single_copy_bytes: broadcasts and allgathers whose largest part has at
  // least this many bytes, and alltoall parts that large (or larger than a
  // slot's share), read peers' data straight from the peers' buffers
  // (process_vm_readv: one copy instead of two), where the kernel allows
  // it; 0 turns it off. Every local rank must pass
  // the same value. Where any rank is refused (checked at Create, logged at
  // info) every rank keeps the two-copy path.
  static StatusOr<std::unique_ptr<ShmComm>> Create(Bootstrap* local,
                                                   int64_t slot_bytes,
                                                   double peer_timeout_seconds,
                                                   int64_t single_copy_bytes);

  int rank() const { return rank_; }
  int size() const { return size_; }

  Status Barrier() { return barrier_->Wait(); }
  // Tells the local peers that this rank will not finish the collective
  // they may be waiting in (they fail with Aborted carrying `reason`).
  void Abandon(absl::string_view reason);
  // input may equal output. Each round reads the input once and writes
  // the output once; everything else stays in the (cache-sized) slots.
  Status Allreduce(const void* input, void* output, int64_t count,
                   const ReductionSpec& spec);
  // Whether Allreduce of `count` elements of `dtype` takes the direct path
  // (one barrier, every rank sums every slot) rather than reduce-scatter +
  // allgather rounds: at least two ranks and at most 64 KiB (in the
  // reduction's working type) within one slot.
  bool AllreduceIsDirect(int64_t count, DataType dtype) const;
  // Whether single copy is on (the threshold given to Create, and the
  // kernel lets every local rank read every other's memory).
  bool single_copy() const { return single_copy_bytes_ > 0; }
  // Whether waiters spin before they sleep: the local ranks may run on at
  // least as many CPUs between them as there are ranks.
  bool spinning() const { return spinning_; }
  // The algorithm a broadcast or allgather whose largest part has `bytes`
  // takes, for the timeline: "single_copy" or "rounds" (through the slots,
  // a barrier per round); empty with one rank.
  const char* CopyAlgorithm(int64_t bytes) const {
    if (size_ <= 1) return "";
    return SingleCopy(bytes) ? "single_copy" : "rounds";
  }
  // Whether a broadcast or allgather whose largest part has `bytes` reads
  // it straight from the peers' buffers.
  bool SingleCopy(int64_t bytes) const {
    return single_copy_bytes_ > 0 && bytes >= single_copy_bytes_;
  }
  // Leaves in this rank's block of buffer (BlockRange(count, size, rank))
  // the reduction (op, prescale; no divisor or postscale) over local ranks.
  // REQUIRES: dtype is not a half type.
  Status ReduceScatterBlocks(void* buffer, int64_t count, DataType dtype,
                             ReduceOp op, double prescale);
  // Every rank's block of buffer (as above) to every rank.
  Status AllgatherBlocks(void* buffer, int64_t count, DataType dtype);
  Status Broadcast(void* buffer, int64_t bytes, int root);
  Status Allgatherv(const void* input, void* output,
                    const std::vector<int64_t>& bytes_per_rank);
  Status Alltoallv(const void* input, const std::vector<int64_t>& send_bytes,
                   void* output, const std::vector<int64_t>& recv_bytes);
  Status ReduceScatter(const void* input, void* output,
                       const std::vector<int64_t>& counts,
                       const ReductionSpec& spec);

 private:
  ShmComm() = default;

  // This rank's slot, and peer's, for the current phase.
  char* Slot(int rank) const;
  // Ends a round: flips the phase.
  void NextPhase() { phase_ ^= 1; }
  // The type a dtype is reduced in (float32 for the half types).
  static DataType WorkType(DataType dtype);
  // Copies n elements into this rank's slot, widened and prescaled.
  void CopyIn(const char* source, int64_t n, const ReductionSpec& spec);
  // Reduces elements [lo, hi) of the round from every slot into this rank's
  // slot and finishes them (divisor, postscale); returns the slice.
  char* ReduceSlice(int64_t lo, int64_t hi, const ReductionSpec& spec);
  // Stores n reduced elements (narrowed back for the half types).
  static void CopyOut(const char* slice, int64_t n, char* destination,
                      DataType dtype);
  // The largest of every local rank's value (one round).
  StatusOr<int64_t> AgreeOnMax(int64_t value);
  // Allreduce of a message that fits one slot, with one barrier.
  // AllreduceIsDirect (public) says when Allreduce takes it.
  Status AllreduceDirect(const void* input, void* output, int64_t count,
                         const ReductionSpec& spec);

  // Probes single copy (see Create); on when every local rank may read
  // every other's memory. Collective.
  Status EnableSingleCopy(int64_t threshold);
  // Copies bytes at `source` in local rank peer's memory to destination.
  Status ReadFromPeer(int peer, void* destination, const void* source,
                      int64_t bytes);
  // Tells peers where this rank's data for the current collective are.
  void Publish(const void* source);
  const void* Published(int peer) const;
  Status AlltoallvSingleCopy(const char* in,
                             const std::vector<int64_t>& send_bytes,
                             const std::vector<int64_t>& send_offsets,
                             char* out, const std::vector<int64_t>& recv_bytes,
                             const std::vector<int64_t>& recv_offsets);

  int rank_ = 0;
  int size_ = 1;
  int64_t single_copy_bytes_ = 0;  // 0: off
  bool spinning_ = false;
  // Read by peers at set-up to prove that single copy works.
  uint64_t probe_token_ = 0;
  int64_t slot_bytes_ = 0;
  int phase_ = 0;
  std::vector<ShmSegment> segments_;  // index = local rank
  std::unique_ptr<LifeSign> life_;
  std::unique_ptr<PeerWatch> watch_;
  std::unique_ptr<ShmBarrier> barrier_;
  // The float32 result of a small 16-bit allreduce before it is narrowed.
  std::vector<char> scratch_;
};

// [begin, end) of block `index` when `count` elements are split into `parts`
// nearly equal blocks (the first count % parts one larger).
std::pair<int64_t, int64_t> BlockRange(int64_t count, int parts, int index);

}  // namespace kolo

#endif  // KOLO_RUNTIME_BACKEND_SHM_SHM_COMM_H_
