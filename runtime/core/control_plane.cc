// Implementation of the negotiation channel.
#include "runtime/core/control_plane.h"

#include <thread>

#include "absl/strings/str_cat.h"
#include "runtime/core/mpi_context.h"

namespace kolo {
namespace {
constexpr int kControlTag = 7;
}  // namespace

ControlPlane::~ControlPlane() {
  // Whatever MPI still holds cannot be delivered any more; free it so the
  // communicator can be released.
  for (PendingSend& send : sends_) {
    MPI_Cancel(&send.request);
    MPI_Request_free(&send.request);
  }
}

Status ControlPlane::Send(int dest, std::shared_ptr<const std::string> bytes) {
  if (bytes->size() > static_cast<size_t>(INT32_MAX)) {
    return absl::InternalError("negotiation message larger than 2 GiB");
  }
  PendingSend send{MPI_REQUEST_NULL, std::move(bytes)};
  KOLO_MPI_RETURN_IF_ERROR(MPI_Isend(send.bytes->data(),
                                     static_cast<int>(send.bytes->size()),
                                     MPI_BYTE, dest, kControlTag, comm_,
                                     &send.request));
  sends_.push_back(std::move(send));
  return absl::OkStatus();
}

StatusOr<bool> ControlPlane::TryReceive(int* source, std::string* bytes) {
  int flag = 0;
  MPI_Message message;
  MPI_Status status;
  KOLO_MPI_RETURN_IF_ERROR(MPI_Improbe(MPI_ANY_SOURCE, kControlTag, comm_,
                                       &flag, &message, &status));
  if (!flag) return false;
  int count = 0;
  MPI_Get_count(&status, MPI_BYTE, &count);
  bytes->resize(count);
  KOLO_MPI_RETURN_IF_ERROR(
      MPI_Mrecv(bytes->data(), count, MPI_BYTE, &message, MPI_STATUS_IGNORE));
  *source = status.MPI_SOURCE;
  return true;
}

Status ControlPlane::Progress() {
  while (!sends_.empty()) {
    int done = 0;
    KOLO_MPI_RETURN_IF_ERROR(
        MPI_Test(&sends_.front().request, &done, MPI_STATUS_IGNORE));
    if (!done) break;
    sends_.pop_front();
  }
  return absl::OkStatus();
}

Status ControlPlane::FlushSends(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    if (Status s = Progress(); !s.ok()) return s;
    if (sends_.empty()) return absl::OkStatus();
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          sends_.size(), " negotiation messages were not delivered within ",
          absl::FormatDuration(timeout)));
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

}  // namespace kolo
