// Implementation of shared-memory collectives.
#include "runtime/backend/shm/shm_comm.h"

#include <sched.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>

#include "absl/strings/str_cat.h"
#include "runtime/common/logging.h"

namespace kolo {
namespace {

constexpr int64_t kHeaderBytes = 4096;
// The longest a barrier spins before it sleeps, when every local rank has a
// core of its own (a futex wake-up costs tens of microseconds on a VM).
constexpr int64_t kSpinNs = 200'000;
// Allreduces of at most this many bytes (in the reduction type) take the
// one-barrier path: below it the barrier saved costs more than reducing
// every peer's copy instead of a 1/size slice.
constexpr int64_t kDirectAllreduceBytes = 64 << 10;
// Alltoall's slots start with this much room for what the ranks tell each
// other about the exchange.
constexpr int64_t kSlotTableBytes = 64;

struct ShmHeader {
  ShmBarrierState barrier;  // used in local rank 0's segment
  alignas(64) std::atomic<int64_t> value;
  alignas(64) PeerLifeState life;  // this segment's rank
  // Single copy: this rank's process, where its probe token lives and the
  // token itself (written once at set-up), and the address of the buffer
  // peers read in the current collective (written before its first barrier,
  // read by peers before its last one).
  alignas(64) std::atomic<int64_t> pid;
  std::atomic<uint64_t> probe_address;
  std::atomic<uint64_t> probe_token;
  alignas(64) std::atomic<uint64_t> source;
  // The CPUs this rank may run on (written once at set-up).
  alignas(64) cpu_set_t cpus;
};
static_assert(sizeof(ShmHeader) <= kHeaderBytes);

ShmHeader* HeaderOf(const ShmSegment& segment) {
  return reinterpret_cast<ShmHeader*>(segment.data());
}

// The CPUs this process may run on (one, the current, if that is unknown).
cpu_set_t OwnCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) {
    const int cpu = sched_getcpu();
    CPU_ZERO(&set);
    CPU_SET(cpu < 0 ? 0 : cpu, &set);
  }
  return set;
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
    Bootstrap* local, int64_t slot_bytes, double peer_timeout_seconds,
    int64_t single_copy_bytes) {
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
  ShmHeader* mine = HeaderOf(comm->segments_[comm->rank_]);
  mine->cpus = OwnCpus();
  comm->probe_token_ = std::random_device()() ^
                       (uint64_t{std::random_device()()} << 32) ^
                       static_cast<uint64_t>(getpid());
  mine->pid.store(getpid(), std::memory_order_relaxed);
  mine->probe_address.store(reinterpret_cast<uintptr_t>(&comm->probe_token_),
                            std::memory_order_relaxed);
  mine->probe_token.store(comm->probe_token_, std::memory_order_relaxed);
  // Every rank's sign of life is up before any rank waits for another.
  if (Status s = local->Barrier(); !s.ok()) return s;
  // Waiters spin only while the local ranks have a CPU each between them:
  // ranks bound to a core each (Open MPI's default binding) may spin, ranks
  // sharing fewer cores than there are of them must not (they would spin
  // away their peers' time).
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  for (const ShmSegment& segment : comm->segments_) {
    CPU_OR(&cpus, &cpus, &HeaderOf(segment)->cpus);
  }
  comm->spinning_ = comm->size_ <= CPU_COUNT(&cpus);
  comm->barrier_ = std::make_unique<ShmBarrier>(
      &HeaderOf(comm->segments_[0])->barrier, comm->size_,
      comm->watch_.get(), comm->spinning_ ? kSpinNs : 0);
  if (comm->size_ > 1 && single_copy_bytes > 0) {
    if (Status s = comm->EnableSingleCopy(single_copy_bytes); !s.ok()) return s;
  }
  return comm;
}

Status ShmComm::EnableSingleCopy(int64_t threshold) {
  // Every rank reads every peer's token from the peer's own memory: this
  // proves that the kernel lets it (process_vm_readv needs ptrace access:
  // Yama's ptrace_scope, a container's seccomp filter or a PID namespace
  // can refuse it or name another process) before any data depends on it.
  std::string refused;
  for (int peer = 0; peer < size_ && refused.empty(); ++peer) {
    if (peer == rank_) continue;
    const ShmHeader* header = HeaderOf(segments_[peer]);
    uint64_t token = 0;
    Status s = ReadFromPeer(
        peer, &token,
        reinterpret_cast<const void*>(
            header->probe_address.load(std::memory_order_relaxed)),
        sizeof(token));
    if (!s.ok()) {
      refused = std::string(s.message());
    } else if (token != header->probe_token.load(std::memory_order_relaxed)) {
      refused = absl::StrCat("process_vm_readv from local rank ", peer,
                             " (pid ", header->pid.load(), ") read another "
                             "process's memory (separate PID namespaces?)");
    }
  }
  StatusOr<int64_t> any_refused = AgreeOnMax(refused.empty() ? 0 : 1);
  if (!any_refused.ok()) return any_refused.status();
  if (*any_refused == 0) {
    single_copy_bytes_ = threshold;
  } else if (!refused.empty()) {
    Log().info(
        "shared memory: collectives copy every byte twice (through the "
        "shared slots), because single copy is refused here: {}",
        refused);
  }
  return absl::OkStatus();
}

Status ShmComm::ReadFromPeer(int peer, void* destination, const void* source,
                             int64_t bytes) {
  const pid_t pid = static_cast<pid_t>(
      HeaderOf(segments_[peer])->pid.load(std::memory_order_relaxed));
  char* to = static_cast<char*>(destination);
  uintptr_t from = reinterpret_cast<uintptr_t>(source);
  while (bytes > 0) {
    iovec local{to, static_cast<size_t>(bytes)};
    iovec remote{reinterpret_cast<void*>(from), static_cast<size_t>(bytes)};
    const ssize_t got = process_vm_readv(pid, &local, 1, &remote, 1, 0);
    if (got <= 0) {
      const int error = got < 0 ? errno : EIO;
      if (error == EINTR) continue;
      const std::string what =
          absl::StrCat("process_vm_readv of ", bytes, " bytes from local rank ",
                       peer, " (pid ", pid, "): ", std::strerror(error));
      if (error == ESRCH) {
        return absl::AbortedError(
            absl::StrCat(what, " (the process is gone)"));
      }
      return absl::InternalError(what);
    }
    to += got;
    from += got;
    bytes -= got;
  }
  return absl::OkStatus();
}

void ShmComm::Publish(const void* source) {
  HeaderOf(segments_[rank_])
      ->source.store(reinterpret_cast<uintptr_t>(source),
                     std::memory_order_relaxed);
}

const void* ShmComm::Published(int peer) const {
  return reinterpret_cast<const void*>(
      HeaderOf(segments_[peer])->source.load(std::memory_order_relaxed));
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
  if (SingleCopy(bytes)) {
    // Every rank reads the root's buffer itself; the root keeps it until
    // all have (the second barrier).
    if (rank_ == root) Publish(data);
    if (Status s = barrier_->Wait(); !s.ok()) return s;
    if (rank_ != root) {
      if (Status s = ReadFromPeer(root, data, Published(root), bytes); !s.ok())
        return s;
    }
    return barrier_->Wait();
  }
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
  if (SingleCopy(longest)) {
    // Every rank reads each peer's part from the peer's own buffer; each
    // keeps its part until all have read it (the second barrier).
    Publish(out + displacements[rank_]);
    if (Status s = barrier_->Wait(); !s.ok()) return s;
    for (int i = 1; i < size_; ++i) {
      // Starting at different peers spreads the readers over the sources.
      const int peer = (rank_ + i) % size_;
      if (bytes_per_rank[peer] == 0) continue;
      if (Status s = ReadFromPeer(peer, out + displacements[peer],
                                  Published(peer), bytes_per_rank[peer]);
          !s.ok())
        return s;
    }
    return barrier_->Wait();
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
  if (single_copy_bytes_ > 0) {
    return AlltoallvSingleCopy(in, send_bytes, send_offsets, out, recv_bytes,
                               recv_offsets);
  }
  // The slot holds, in the first round, the longest part this rank sends
  // (so that every rank learns how many rounds the exchange takes from the
  // round itself, without one of its own), then one region per destination.
  int64_t longest = 0;
  for (int peer = 0; peer < size_; ++peer) {
    if (peer != rank_) longest = std::max(longest, send_bytes[peer]);
  }
  const int64_t region = (slot_bytes_ - kSlotTableBytes) / size_ / 64 * 64;
  int64_t rounds_bytes = 0;
  int64_t offset = 0;
  do {
    char* mine = Slot(rank_);
    if (offset == 0) std::memcpy(mine, &longest, sizeof(longest));
    for (int peer = 0; peer < size_; ++peer) {
      if (peer == rank_) continue;
      Copy(mine + kSlotTableBytes + peer * region,
           in + send_offsets[peer] + offset,
           Clamp(send_bytes[peer] - offset, region));
    }
    if (Status s = barrier_->Wait(); !s.ok()) return s;
    if (offset == 0) {
      // The longest part anyone sends: the same on every rank.
      for (int peer = 0; peer < size_; ++peer) {
        int64_t theirs = 0;
        std::memcpy(&theirs, Slot(peer), sizeof(theirs));
        rounds_bytes = std::max(rounds_bytes, theirs);
      }
    }
    for (int peer = 0; peer < size_; ++peer) {
      if (peer == rank_) continue;
      Copy(out + recv_offsets[peer] + offset,
           Slot(peer) + kSlotTableBytes + rank_ * region,
           Clamp(recv_bytes[peer] - offset, region));
    }
    // The slots of this phase are rewritten only after the next barrier,
    // which every rank reaches after these reads.
    NextPhase();
    offset += region;
  } while (offset < rounds_bytes);
  return absl::OkStatus();
}

Status ShmComm::AlltoallvSingleCopy(const char* in,
                                    const std::vector<int64_t>& send_bytes,
                                    const std::vector<int64_t>& send_offsets,
                                    char* out,
                                    const std::vector<int64_t>& recv_bytes,
                                    const std::vector<int64_t>& recv_offsets) {
  // The slot holds where each destination's part starts in this rank's
  // input, then one region per destination. A part below the single-copy
  // threshold that fits its region goes through the slot; a larger one is
  // read from the sender's input. Sender and receiver see the same size
  // for a pair, so they agree on its path without a round of their own.
  const int64_t table_bytes = (size_ * 8 + 63) / 64 * 64;
  const int64_t region = (slot_bytes_ - table_bytes) / size_ / 64 * 64;
  const auto direct = [&](int64_t bytes) {
    return bytes > region || bytes >= single_copy_bytes_;
  };
  char* mine = Slot(rank_);
  int64_t* table = reinterpret_cast<int64_t*>(mine);
  for (int peer = 0; peer < size_; ++peer) {
    if (peer == rank_) continue;
    table[peer] = send_offsets[peer];
    if (!direct(send_bytes[peer])) {
      Copy(mine + table_bytes + peer * region, in + send_offsets[peer],
           send_bytes[peer]);
    }
  }
  Publish(in);
  if (Status s = barrier_->Wait(); !s.ok()) return s;
  for (int i = 1; i < size_; ++i) {
    const int peer = (rank_ + i) % size_;
    const int64_t bytes = recv_bytes[peer];
    if (bytes == 0) continue;
    const char* theirs = Slot(peer);
    if (!direct(bytes)) {
      Copy(out + recv_offsets[peer], theirs + table_bytes + rank_ * region,
           bytes);
      continue;
    }
    const int64_t offset = reinterpret_cast<const int64_t*>(theirs)[rank_];
    const char* source = static_cast<const char*>(Published(peer)) + offset;
    if (Status s = ReadFromPeer(peer, out + recv_offsets[peer], source, bytes);
        !s.ok())
      return s;
  }
  // Inputs stay until every peer has read them; the slots, by the phase,
  // until the next round's barrier.
  if (Status s = barrier_->Wait(); !s.ok()) return s;
  NextPhase();
  return absl::OkStatus();
}

}  // namespace kolo
