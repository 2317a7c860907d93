// ControlPlane: the negotiation channel between the coordinator (rank 0) and
// every rank, over kolo's control communicator.
//
// Nothing here ever blocks: sends are MPI_Isend (the buffer is kept until
// MPI is done with it), arriving messages are matched with MPI_Improbe and
// received with MPI_Imrecv, and Pump() moves both along. This matters
// because the data planes wait outside MPI (shared-memory barriers, TCP
// sockets): a rank must never sit in an MPI call that needs a peer's
// progress while that peer sits in such a wait. Before a rank enters a
// collective it flushes the response lists it sent (FlushSends keeps
// receiving meanwhile), so every peer can learn about the collective
// without further help from it.
//
// Messages from one source are delivered in the order they were sent.
// Not thread-safe: owned by the background thread.
#ifndef KOLO_RUNTIME_CORE_CONTROL_PLANE_H_
#define KOLO_RUNTIME_CORE_CONTROL_PLANE_H_

#include <mpi.h>

#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "kolo/status.h"

namespace kolo {

class ControlPlane {
 public:
  struct Message {
    int source = 0;
    std::string bytes;
  };

  explicit ControlPlane(MPI_Comm comm) : comm_(comm) {}
  ~ControlPlane();

  // Starts sending `bytes` to `dest`; returns at once.
  Status Send(int dest, std::shared_ptr<const std::string> bytes);
  // Progresses sends and receives; never blocks. Adds the destination of
  // every send that completed to *delivered (when given): the receiver can
  // now see that message. `expecting` (a peer just rang) probes harder.
  Status Pump(std::vector<int>* delivered = nullptr, bool expecting = false);
  // The next message received in full, if any (call Pump() first).
  std::optional<Message> Next();
  // Whether transfers are in flight (then Pump() soon moves them along).
  bool busy() const { return !sends_.empty() || !receives_.empty(); }
  // Whether sends are in flight (their receivers cannot see them yet).
  bool sending() const { return !sends_.empty(); }
  // Pumps (sleeping briefly between rounds) until every send has completed,
  // or fails with DeadlineExceeded after `timeout`.
  Status FlushSends(absl::Duration timeout,
                    std::vector<int>* delivered = nullptr);

 private:
  struct PendingSend {
    MPI_Request request;
    int dest;
    std::shared_ptr<const std::string> bytes;
  };
  struct PendingReceive {
    MPI_Request request;
    Message message;
  };

  MPI_Comm comm_;
  std::deque<PendingSend> sends_;
  std::deque<PendingReceive> receives_;  // in matching order
  std::deque<Message> inbox_;
};

}  // namespace kolo

#endif  // KOLO_RUNTIME_CORE_CONTROL_PLANE_H_
