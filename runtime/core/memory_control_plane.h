// InMemoryControlPlane: the control plane (control_plane.h) among the ranks
// of one process, one endpoint per rank (a thread each), for tests of the
// negotiation path without MPI.
//
// As over MPI, a message becomes visible to its receiver only once its
// sender has pumped (Send() only queues it), and messages from one source
// arrive in order. Close() takes a rank away as if it had died: what is
// sent to it is dropped, and it sends nothing more.
#ifndef KOLO_RUNTIME_CORE_MEMORY_CONTROL_PLANE_H_
#define KOLO_RUNTIME_CORE_MEMORY_CONTROL_PLANE_H_

#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "runtime/common/mutex.h"
#include "runtime/core/control_plane.h"

namespace kolo {

class InMemoryControlPlane final : public ControlPlane {
 public:
  // The endpoints of `size` ranks (index = rank), connected to each other.
  static std::vector<std::unique_ptr<InMemoryControlPlane>> Create(int size);

  Status Send(int dest, std::shared_ptr<const std::string> bytes) override;
  Status Pump(std::vector<int>* delivered = nullptr,
              bool expecting = false) override;
  std::optional<Message> Next() override;
  bool busy() const override { return !outgoing_.empty(); }
  bool sending() const override { return !outgoing_.empty(); }

  // This rank is gone (from any thread).
  void Close();

 private:
  // What the endpoints share: each rank's arrived messages.
  struct Hub {
    explicit Hub(int size) : arrived(size), closed(size, false) {}
    Mutex mu;
    std::vector<std::deque<Message>> arrived ABSL_GUARDED_BY(mu);
    std::vector<bool> closed ABSL_GUARDED_BY(mu);
  };
  InMemoryControlPlane(std::shared_ptr<Hub> hub, int rank)
      : hub_(std::move(hub)), rank_(rank) {}

  std::shared_ptr<Hub> hub_;
  const int rank_;
  std::deque<std::pair<int, std::shared_ptr<const std::string>>> outgoing_;
  std::deque<Message> inbox_;
};

}  // namespace kolo

#endif  // KOLO_RUNTIME_CORE_MEMORY_CONTROL_PLANE_H_
