// Executor: runs one agreed response on this rank: copies tensors into the
// fusion buffer, calls the backend, copies results out, allocates outputs
// whose shape negotiation decided, and completes the entries' handles.
//
// Owned by the background thread; not thread-safe.
#ifndef KOLO_RUNTIME_CORE_EXECUTOR_H_
#define KOLO_RUNTIME_CORE_EXECUTOR_H_

#include <memory>
#include <string>
#include <vector>

#include "runtime/backend/backend.h"
#include "runtime/common/timeline.h"
#include "runtime/core/adasum.h"
#include "runtime/op/operation.h"
#include "runtime/wire/message.h"

namespace kolo {

class Executor {
 public:
  // fusion_bytes: size of the persistent fusion buffer, allocated now
  // (ResourceExhausted naming KOLO_FUSION_THRESHOLD when it cannot be).
  static StatusOr<std::unique_ptr<Executor>> Create(Backend* backend, int rank,
                                                    int size,
                                                    int64_t fusion_bytes);

  Backend* backend() const { return backend_; }
  // Execution spans go to this timeline (may be null).
  void set_timeline(Timeline* timeline) { timeline_ = timeline; }
  // Prepended to the data plane's span names (FAST_ for the fast lane).
  void set_span_prefix(const char* prefix) { span_prefix_ = prefix; }

  // Checks a response from the coordinator against this rank's own
  // submissions before anything is copied: operation, dtype, shapes, this
  // rank's row counts and splits, sizes that fit the fusion buffer and do
  // not overflow. An error means the response is corrupt (or the ranks run
  // different protocols); nothing may run.
  Status Check(const Response& response, const std::vector<Entry>& entries,
               const std::vector<bool>& present) const;

  // Runs `response`. entries[i] is this rank's entry for
  // response.tensors[i] when present[i]; a missing entry means this rank has
  // joined and contributes zeros. Returns the status for every entry; the
  // caller completes them.
  Status Execute(const Response& response, std::vector<Entry>& entries,
                 const std::vector<bool>& present);

 private:
  Executor(Backend* backend, int rank, int size,
           std::unique_ptr<char[]> fusion_buffer, int64_t fusion_bytes);
  Status Run(const Response& response, std::vector<Entry>& entries,
             const std::vector<bool>& present);
  Status Allreduce(const Response& response, std::vector<Entry>& entries,
                   const std::vector<bool>& present);
  // Reduces `buffer` in place: counts[i] elements of response.tensors[i],
  // back to back; by the backend, or by adasum_ for ReduceOp::kAdasum.
  Status ReduceInPlace(const Response& response, void* buffer,
                       const std::vector<int64_t>& counts);
  Status Allgather(const Response& response, Entry& entry);
  Status Alltoall(const Response& response, Entry& entry);
  Status Reducescatter(const Response& response, Entry& entry);
  // Several tensors through the fusion buffer, one data-plane call.
  Status FusedAllgather(const Response& response, std::vector<Entry>& entries);
  Status FusedReducescatter(const Response& response,
                            std::vector<Entry>& entries);
  // Gives entry.output memory for `shape`: the caller's allocator or memory
  // owned by the operation.
  Status AllocateOutput(Entry& entry, const std::vector<int64_t>& shape);

  // The timeline's name for the backend's part of `response`: prefix,
  // backend and operation, and for an allreduce the backend's algorithm
  // where it has several (e.g. FAST_SHM_ALLREDUCE_DIRECT).
  std::string BackendActivity(const Response& response) const;
  // Records `activity` from start_ns to now on every tensor's row.
  void Record(const Response& response, const std::string& activity,
              int64_t start_ns);

  Backend* backend_;
  Timeline* timeline_ = nullptr;
  const char* span_prefix_ = "";
  int rank_;
  int size_;
  std::unique_ptr<char[]> fusion_buffer_;
  int64_t fusion_bytes_;
  std::vector<char> zeros_;  // a joined rank's contribution to large tensors
  AdasumAllreduce adasum_;
};

}  // namespace kolo

#endif  // KOLO_RUNTIME_CORE_EXECUTOR_H_
