// Operation and Entry: the state behind a Handle, and one tensor a rank has
// submitted and not yet finished.
#ifndef KOLO_RUNTIME_CORE_OPERATION_H_
#define KOLO_RUNTIME_CORE_OPERATION_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "kolo/kolo.h"
#include "runtime/common/mutex.h"
#include "runtime/core/message.h"

namespace kolo {
namespace internal {

// Shared by a Handle and the runtime. One operation may cover several
// entries (a grouped allreduce); it completes when all of them have.
struct Operation {
  explicit Operation(int entries) : remaining(entries) {}

  // Records one entry's outcome; the first error wins. Wakes waiters when
  // the last entry completes.
  void Complete(const Status& entry_status);
  bool done() const;
  Status Wait() const;

  mutable Mutex mu;
  mutable CondVar completed;
  int remaining ABSL_GUARDED_BY(mu);
  Status status ABSL_GUARDED_BY(mu);

  // Results, written by the background thread before the last Complete().
  std::vector<int64_t> output_shape;
  std::vector<int64_t> received_splits;
  // Output memory kolo allocated (no OutputAllocator): host memory for CPU
  // tensors, device memory for CUDA ones; the deleter matches.
  std::shared_ptr<void> owned_output;
  int last_joined_rank = -1;
};

}  // namespace internal

// A CUDA event from the NCCL backend's pool (runtime/backend/nccl); opaque
// here so that core code compiles without CUDA headers.
struct CudaEvent;

// Names of kolo's own operations start with this; the API refuses it.
inline constexpr char kReservedPrefix[] = "kolo.";
// The pending-table name of this rank's join (one at a time).
inline constexpr char kJoinName[] = "kolo.join";

// One submitted tensor.
struct Entry {
  Request request;
  Tensor input;
  Tensor output;  // allgather/alltoall/reducescatter: set when allocated
  OutputAllocator allocator;
  std::shared_ptr<internal::Operation> operation;
  // CUDA tensors: recorded on the producer's stream (Tensor::cuda_stream) at
  // submission; kolo's stream waits for it before touching the tensor.
  std::shared_ptr<CudaEvent> cuda_ready;
};

}  // namespace kolo

#endif  // KOLO_RUNTIME_CORE_OPERATION_H_
