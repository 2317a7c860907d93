// ControlPlane: the negotiation channel between the coordinator (rank 0) and
// every rank. Implementations: MpiControlPlane (mpi_control_plane.h, kolo's
// control communicator) and InMemoryControlPlane (memory_control_plane.h,
// the ranks of one process, for tests).
//
// Nothing here ever blocks: Send() starts a transfer, Pump() moves
// transfers along and collects what arrived, Next() hands it out. This
// matters because the data planes wait outside the control plane
// (shared-memory barriers, TCP sockets): a rank must never sit in a call
// that needs a peer's progress while that peer sits in such a wait. Before
// a rank enters a collective it flushes the response lists it sent
// (FlushSends keeps receiving meanwhile), so every peer can learn about the
// collective without further help from it.
//
// Messages from one source are delivered in the order they were sent.
// Not thread-safe: owned by the background thread.
#ifndef KOLO_RUNTIME_CORE_CONTROL_PLANE_H_
#define KOLO_RUNTIME_CORE_CONTROL_PLANE_H_

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

  virtual ~ControlPlane() = default;

  // Starts sending `bytes` to `dest`; returns at once.
  virtual Status Send(int dest, std::shared_ptr<const std::string> bytes) = 0;
  // Progresses sends and receives; never blocks. Adds the destination of
  // every send that completed to *delivered (when given): the receiver can
  // now see that message. `expecting` (a peer just rang) probes harder.
  virtual Status Pump(std::vector<int>* delivered = nullptr,
                      bool expecting = false) = 0;
  // The next message received in full, if any (call Pump() first).
  virtual std::optional<Message> Next() = 0;
  // Whether transfers are in flight (then Pump() soon moves them along).
  virtual bool busy() const = 0;
  // Whether sends are in flight (their receivers cannot see them yet).
  virtual bool sending() const = 0;

  // Pumps (sleeping briefly between rounds) until every send has completed,
  // or fails with DeadlineExceeded after `timeout`.
  Status FlushSends(absl::Duration timeout,
                    std::vector<int>* delivered = nullptr);
};

}  // namespace kolo

#endif  // KOLO_RUNTIME_CORE_CONTROL_PLANE_H_
