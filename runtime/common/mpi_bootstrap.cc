// Implementation of the MPI bootstrap.
#include "runtime/common/mpi_bootstrap.h"

#include <limits>

#include "absl/strings/str_cat.h"
#include "runtime/common/mpi_status.h"

namespace kolo {
namespace {

// MPI counts are ints; set-up messages are small.
Status CheckCount(const char* call, int64_t bytes) {
  if (bytes < 0 || bytes > std::numeric_limits<int>::max()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bootstrap ", call, " of ", bytes, " bytes: MPI counts are ints"));
  }
  return absl::OkStatus();
}

}  // namespace

MpiBootstrap::MpiBootstrap(MPI_Comm comm) : comm_(comm) {
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
}

Status MpiBootstrap::Allgather(const void* mine, void* all, int64_t bytes) {
  if (Status s = CheckCount("allgather", bytes); !s.ok()) return s;
  const int n = static_cast<int>(bytes);
  KOLO_MPI_RETURN_IF_ERROR(
      MPI_Allgather(mine, n, MPI_BYTE, all, n, MPI_BYTE, comm_));
  return absl::OkStatus();
}

Status MpiBootstrap::Broadcast(void* buffer, int64_t bytes, int root) {
  if (Status s = CheckCount("broadcast", bytes); !s.ok()) return s;
  KOLO_MPI_RETURN_IF_ERROR(
      MPI_Bcast(buffer, static_cast<int>(bytes), MPI_BYTE, root, comm_));
  return absl::OkStatus();
}

Status MpiBootstrap::Barrier() {
  KOLO_MPI_RETURN_IF_ERROR(MPI_Barrier(comm_));
  return absl::OkStatus();
}

}  // namespace kolo
