// kolo/kolo.h: the C++ API of the kolo collective-communication runtime.
//
// Model. Init() starts one background thread per process. Every collective is
// asynchronous: *Async() validates its arguments on this rank, enqueues the
// operation and returns a Handle at once. The background thread negotiates
// with the other ranks (rank 0 coordinates) which operations every rank has
// submitted, fuses small tensors into one buffer, runs the collective and
// completes the handle. Handle::Wait() blocks without spinning.
//
// Ordering rule. Ranks may submit operations in any order; an operation runs
// once every rank has submitted the same name. Names must be unique among a
// rank's pending operations (reusing a name after its handle completed is
// normal, and fast: the response cache remembers it).
//
// Failure. A cross-rank mismatch (shape, dtype, op, root, scale factors) fails
// that operation on every rank with FailedPrecondition, naming the tensor,
// the ranks and both values; later operations still work. An operation that
// only some ranks submit is reported after KOLO_STALL_CHECK_TIME_SECONDS and
// fails with DeadlineExceeded after KOLO_STALL_SHUTDOWN_TIME_SECONDS. After
// Shutdown() (on any rank) every pending and new operation fails with
// Cancelled.
//
// Thread safety: every function may be called from any thread.
#ifndef KOLO_KOLO_H_
#define KOLO_KOLO_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kolo/options.h"
#include "kolo/status.h"
#include "kolo/types.h"

namespace kolo {

namespace internal {
struct Operation;
}  // namespace internal

// The result of one asynchronous operation; cheap to copy (shared state).
class Handle {
 public:
  Handle() = default;
  explicit Handle(std::shared_ptr<internal::Operation> operation);

  bool valid() const { return operation_ != nullptr; }
  // True once the operation has completed, successfully or not. Never blocks.
  bool Poll() const;
  // Blocks until the operation completes; returns its status.
  Status Wait() const;

  // The following are valid after a successful Wait().
  // Shape of the output of allgather, alltoall and reducescatter; `member`
  // selects a tensor of a grouped allgather or reducescatter (in the order
  // the tensors were given).
  const std::vector<int64_t>& output_shape(size_t member = 0) const;
  // Output memory when the operation was given no OutputAllocator; owned by
  // the handle (and its copies).
  void* output_data(size_t member = 0) const;
  // alltoall: first-dimension rows received from each rank.
  const std::vector<int64_t>& received_splits() const;
  // join: the rank that joined last.
  int last_joined_rank() const;

 private:
  std::shared_ptr<internal::Operation> operation_;
};

// Provides the output memory of an operation whose output shape is only known
// after negotiation (allgather, alltoall, reducescatter). Called once, on
// kolo's background thread or (fast lane) on the thread waiting for the
// handle, with the output shape (elements of the input's dtype); the memory
// must stay valid until the handle completes.
using OutputAllocator =
    std::function<StatusOr<void*>(const std::vector<int64_t>& shape)>;

struct AllreduceOptions {
  ReduceOp op = ReduceOp::kAverage;
  // output = postscale_factor * reduce(prescale_factor * input). Integer
  // tensors are scaled in double precision and truncated toward zero.
  double prescale_factor = 1.0;
  double postscale_factor = 1.0;
  // Scheduling hint for allreduces that become ready together (e.g. the
  // backlog of gradients left at the end of backward): higher priorities run
  // first. While any ready allreduce has a non-zero priority, each response
  // list carries at most KOLO_PRIORITY_CYCLE_BYTES of them, highest first,
  // and the rest wait for the next list, where tensors that became ready
  // meanwhile may overtake them. Ranks need not agree (rank 0 takes the
  // first rank's); a tensor keeps the priority it had when it entered the
  // response cache. The one-host fast lane ignores it. Default 0: ready
  // order, as without priorities.
  int32_t priority = 0;
};

// Counters for instrumentation and tests; monotonic over the process.
struct RuntimeStats {
  int64_t operations_enqueued = 0;
  int64_t operations_completed = 0;
  int64_t collectives_executed = 0;  // fused batches count once
  int64_t tensors_fused = 0;         // tensors that shared a fused batch
  int64_t cache_hits = 0;            // requests sent as a cache bit
  int64_t negotiation_messages = 0;  // request lists sent by this rank
  // Operations negotiated in the fast lane (one host, repeated tensors)
  // rather than through rank 0.
  int64_t fast_operations = 0;
  // Wall-clock (steady clock, ns) when this rank's most recent collective
  // began executing on the data plane; 0 before the first.
  int64_t last_execution_start_ns = 0;
};

// Starts kolo with options from the KOLO_* environment. Initialises MPI
// unless the application already did (then MPI_Finalize is left to it).
// Collective: every rank must call it. A second call while running is a no-op.
Status Init();
Status InitWithOptions(const Options& options);
// Stops kolo on every rank: pending operations fail with Cancelled.
Status Shutdown();
bool IsInitialized();

// Topology; -1 before Init(). Local = ranks on this host; cross = ranks with
// this rank's local rank on the other hosts.
int Rank();
int Size();
int LocalRank();
int LocalSize();
int CrossRank();
int CrossSize();

// REQUIRES: input and output have the same dtype and element count; they may
// be the same memory (in place).
StatusOr<Handle> AllreduceAsync(const std::string& name, const Tensor& input,
                                const Tensor& output,
                                const AllreduceOptions& options = {});
// All-or-nothing: the tensors run together (fused when they fit) once every
// rank has submitted all of them, or all fail. One handle for the group.
StatusOr<Handle> GroupedAllreduceAsync(const std::vector<std::string>& names,
                                       const std::vector<Tensor>& inputs,
                                       const std::vector<Tensor>& outputs,
                                       const AllreduceOptions& options = {});
// Concatenates every rank's input along the first dimension, in rank order;
// the first dimension may differ per rank, the others may not.
StatusOr<Handle> AllgatherAsync(const std::string& name, const Tensor& input,
                                OutputAllocator allocator = nullptr);
// Copies root_rank's buffer into every rank's buffer.
StatusOr<Handle> BroadcastAsync(const std::string& name, const Tensor& buffer,
                                int root_rank);
// Sends splits[j] rows (first-dimension slices, consecutive) to rank j. Empty
// splits = equal parts (the first dimension must divide by Size()).
StatusOr<Handle> AlltoallAsync(const std::string& name, const Tensor& input,
                               std::vector<int64_t> splits = {},
                               OutputAllocator allocator = nullptr);
// Reduces every rank's input and leaves rank r its share of the first
// dimension: dim0 / Size() rows, the first dim0 % Size() ranks one more.
StatusOr<Handle> ReducescatterAsync(const std::string& name,
                                    const Tensor& input,
                                    OutputAllocator allocator = nullptr,
                                    ReduceOp op = ReduceOp::kAverage);

// Grouped allgather and reducescatter: each tensor as AllgatherAsync or
// ReducescatterAsync would treat it, all or nothing as GroupedAllreduceAsync:
// the group runs once every rank has submitted all of its tensors, and one
// failing member fails them all. Every rank must group the same names (in
// any order); a group whose members differ between ranks fails
// (FailedPrecondition, naming both memberships) on every rank. CPU tensors of
// one dtype are fused into one data-plane call when twice their gathered
// (allgather) or input (reducescatter) bytes fit the fusion buffer.
// allocators: empty (kolo allocates; see Handle::output_data(member)) or one
// per tensor, each of which may be null. One handle for the group.
StatusOr<Handle> GroupedAllgatherAsync(
    const std::vector<std::string>& names, const std::vector<Tensor>& inputs,
    std::vector<OutputAllocator> allocators = {});
StatusOr<Handle> GroupedReducescatterAsync(
    const std::vector<std::string>& names, const std::vector<Tensor>& inputs,
    ReduceOp op = ReduceOp::kAverage,
    std::vector<OutputAllocator> allocators = {});
// Blocks until every rank has called Barrier().
Status Barrier();
// This rank has run out of data: until every rank has joined it takes part in
// the other ranks' allreduces with zeros (averages divide by the ranks that
// have not joined). Blocks; returns the rank that joined last.
StatusOr<int> Join();

// Blocking conveniences: *Async() followed by Wait().
Status Allreduce(const std::string& name, const Tensor& input,
                 const Tensor& output, const AllreduceOptions& options = {});
Status Broadcast(const std::string& name, const Tensor& buffer, int root_rank);

RuntimeStats GetStats();

// The CPU data plane Init() chose: "shm", "ring", "hierarchical" or "mpi"
// ("" before Init()).
std::string BackendName();

// Whether this build of kolo has the NCCL backend, i.e. takes CUDA tensors
// (Tensor::device.kind == Device::kCuda). Callable before Init(). A build
// with NCCL still runs on machines without a GPU: CUDA is first touched when
// a CUDA tensor is submitted.
bool NcclBuilt();

// The MPI library kolo is built against and runs on, e.g. "Open MPI 4.1.4"
// or "MPICH 4.0.2" (CMake's KOLO_MPI picks it; one per build). Callable
// before Init().
std::string MpiLibrary();

// Starts writing a Chrome-trace/Perfetto timeline to `path` (rank 0 writes;
// on other ranks this is a no-op), replacing a running one. KOLO_TIMELINE
// starts one at Init(). mark_cycles adds a marker per negotiation round.
Status StartTimeline(const std::string& path, bool mark_cycles = false);
// Finishes the timeline file (valid JSON).
Status StopTimeline();

}  // namespace kolo

#endif  // KOLO_KOLO_H_
