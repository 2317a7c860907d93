// Operation and Entry: the state behind a Handle, and one tensor a rank has
// submitted and not yet finished; the shape rules every executor shares.
#ifndef KOLO_RUNTIME_OP_OPERATION_H_
#define KOLO_RUNTIME_OP_OPERATION_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "kolo/kolo.h"
#include "runtime/common/mutex.h"
#include "runtime/wire/message.h"

namespace kolo {
namespace internal {

struct Operation;

// Lets the thread that waits for an operation do the work itself (the fast
// lane, fast_lane.h) instead of sleeping until the background thread has.
class WaitHelper {
 public:
  virtual ~WaitHelper() = default;
  // Returns once `operation` is done, or once waiting on it is the better
  // choice (it moved to the slow path, or kolo stopped).
  virtual void HelpUntilDone(const Operation& operation) = 0;
  // Does whatever fast-lane work is ready now, without blocking (a poll).
  virtual void HelpOnce() = 0;
};

// Shared by a Handle and the runtime. One operation may cover several
// entries (a grouped collective); it completes when all of them have.
struct Operation {
  explicit Operation(int entries)
      : remaining(entries), output_shapes(entries), owned_outputs(entries) {}

  // Records one entry's outcome; the first error wins. Wakes waiters when
  // the last entry completes.
  void Complete(const Status& entry_status);
  bool done() const;
  // done(), after running ready fast-lane work on this thread.
  bool Poll() const;
  Status Wait() const;

  mutable Mutex mu;
  mutable CondVar completed;
  int remaining ABSL_GUARDED_BY(mu);
  Status status ABSL_GUARDED_BY(mu);

  // Results, written by the background thread before the last Complete().
  // Per entry (Entry::member): the output shape, and the output memory kolo
  // allocated (no OutputAllocator): host memory for CPU tensors, device
  // memory for CUDA ones; the deleter matches.
  std::vector<std::vector<int64_t>> output_shapes;
  std::vector<std::shared_ptr<void>> owned_outputs;
  std::vector<int64_t> received_splits;
  int last_joined_rank = -1;
  // While it negotiates in the fast lane, Wait() lets `helper` run it.
  std::atomic<bool> fast{false};
  std::weak_ptr<WaitHelper> helper;
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
  // This entry's index among its operation's entries (grouped collectives).
  int member = 0;
  // CUDA tensors: recorded on the producer's stream (Tensor::cuda_stream) at
  // submission; kolo's stream waits for it before touching the tensor.
  std::shared_ptr<CudaEvent> cuda_ready;
  // Fast lane (fast_lane.h): the fast id and instance this submission
  // arrived at, or -1 on the slow path; and when it was submitted.
  int32_t fast_id = -1;
  uint32_t fast_instance = 0;
  int64_t submitted_ns = 0;
};

// Rows and per-row elements of a tensor along its first dimension (a scalar
// is one row of one element).
int64_t RowElements(const std::vector<int64_t>& shape);
int64_t Rows(const std::vector<int64_t>& shape);
// Rank r's share of `rows` rows in a reducescatter.
int64_t ReducescatterRows(int64_t rows, int size, int rank);

}  // namespace kolo

#endif  // KOLO_RUNTIME_OP_OPERATION_H_
