// Backend: the data plane that runs one agreed collective on contiguous
// buffers. The coordinator decides what runs; a backend only moves and
// reduces bytes. Every rank calls the same backend methods in the same order
// (from its background thread), so implementations may assume matching calls.
//
// Implementations: mpi/ (Open MPI collectives, the reference). Unsupported
// operations fail with Unimplemented naming the backend and the operation.
#ifndef KOLO_RUNTIME_BACKEND_BACKEND_H_
#define KOLO_RUNTIME_BACKEND_BACKEND_H_

#include <cstdint>
#include <vector>

#include "absl/strings/string_view.h"
#include "kolo/status.h"
#include "runtime/common/reduce.h"

namespace kolo {

class Backend {
 public:
  virtual ~Backend() = default;

  // "mpi", "shm", ...
  virtual const char* name() const = 0;

  // In place: buffer = postscale * reduce(prescale * buffer_r) / divisor.
  virtual Status Allreduce(void* buffer, int64_t count,
                           const ReductionSpec& spec) = 0;
  // Out of place (input may equal output). Backends that can read the input
  // where it is override this to save a pass over memory; the default
  // copies and reduces in place.
  virtual Status Allreduce(const void* input, void* output, int64_t count,
                           const ReductionSpec& spec);
  // The algorithm an allreduce of `count` elements of `dtype` takes, for the
  // timeline ("direct", ...), where the backend chooses between several;
  // empty otherwise.
  virtual const char* AllreduceAlgorithm(int64_t /*count*/,
                                         DataType /*dtype*/) const {
    return "";
  }
  // The algorithm a broadcast, or an allgather whose largest part has
  // `bytes`, takes, for the timeline, where the backend chooses between
  // several; empty otherwise.
  virtual const char* CopyAlgorithm(int64_t /*bytes*/) const { return ""; }
  // output = concatenation of every rank's input; bytes_per_rank[r] bytes
  // from rank r. input holds bytes_per_rank[this rank] bytes.
  virtual Status Allgatherv(const void* input, void* output,
                            const std::vector<int64_t>& bytes_per_rank) = 0;
  // root's buffer to every rank.
  virtual Status Broadcast(void* buffer, int64_t bytes, int root) = 0;
  // send_bytes[j] consecutive bytes of input to rank j; recv_bytes[j] bytes
  // from rank j into output, in rank order.
  virtual Status Alltoallv(const void* input,
                           const std::vector<int64_t>& send_bytes, void* output,
                           const std::vector<int64_t>& recv_bytes) = 0;
  // Reduces every rank's input (sum of counts elements) and leaves this
  // rank's share (counts[this rank] elements, in rank order) in output.
  virtual Status ReduceScatter(const void* input, void* output,
                               const std::vector<int64_t>& counts,
                               const ReductionSpec& spec) = 0;
  virtual Status Barrier() = 0;

  // The job is over for this rank (`reason`): peers that wait for it in the
  // data plane must fail with Aborted rather than wait. local_failure: this
  // rank failed on its own (e.g. could not allocate an output) while its
  // peers may be inside the collective; planes whose waits kolo cannot
  // interrupt (Open MPI's collectives) then end the job through MPI. The
  // backend is unusable afterwards.
  virtual void Abandon(absl::string_view reason, bool local_failure) = 0;
};

}  // namespace kolo

#endif  // KOLO_RUNTIME_BACKEND_BACKEND_H_
