// NcclExecutor: kolo's data plane for CUDA tensors (the GpuExecutor of
// builds with NCCL; see runtime/backend/gpu_executor.h for the model).
//
// Choices, and why:
//   - One NCCL communicator per process, bound to the one GPU the process
//     submits tensors on (the first CUDA tensor picks it; a tensor on another
//     device is an InvalidArgument). Its ncclUniqueId comes from rank 0 over
//     the control plane (ResponseList::nccl_unique_id); every rank creates
//     the communicator when it runs its first CUDA response, so all ranks do
//     so at the same point of the response stream.
//   - Communicators are non-blocking (ncclConfig_t::blocking = 0): creation,
//     and any NCCL call that answers ncclInProgress, is waited for by
//     sleeping between ncclCommGetAsyncError checks, at most
//     max(KOLO_PEER_TIMEOUT_SECONDS, 30 s) (the floor because bootstrap and
//     topology discovery legitimately take seconds on large jobs; 0 waits
//     without limit), so a dead peer cannot hang this thread.
//   - Stream ordering without host waits: at submission the caller's thread
//     records a pooled event (cudaEventDisableTiming) on the producer stream
//     (Tensor::cuda_stream); kolo's own stream (cudaStreamNonBlocking) waits
//     for it with cudaStreamWaitEvent. After the launches a done event
//     (cudaEventBlockingSync | cudaEventDisableTiming) is recorded; a
//     finisher thread (one per process, started with the communicator)
//     blocks on it in cudaEventSynchronize (sleeping, not spinning) and then
//     completes the handles, so Handle::Wait() means the results are in
//     device memory. The background thread meanwhile keeps negotiating.
//   - Allreduce: a single tensor that needs no widening or scaling runs
//     directly on the caller's memory (in or out of place). Otherwise the
//     tensors are packed into the persistent fusion buffer (cudaMalloc'd at
//     KOLO_FUSION_THRESHOLD bytes when first needed) by one launch of the
//     batched copy kernel (up to kMaxCopyTasks tensors per launch, prescale
//     fused in), reduced in place, and unpacked by one more launch (average
//     divisor and postscale fused in). Work that does not fit the fusion
//     buffer (a scaled tensor larger than it, or float16/bfloat16 batches,
//     which are reduced as float32 and so need twice their bytes) uses
//     stream-ordered scratch memory from a pool of kolo's own. Reduction
//     semantics (widened half types, integer truncation, bool, ncclAvg) are
//     described at ReductionPlan in nccl_plan.h. A rank that joined
//     contributes zeros (cudaMemsetAsync).
//   - Hierarchical allreduce (KOLO_GPU_OPERATIONS=hierarchical, or auto on
//     several hosts with equal rank counts): ncclReduceScatter inside the
//     host (a communicator split from the global one by host, ordered by
//     local rank), a copy of this rank's shard to pinned host memory, an
//     allreduce of the shard across hosts on the CPU data plane (among the
//     ranks with this local rank), a copy back and ncclAllGather inside the
//     host. The background thread waits for the shard to reach the host.
//     The other collectives use the global communicator (NCCL is
//     topology-aware).
//   - Allgather: ncclAllGather when every rank sends the same number of
//     rows, otherwise one ncclBroadcast per rank, grouped, into the output
//     offsets. Broadcast: ncclBroadcast. Alltoall: grouped ncclSend/ncclRecv.
//     Reducescatter: ncclReduceScatter when the rows divide evenly (and
//     nothing needs widening or scaling), else an allreduce in scratch memory
//     and a copy of this rank's share. Outputs kolo allocates itself are
//     cudaMalloc'd and freed with cudaFree when the handle goes.
//   - Failures: CUDA and NCCL errors become Status naming the call, the
//     error string and the tensors. Once a response is agreed, a failure on
//     one rank would leave its peers waiting inside NCCL, so every failure
//     in Execute() is Aborted: the runtime stops, its peers notice and abort
//     too, and Abort() calls ncclCommAbort so no kernel keeps waiting.
//
// Threads: Prepare() runs on submitting threads; everything else on the
// background thread, except the finisher's completions.
#ifndef KOLO_RUNTIME_BACKEND_NCCL_NCCL_EXECUTOR_H_
#define KOLO_RUNTIME_BACKEND_NCCL_NCCL_EXECUTOR_H_

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "runtime/backend/gpu_executor.h"
#include "runtime/backend/nccl/nccl_plan.h"
#include "runtime/common/mutex.h"

namespace kolo {

struct CudaEvent {
  cudaEvent_t event = nullptr;
};

namespace nccl {

// CUDA events of one kind, reused (creating one is a driver call).
// Thread-safe; an event returns to its pool when its last holder drops it.
class EventPool : public std::enable_shared_from_this<EventPool> {
 public:
  explicit EventPool(unsigned flags) : flags_(flags) {}
  ~EventPool();
  EventPool(const EventPool&) = delete;
  EventPool& operator=(const EventPool&) = delete;

  // REQUIRES: the device the event is for is current.
  StatusOr<std::shared_ptr<CudaEvent>> Acquire();

 private:
  void Release(CudaEvent* event);

  const unsigned flags_;
  Mutex mu_;
  std::vector<CudaEvent*> free_ ABSL_GUARDED_BY(mu_);
};

class NcclExecutor : public GpuExecutor {
 public:
  explicit NcclExecutor(GpuExecutorConfig config);
  ~NcclExecutor() override;

  Status Prepare(std::vector<Entry>& entries) override;
  StatusOr<std::string> MakeUniqueId() override;
  void SetUniqueId(const std::string& id) override;
  Status Execute(const Response& response, std::vector<Entry>& entries,
                 std::vector<bool>& present) override;
  void Abort(const Status& status) override;
  void Shutdown() override;

 private:
  // One response queued on the stream, waiting for the GPU.
  struct InFlight {
    std::vector<Entry> entries;
    std::vector<std::string> names;  // timeline rows
    std::shared_ptr<CudaEvent> done;
    // With a timeline: (activity, timing event at its start), and the
    // timing event at the end of the last one.
    std::vector<std::pair<std::string, std::shared_ptr<CudaEvent>>> phases;
    std::shared_ptr<CudaEvent> end;
  };

  // The device of a tensor named `name` (role: "input", ...); picks the
  // process's device on first use.
  Status UseDevice(const std::string& name, const char* role,
                   const Device& device);
  // Creates the stream, memory pool, communicators and finisher on first
  // use.
  Status EnsureStarted();
  Status Run(const Response& response, std::vector<Entry>& entries,
             const std::vector<bool>& present, InFlight* item);
  Status Allreduce(const Response& response, std::vector<Entry>& entries,
                   const std::vector<bool>& present, InFlight* item);
  // The cross-host stage of a hierarchical allreduce of `count` (padded)
  // wire elements in `work`.
  Status HierarchicalAllreduce(char* work, int64_t count,
                               const ReductionPlan& plan, DataType dtype,
                               ReduceOp op, const std::string& what);
  Status Allgather(const Response& response, Entry& entry);
  Status Alltoall(const Response& response, Entry& entry);
  Status Reducescatter(const Response& response, Entry& entry, InFlight* item);
  Status AllocateOutput(Entry& entry, const std::vector<int64_t>& shape);
  // Memory for `bytes` of packed work: the fusion buffer when it fits,
  // otherwise stream-ordered scratch (*scratch set; free with FreeScratch).
  StatusOr<char*> WorkBuffer(int64_t bytes, bool* scratch,
                             const std::string& what);
  Status FreeScratch(char* buffer, const std::string& what);
  Status Copy(const std::vector<CopyTask>& tasks, DataType src, DataType dst,
              double scale, int64_t divisor, const std::string& what);
  // Checks an NCCL call's result, waiting out ncclInProgress on `comm`.
  Status NcclCheck(ncclResult_t result, ncclComm_t comm, const char* call,
                   const std::string& what);
  // Background thread: waits until the work queued on stream_ so far is
  // done, polling (bounded by PeerDeadline(), ended early by an NCCL
  // asynchronous error) rather than blocking in cudaEventSynchronize.
  Status WaitForStream(const std::string& what);
  // With a timeline: marks the start of `activity` on the stream.
  Status Mark(InFlight* item, const std::string& activity);
  bool timed() const;
  absl::Time PeerDeadline() const;

  void FinisherLoop();
  void StopFinisher();
  // Destroys communicators (abort: ncclCommAbort), then buffers, pool and
  // stream.
  void ReleaseResources(bool abort);

  const GpuExecutorConfig config_;
  std::shared_ptr<EventPool> ready_events_;
  std::shared_ptr<EventPool> done_events_;
  std::shared_ptr<EventPool> mark_events_;

  Mutex device_mu_;
  bool probed_ ABSL_GUARDED_BY(device_mu_) = false;
  int device_count_ ABSL_GUARDED_BY(device_mu_) = 0;
  std::string no_device_reason_ ABSL_GUARDED_BY(device_mu_);
  int device_ ABSL_GUARDED_BY(device_mu_) = -1;

  // Background thread only.
  int active_device_ = -1;
  std::string unique_id_;
  cudaStream_t stream_ = nullptr;
  cudaMemPool_t pool_ = nullptr;
  ncclComm_t comm_ = nullptr;
  ncclComm_t local_comm_ = nullptr;  // hierarchical: this host's ranks
  std::unique_ptr<Backend> cross_;   // hierarchical: across hosts
  char* fusion_buffer_ = nullptr;
  char* host_staging_ = nullptr;  // pinned
  int64_t host_staging_bytes_ = 0;
  std::shared_ptr<CudaEvent> staged_;  // hierarchical: shard on the host
  bool finished_ = false;              // Abort() or Shutdown() ran

  Mutex mu_;
  CondVar changed_;
  std::deque<InFlight> in_flight_ ABSL_GUARDED_BY(mu_);
  int64_t outstanding_ ABSL_GUARDED_BY(mu_) = 0;  // queued, not completed
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  Status abort_status_ ABSL_GUARDED_BY(mu_);
  std::thread finisher_;
};

}  // namespace nccl
}  // namespace kolo

#endif  // KOLO_RUNTIME_BACKEND_NCCL_NCCL_EXECUTOR_H_
