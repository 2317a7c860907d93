// Implementation of the control plane over MPI.
#include "runtime/core/mpi_control_plane.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "runtime/common/mpi_context.h"

namespace kolo {
namespace {
constexpr int kControlTag = 7;
constexpr int kProbesWhenExpecting = 32;
}  // namespace

MpiControlPlane::~MpiControlPlane() {
  // What MPI still holds cannot be delivered any more; release it so the
  // communicator can be freed.
  for (PendingSend& send : sends_) {
    MPI_Cancel(&send.request);
    MPI_Request_free(&send.request);
  }
  for (PendingReceive& receive : receives_) {
    MPI_Cancel(&receive.request);
    MPI_Request_free(&receive.request);
  }
}

Status MpiControlPlane::Send(int dest,
                             std::shared_ptr<const std::string> bytes) {
  if (bytes->size() > static_cast<size_t>(INT32_MAX)) {
    return absl::InternalError("negotiation message larger than 2 GiB");
  }
  PendingSend send{MPI_REQUEST_NULL, dest, std::move(bytes)};
  KOLO_MPI_RETURN_IF_ERROR(
      MPI_Isend(send.bytes->data(), static_cast<int>(send.bytes->size()),
                MPI_BYTE, dest, kControlTag, comm_, &send.request));
  sends_.push_back(std::move(send));
  return absl::OkStatus();
}

Status MpiControlPlane::Pump(std::vector<int>* delivered, bool expecting) {
  for (auto it = sends_.begin(); it != sends_.end();) {
    int done = 0;
    KOLO_MPI_RETURN_IF_ERROR(MPI_Test(&it->request, &done, MPI_STATUS_IGNORE));
    if (done && delivered != nullptr) delivered->push_back(it->dest);
    it = done ? sends_.erase(it) : it + 1;
  }
  // Open MPI runs some progress callbacks only every few calls: when a
  // message is expected, probe a few times before concluding nothing has
  // arrived.
  const int probes = expecting ? kProbesWhenExpecting : 2;
  for (int misses = 0; misses < probes;) {
    int flag = 0;
    MPI_Message matched;
    MPI_Status status;
    KOLO_MPI_RETURN_IF_ERROR(MPI_Improbe(MPI_ANY_SOURCE, kControlTag, comm_,
                                         &flag, &matched, &status));
    if (!flag) {
      ++misses;
      continue;
    }
    int count = 0;
    MPI_Get_count(&status, MPI_BYTE, &count);
    receives_.emplace_back();
    PendingReceive& receive = receives_.back();
    receive.message.source = status.MPI_SOURCE;
    receive.message.bytes.resize(count);
    KOLO_MPI_RETURN_IF_ERROR(MPI_Imrecv(receive.message.bytes.data(), count,
                                        MPI_BYTE, &matched, &receive.request));
  }
  // Deliver in matching order: a later message waits for an earlier one.
  while (!receives_.empty()) {
    int done = 0;
    KOLO_MPI_RETURN_IF_ERROR(
        MPI_Test(&receives_.front().request, &done, MPI_STATUS_IGNORE));
    if (!done) break;
    inbox_.push_back(std::move(receives_.front().message));
    receives_.pop_front();
  }
  return absl::OkStatus();
}

std::optional<ControlPlane::Message> MpiControlPlane::Next() {
  if (inbox_.empty()) return std::nullopt;
  Message message = std::move(inbox_.front());
  inbox_.pop_front();
  return message;
}

}  // namespace kolo
