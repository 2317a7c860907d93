// ControlPlane: the negotiation channel between the coordinator (rank 0) and
// every rank, over kolo's control communicator. Sends never block (Isend; the
// buffer is kept until MPI is done with it) and receiving only takes what has
// arrived (matched probe), so the background thread can interleave
// negotiation with collectives without deadlock.
//
// Not thread-safe: owned by the background thread.
#ifndef KOLO_RUNTIME_CORE_CONTROL_PLANE_H_
#define KOLO_RUNTIME_CORE_CONTROL_PLANE_H_

#include <deque>
#include <memory>
#include <string>

#include <mpi.h>

#include "absl/time/time.h"
#include "kolo/status.h"

namespace kolo {

class ControlPlane {
 public:
  explicit ControlPlane(MPI_Comm comm) : comm_(comm) {}
  ~ControlPlane();

  // Starts sending `bytes` to `dest`; returns at once.
  Status Send(int dest, std::shared_ptr<const std::string> bytes);
  // Receives one waiting message into *bytes and *source; false if none.
  StatusOr<bool> TryReceive(int* source, std::string* bytes);
  // Releases the buffers of sends that have completed.
  Status Progress();
  // Waits (sleeping between checks) until every send has completed, or
  // fails with DeadlineExceeded after `timeout`.
  Status FlushSends(absl::Duration timeout);

 private:
  struct PendingSend {
    MPI_Request request;
    std::shared_ptr<const std::string> bytes;
  };

  MPI_Comm comm_;
  std::deque<PendingSend> sends_;
};

}  // namespace kolo

#endif  // KOLO_RUNTIME_CORE_CONTROL_PLANE_H_
