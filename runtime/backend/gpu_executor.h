// GpuExecutor: runs the agreed responses on CUDA tensors. The implementation
// is the NCCL backend (runtime/backend/nccl/nccl_executor.h), built when
// CUDA and NCCL are found; this interface keeps the rest of the runtime free
// of CUDA headers, and MakeGpuExecutor() returns null in builds without it.
//
// Model. Collectives on CUDA tensors are asynchronous on the GPU: the
// background thread queues them on kolo's own CUDA stream and goes back to
// negotiating; a finisher thread completes the handles once the GPU is done.
// Every rank queues the same NCCL calls in the same order (the order of the
// response lists), which is what NCCL requires.
#ifndef KOLO_RUNTIME_BACKEND_GPU_EXECUTOR_H_
#define KOLO_RUNTIME_BACKEND_GPU_EXECUTOR_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kolo/status.h"
#include "runtime/backend/backend.h"
#include "runtime/common/timeline.h"
#include "runtime/op/operation.h"
#include "runtime/wire/message.h"

namespace kolo {

struct GpuExecutorConfig {
  int rank = 0;
  int size = 1;
  int local_rank = 0;
  int local_size = 1;
  // Equal on the ranks of one host and different between hosts (the lowest
  // world rank on the host): the colour of the intra-host NCCL communicator.
  int host_color = 0;
  // Allreduce runs hierarchically (KOLO_GPU_OPERATIONS resolved for this
  // job's topology): NCCL inside the host, cross_backend across hosts.
  bool hierarchical = false;
  int64_t fusion_threshold_bytes = 0;
  // Bounds how long NCCL communicator set-up and teardown may wait for
  // peers (KOLO_PEER_TIMEOUT_SECONDS; 0 waits without limit).
  double peer_timeout_seconds = 5;
  Timeline* timeline = nullptr;  // rank 0's, or null
  // Completes one entry's share of its operation (called on the finisher
  // thread, or on the background thread for entries that never ran).
  std::function<void(Entry& entry, const Status& status)> complete;
  // Hierarchical only: makes the CPU data plane that allreduces a host's
  // shard across hosts (over the cross communicator: ranks with this local
  // rank on the other hosts). Called once, on the background thread, when
  // the first hierarchical allreduce runs (every rank at the same point).
  std::function<StatusOr<std::unique_ptr<Backend>>()> make_cross_backend;
};

class GpuExecutor {
 public:
  virtual ~GpuExecutor() = default;

  // On the submitting thread, inside *Async: validates the entries' CUDA
  // tensors (input and output on one device, the one device this process
  // uses, a GPU present) and records each entry's ready event on its
  // producer stream. Entries on the CPU are left alone.
  virtual Status Prepare(std::vector<Entry>& entries) = 0;

  // Rank 0's background thread: a new ncclUniqueId (kNcclUniqueIdBytes).
  virtual StatusOr<std::string> MakeUniqueId() = 0;
  // Background thread: the id the response lists brought. The communicator
  // is created from it when the first CUDA response runs.
  virtual void SetUniqueId(const std::string& id) = 0;

  // Background thread: queues `response` (IsCudaResponse) on kolo's stream.
  // entries[i] is this rank's entry for response.tensors[i] when
  // present[i]; a missing allreduce entry means this rank has joined and
  // contributes zeros. On success the executor has taken the present
  // entries (present[i] is cleared) and completes them when the GPU is
  // done; on failure the caller completes them with the status. A failure
  // after this rank may have queued NCCL calls that peers are waiting on is
  // Aborted: the runtime must stop, or the peers would wait forever.
  virtual Status Execute(const Response& response, std::vector<Entry>& entries,
                         std::vector<bool>& present) = 0;

  // Background thread, when the runtime aborts (a peer died, or an internal
  // failure): aborts the NCCL communicators so that no kernel waits for a
  // dead peer, and fails every entry still in flight with `status`.
  virtual void Abort(const Status& status) = 0;
  // Background thread, at a clean shutdown: lets the queued work finish
  // (completing its entries), then frees the communicators, stream, buffers
  // and events. Falls back to Abort() when peers do not finish in time.
  virtual void Shutdown() = 0;
};

// The NCCL executor, or null in builds without NCCL. Touches no CUDA API.
std::unique_ptr<GpuExecutor> MakeGpuExecutor(GpuExecutorConfig config);

}  // namespace kolo

#endif  // KOLO_RUNTIME_BACKEND_GPU_EXECUTOR_H_
