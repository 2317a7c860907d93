// Implementation of MpiContext.
#include "runtime/core/mpi_context.h"

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "runtime/common/logging.h"

namespace kolo {
namespace {

constexpr int kHostnameBytes = 256;

// MPI cannot be initialised twice in a process: remember that kolo
// finalised it.
bool g_finalized_by_kolo = false;

std::string LocalHostname(const std::string& configured) {
  if (!configured.empty()) return configured;
  char buffer[kHostnameBytes] = {};
  gethostname(buffer, sizeof(buffer) - 1);
  return buffer;
}

}  // namespace

StatusOr<std::unique_ptr<MpiContext>> MpiContext::Create(
    const std::string& hostname) {
  std::unique_ptr<MpiContext> context(new MpiContext());
  int initialized = 0;
  int finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (finalized || g_finalized_by_kolo) {
    return absl::FailedPreconditionError(
        "kolo cannot start: MPI has already been finalized in this process "
        "(kolo can be restarted only when the application owns MPI)");
  }
  if (!initialized) {
    int provided = 0;
    KOLO_MPI_RETURN_IF_ERROR(
        MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided));
    context->owns_mpi_ = true;
    if (provided < MPI_THREAD_SERIALIZED) {
      return absl::FailedPreconditionError(
          "kolo needs MPI_THREAD_SERIALIZED or better; this MPI provides less");
    }
  } else {
    int provided = 0;
    MPI_Query_thread(&provided);
    if (provided < MPI_THREAD_SERIALIZED) {
      return absl::FailedPreconditionError(
          "the application initialised MPI below MPI_THREAD_SERIALIZED; kolo's "
          "background thread needs MPI_Init_thread with MPI_THREAD_MULTIPLE");
    }
    if (provided < MPI_THREAD_MULTIPLE) {
      Log().warn(
          "MPI was initialised without MPI_THREAD_MULTIPLE: the application "
          "must not call MPI while kolo is running");
    }
  }
  MpiContext& c = *context;
  KOLO_MPI_RETURN_IF_ERROR(MPI_Comm_dup(MPI_COMM_WORLD, &c.control_));
  KOLO_MPI_RETURN_IF_ERROR(MPI_Comm_dup(MPI_COMM_WORLD, &c.data_));
  for (MPI_Comm comm : {c.control_, c.data_}) {
    KOLO_MPI_RETURN_IF_ERROR(MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN));
  }
  MPI_Comm_rank(c.data_, &c.rank_);
  MPI_Comm_size(c.data_, &c.size_);

  // Ranks with the same host name form a local communicator; the colour is
  // the lowest rank on that host, so it is the same on every rank.
  c.hostname_ = LocalHostname(hostname);
  std::vector<char> names(static_cast<size_t>(kHostnameBytes) * c.size_);
  char mine[kHostnameBytes] = {};
  std::strncpy(mine, c.hostname_.c_str(), kHostnameBytes - 1);
  KOLO_MPI_RETURN_IF_ERROR(MPI_Allgather(mine, kHostnameBytes, MPI_CHAR,
                                         names.data(), kHostnameBytes, MPI_CHAR,
                                         c.data_));
  int color = c.rank_;
  for (int r = 0; r < c.size_; ++r) {
    if (std::strncmp(mine, &names[static_cast<size_t>(r) * kHostnameBytes],
                     kHostnameBytes) == 0) {
      color = r;
      break;
    }
  }
  KOLO_MPI_RETURN_IF_ERROR(MPI_Comm_split(c.data_, color, c.rank_, &c.local_));
  MPI_Comm_rank(c.local_, &c.local_rank_);
  MPI_Comm_size(c.local_, &c.local_size_);
  KOLO_MPI_RETURN_IF_ERROR(
      MPI_Comm_split(c.data_, c.local_rank_, c.rank_, &c.cross_));
  MPI_Comm_rank(c.cross_, &c.cross_rank_);
  MPI_Comm_size(c.cross_, &c.cross_size_);
  for (MPI_Comm comm : {c.local_, c.cross_}) {
    KOLO_MPI_RETURN_IF_ERROR(MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN));
  }
  return context;
}

MpiContext::~MpiContext() {
  if (abandoned_) return;
  for (MPI_Comm* comm : {&cross_, &local_, &data_, &control_}) {
    if (*comm != MPI_COMM_NULL) MPI_Comm_free(comm);
  }
  if (owns_mpi_) {
    MPI_Finalize();
    g_finalized_by_kolo = true;
  }
}

}  // namespace kolo
