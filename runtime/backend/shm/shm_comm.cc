// Implementation of shared-memory collectives.
#include "runtime/backend/shm/shm_comm.h"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

namespace kolo {
namespace {

constexpr int64_t kHeaderBytes = 4096;
// Spin iterations before sleeping in a barrier, when every local rank has a
// core of its own (about 20 us).
constexpr int kSpins = 20000;
// Allreduces of at most this many bytes (in the reduction type) take the
// one-barrier path: below it the barrier saved costs more than reducing
// every peer's copy instead of a 1/size slice.
constexpr int64_t kDirectAllreduceBytes = 64 << 10;

struct ShmHeader {
  ShmBarrierState barrier;  // used in local rank 0's segment
  alignas(64) std::atomic<int64_t> value;
  alignas(64) PeerLifeState life;  // this segment's rank
};
static_assert(sizeof(ShmHeader) <= kHeaderBytes);

ShmHeader* HeaderOf(const ShmSegment& segment) {
  return reinterpret_cast<ShmHeader*>(segment.data());
}

int AvailableCores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return 1;
  return CPU_COUNT(&set);
}

int64_t Clamp(int64_t value, int64_t limit) {
  return std::max<int64_t>(0, std::min(value, limit));
}

// memcpy that accepts null pointers when there is nothing to copy.
void Copy(void* destination, const void* source, int64_t bytes) {
  if (bytes > 0) std::memcpy(destination, source, bytes);
}

std::vector<int64_t> Displacements(const std::vector<int64_t>& sizes) {
  std::vector<int64_t> displacements(sizes.size(), 0);
  for (size_t i = 1; i < sizes.size(); ++i) {
    displacements[i] = displacements[i - 1] + sizes[i - 1];
  }
  return displacements;
}

}  // namespace

std::pair<int64_t, int64_t> BlockRange(int64_t count, int parts, int index) {
  const int64_t base = count / parts;
  const int64_t extra = count % parts;
  const int64_t begin = index * base + std::min<int64_t>(index, extra);
  return {begin, begin + base + (index < extra ? 1 : 0)};
}

StatusOr<std::unique_ptr<ShmComm>> ShmComm::Create(
    Bootstrap* local, int64_t slot_bytes, double peer_timeout_seconds) {
  std::unique_ptr<ShmComm> comm(new ShmComm());
  comm->rank_ = local->rank();
  comm->size_ = local->size();
  comm->slot_bytes_ = slot_bytes / 64 * 64;
  if (comm->slot_bytes_ < 4096 * comm->size_) {
    return absl::InvalidArgumentError(
        "KOLO_SHM_SLOT_BYTES: shared-memory slots must hold at least 4 KiB per "
        "local rank");
  }

  StatusOr<HostSegments> mapped =
      MapHostSegments(local, kHeaderBytes + 2 * comm->slot_bytes_);
  if (!mapped.ok()) return mapped.status();
  comm->segments_ = std::move(mapped->segments);
  StatusOr<std::unique_ptr<LifeSign>> life =
      LifeSign::Start(&HeaderOf(comm->segments_[comm->rank_])->life);
  if (!life.ok()) return life.status();
  comm->life_ = *std::move(life);
  std::vector<PeerLifeState*> lives;
  for (const ShmSegment& segment : comm->segments_) {
    lives.push_back(&HeaderOf(segment)->life);
  }
  comm->watch_ = std::make_unique<PeerWatch>(std::move(lives), comm->rank_,
                                             peer_timeout_seconds);
  const int spins = comm->size_ <= AvailableCores() ? kSpins : 0;
  comm->barrier_ =
      std::make_unique<ShmBarrier>(&HeaderOf(comm->segments_[0])->barrier,
                                   comm->size_, comm->watch_.get(), spins);
  // Every rank's sign of life is up before any rank waits for another.
  if (Status s = local->Barrier(); !s.ok()) return s;
  return comm;
}

void ShmComm::Abandon(absl::string_view reason) {
  life_->Abandon(reason);
  barrier_->Wake();
}

char* ShmComm::Slot(int rank) const {
  return segments_[rank].data() + kHeaderBytes + phase_ * slot_bytes_;
}

StatusOr<int64_t> ShmComm::AgreeOnMax(int64_t value) {
  HeaderOf(segments_[rank_])->value.store(value, std::memory_order_release);
  if (Status s = barrier_->Wait(); !s.ok()) return s;
  int64_t result = value;
  for (int peer = 0; peer < size_; ++peer) {
    result = std::max(
        result,
        HeaderOf(segments_[peer])->value.load(std::memory_order_acquire));
  }
  // Nobody may overwrite its value before every rank has read it.
  if (Status s = barrier_->Wait(); !s.ok()) return s;
  return result;
}

DataType ShmComm::WorkType(DataType dtype) {
  return IsHalfType(dtype) ? DataType::kFloat32 : dtype;
}

void ShmComm::CopyIn(const char* source, int64_t n, const ReductionSpec& spec) {
  char* mine = Slot(rank_);
  if (IsHalfType(spec.dtype)) {
    WidenToFloat(source, reinterpret_cast<float*>(mine), n, spec.dtype);
  } else {
    Copy(mine, source, n * DataTypeSize(spec.dtype));
  }
  ScaleBuffer(mine, n, WorkType(spec.dtype), spec.prescale);
}

char* ShmComm::ReduceSlice(int64_t lo, int64_t hi, const ReductionSpec& spec) {
  const DataType work = WorkType(spec.dtype);
  const int64_t offset = lo * DataTypeSize(work);
  char* slice = Slot(rank_) + offset;
  for (int peer = 0; peer < size_; ++peer) {
    if (peer != rank_) {
      ReduceInto(slice, Slot(peer) + offset, hi - lo, work, spec.op);
    }
  }
  FinishReduction(slice, hi - lo, work, spec.divisor, spec.postscale);
  return slice;
}

void ShmComm::CopyOut(const char* slice, int64_t n, char* destination,
                      DataType dtype) {
  if (IsHalfType(dtype)) {
    NarrowFromFloat(reinterpret_cast<const float*>(slice), destination, n,
                    dtype);
  } else if (n > 0) {
    std::memmove(destination, slice, n * DataTypeSize(dtype));
  }
}

Status ShmComm::AllreduceDirect(const void* input, void* output, int64_t count,
                                const ReductionSpec& spec) {
  const DataType work = WorkType(spec.dtype);
  const int64_t bytes = count * DataTypeSize(work);
  CopyIn(static_cast<const char*>(input), count, spec);
  if (Status s = barrier_->Wait(); !s.ok()) return s;
  // Every rank sums the slots in rank order, so every rank gets the same
  // bits (for floating point, the order of the additions decides them).
  char* result = static_cast<char*>(output);
  if (IsHalfType(spec.dtype)) {
    if (static_cast<int64_t>(scratch_.size()) < bytes) scratch_.resize(bytes);
    result = scratch_.data();
  }
  Copy(result, Slot(0), bytes);
  for (int peer = 1; peer < size_; ++peer) {
    ReduceInto(result, Slot(peer), count, work, spec.op);
  }
  FinishReduction(result, count, work, spec.divisor, spec.postscale);
  if (IsHalfType(spec.dtype))
    CopyOut(result, count, static_cast<char*>(output), spec.dtype);
  // No peer writes its slot again before it has passed the next round's
  // barrier, which this rank reaches only after these reads.
  NextPhase();
  return absl::OkStatus();
}

bool ShmComm::AllreduceIsDirect(int64_t count, DataType dtype) const {
  return count > 0 && size_ > 1 &&
         count * DataTypeSize(WorkType(dtype)) <=
             std::min(kDirectAllreduceBytes, slot_bytes_);
}

Status ShmComm::Allreduce(const void* input, void* output, int64_t count,
                          const ReductionSpec& spec) {
  if (AllreduceIsDirect(count, spec.dtype)) {
    return AllreduceDirect(input, output, count, spec);
  }
  const int64_t work_size = DataTypeSize(WorkType(spec.dtype));
  const int64_t size = DataTypeSize(spec.dtype);
  const int64_t chunk = slot_bytes_ / work_size;
  const char* in = static_cast<const char*>(input);
  char* out = static_cast<char*>(output);
  for (int64_t start = 0; start < count; start += chunk) {
    const int64_t n = std::min(chunk, count - start);
    CopyIn(in + start * size, n, spec);
    if (Status s = barrier_->Wait(); !s.ok()) return s;
    const auto [lo, hi] = BlockRange(n, size_, rank_);
    ReduceSlice(lo, hi, spec);
    if (Status s = barrier_->Wait(); !s.ok()) return s;
    for (int peer = 0; peer < size_; ++peer) {
      const auto [plo, phi] = BlockRange(n, size_, peer);
      CopyOut(Slot(peer) + plo * work_size, phi - plo,
              out + (start + plo) * size, spec.dtype);
    }
    NextPhase();
  }
  return absl::OkStatus();
}

Status ShmComm::ReduceScatter(const void* input, void* output,
                              const std::vector<int64_t>& counts,
                              const ReductionSpec& spec) {
  const int64_t size = DataTypeSize(spec.dtype);
  const int64_t chunk = slot_bytes_ / DataTypeSize(WorkType(spec.dtype));
  const std::vector<int64_t> offsets = Displacements(counts);
  const int64_t total = offsets.back() + counts.back();
  const int64_t mine_begin = offsets[rank_];
  const int64_t mine_end = mine_begin + counts[rank_];
  const char* in = static_cast<const char*>(input);
  char* out = static_cast<char*>(output);
  for (int64_t start = 0; start < total; start += chunk) {
    const int64_t n = std::min(chunk, total - start);
    CopyIn(in + start * size, n, spec);
    if (Status s = barrier_->Wait(); !s.ok()) return s;
    // Reduce this rank's part of the chunk in its own slot (no peer reads
    // that range) and store it.
    const int64_t lo = std::max(start, mine_begin);
    const int64_t hi = std::min(start + n, mine_end);
    if (lo < hi) {
      CopyOut(ReduceSlice(lo - start, hi - start, spec), hi - lo,
              out + (lo - mine_begin) * size, spec.dtype);
    }
    NextPhase();
  }
  return absl::OkStatus();
}

Status ShmComm::ReduceScatterBlocks(void* buffer, int64_t count, DataType dtype,
                                    ReduceOp op, double prescale) {
  std::vector<int64_t> counts(size_);
  for (int r = 0; r < size_; ++r) {
    const auto [lo, hi] = BlockRange(count, size_, r);
    counts[r] = hi - lo;
  }
  ReductionSpec spec;
  spec.dtype = dtype;
  spec.op = op;
  spec.prescale = prescale;
  char* data = static_cast<char*>(buffer);
  // In place: a round writes only this rank's block inside the chunk it
  // has already copied in, and later rounds read further on.
  return ReduceScatter(
      data, data + BlockRange(count, size_, rank_).first * DataTypeSize(dtype),
      counts, spec);
}

Status ShmComm::AllgatherBlocks(void* buffer, int64_t count, DataType dtype) {
  std::vector<int64_t> bytes(size_);
  for (int r = 0; r < size_; ++r) {
    const auto [lo, hi] = BlockRange(count, size_, r);
    bytes[r] = (hi - lo) * DataTypeSize(dtype);
  }
  char* data = static_cast<char*>(buffer);
  return Allgatherv(
      data + BlockRange(count, size_, rank_).first * DataTypeSize(dtype), data,
      bytes);
}

Status ShmComm::Broadcast(void* buffer, int64_t bytes, int root) {
  char* data = static_cast<char*>(buffer);
  for (int64_t offset = 0; offset < bytes; offset += slot_bytes_) {
    const int64_t n = std::min(slot_bytes_, bytes - offset);
    if (rank_ == root) Copy(Slot(root), data + offset, n);
    if (Status s = barrier_->Wait(); !s.ok()) return s;
    if (rank_ != root) Copy(data + offset, Slot(root), n);
    NextPhase();
  }
  return absl::OkStatus();
}

Status ShmComm::Allgatherv(const void* input, void* output,
                           const std::vector<int64_t>& bytes_per_rank) {
  const std::vector<int64_t> displacements = Displacements(bytes_per_rank);
  const int64_t longest =
      *std::max_element(bytes_per_rank.begin(), bytes_per_rank.end());
  const char* in = static_cast<const char*>(input);
  char* out = static_cast<char*>(output);
  // This rank's own part needs no round trip through shared memory.
  if (bytes_per_rank[rank_] > 0 && out + displacements[rank_] != in) {
    std::memmove(out + displacements[rank_], in, bytes_per_rank[rank_]);
  }
  for (int64_t offset = 0; offset < longest; offset += slot_bytes_) {
    Copy(Slot(rank_), out + displacements[rank_] + offset,
         Clamp(bytes_per_rank[rank_] - offset, slot_bytes_));
    if (Status s = barrier_->Wait(); !s.ok()) return s;
    for (int peer = 0; peer < size_; ++peer) {
      if (peer == rank_) continue;
      Copy(out + displacements[peer] + offset, Slot(peer),
           Clamp(bytes_per_rank[peer] - offset, slot_bytes_));
    }
    NextPhase();
  }
  return absl::OkStatus();
}

Status ShmComm::Alltoallv(const void* input,
                          const std::vector<int64_t>& send_bytes, void* output,
                          const std::vector<int64_t>& recv_bytes) {
  const std::vector<int64_t> send_offsets = Displacements(send_bytes);
  const std::vector<int64_t> recv_offsets = Displacements(recv_bytes);
  const char* in = static_cast<const char*>(input);
  char* out = static_cast<char*>(output);
  if (send_bytes[rank_] > 0) {
    std::memmove(out + recv_offsets[rank_], in + send_offsets[rank_],
                 send_bytes[rank_]);
  }
  int64_t longest = 0;
  for (int peer = 0; peer < size_; ++peer) {
    if (peer == rank_) continue;
    longest = std::max({longest, send_bytes[peer], recv_bytes[peer]});
  }
  StatusOr<int64_t> rounds_bytes = AgreeOnMax(longest);
  if (!rounds_bytes.ok()) return rounds_bytes.status();
  // The slot holds one region per destination.
  const int64_t region = slot_bytes_ / size_ / 64 * 64;
  for (int64_t offset = 0; offset < *rounds_bytes; offset += region) {
    char* mine = Slot(rank_);
    for (int peer = 0; peer < size_; ++peer) {
      if (peer == rank_) continue;
      Copy(mine + peer * region, in + send_offsets[peer] + offset,
           Clamp(send_bytes[peer] - offset, region));
    }
    if (Status s = barrier_->Wait(); !s.ok()) return s;
    for (int peer = 0; peer < size_; ++peer) {
      if (peer == rank_) continue;
      Copy(out + recv_offsets[peer] + offset, Slot(peer) + rank_ * region,
           Clamp(recv_bytes[peer] - offset, region));
    }
    NextPhase();
  }
  return absl::OkStatus();
}

}  // namespace kolo
