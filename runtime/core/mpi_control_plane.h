// MpiControlPlane: the control plane (control_plane.h) over kolo's control
// communicator. Sends are MPI_Isend (the buffer is kept until MPI is done
// with it); arriving messages are matched with MPI_Improbe and received with
// MPI_Imrecv, delivered in matching order.
#ifndef KOLO_RUNTIME_CORE_MPI_CONTROL_PLANE_H_
#define KOLO_RUNTIME_CORE_MPI_CONTROL_PLANE_H_

#include <mpi.h>

#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "runtime/core/control_plane.h"

namespace kolo {

class MpiControlPlane final : public ControlPlane {
 public:
  explicit MpiControlPlane(MPI_Comm comm) : comm_(comm) {}
  ~MpiControlPlane() override;

  Status Send(int dest, std::shared_ptr<const std::string> bytes) override;
  Status Pump(std::vector<int>* delivered = nullptr,
              bool expecting = false) override;
  std::optional<Message> Next() override;
  bool busy() const override { return !sends_.empty() || !receives_.empty(); }
  bool sending() const override { return !sends_.empty(); }

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

#endif  // KOLO_RUNTIME_CORE_MPI_CONTROL_PLANE_H_
