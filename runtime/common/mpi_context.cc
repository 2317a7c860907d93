// Implementation of MpiContext.
#include "runtime/common/mpi_context.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
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

std::string MpiLibraryName() {
  char version[MPI_MAX_LIBRARY_VERSION_STRING] = {};
  int length = 0;
  MPI_Get_library_version(version, &length);
  // "Open MPI v4.1.4, package: Debian OpenMPI, ident: 4.1.4, ..." and
  // "MPICH Version:\t4.0.2\nMPICH Release date: ...\n...".
  std::string text(version, static_cast<size_t>(std::max(length, 0)));
  text = text.substr(0, text.find_first_of(",\n"));
  if (absl::StartsWith(text, "Open MPI v")) {
    return absl::StrCat("Open MPI ", text.substr(strlen("Open MPI v")));
  }
  if (absl::StartsWith(text, "MPICH Version:")) {
    return absl::StrCat(
        "MPICH ", absl::StripAsciiWhitespace(absl::string_view(text).substr(
                      strlen("MPICH Version:"))));
  }
  return std::string(absl::StripAsciiWhitespace(text));
}

const char* ThreadLevelName(int level) {
  switch (level) {
    case MPI_THREAD_SINGLE:
      return "MPI_THREAD_SINGLE";
    case MPI_THREAD_FUNNELED:
      return "MPI_THREAD_FUNNELED";
    case MPI_THREAD_SERIALIZED:
      return "MPI_THREAD_SERIALIZED";
    case MPI_THREAD_MULTIPLE:
      return "MPI_THREAD_MULTIPLE";
  }
  return "an unknown MPI thread level";
}

Status CheckLauncherMatchesMpi(
    int world_size, const std::function<const char*(const char*)>& getenv) {
  if (world_size != 1) return absl::OkStatus();
  // The variables each launcher sets in every process it starts; the first
  // two belong to the process's own launcher, so they are believed before
  // Slurm's, which an srun around another launcher also leaves behind.
  struct Launcher {
    const char* size_variable;
    const char* who;
  };
  static constexpr Launcher kLaunchers[] = {
      {"OMPI_COMM_WORLD_SIZE", "Open MPI's mpirun"},
      {"PMI_SIZE",
       "a PMI launcher (MPICH's mpiexec/Hydra, or srun --mpi=pmi2)"},
      {"SLURM_STEP_NUM_TASKS", "srun"},
  };
  for (const Launcher& launcher : kLaunchers) {
    const char* value = getenv(launcher.size_variable);
    if (value == nullptr || *value == '\0') continue;
    int started = 0;
    if (!absl::SimpleAtoi(value, &started) || started <= 1) {
      return absl::OkStatus();
    }
    return absl::FailedPreconditionError(absl::StrCat(
        "this process is alone in MPI_COMM_WORLD, but ", launcher.who,
        " started ", started, " of them (", launcher.size_variable, "=", value,
        "): every rank would run on its own. kolo is built against ",
        MpiLibraryName(),
        ", which did not recognise the launcher; start the job with kolorun "
        "or with this MPI's own launcher (under Slurm: srun --mpi=pmix for "
        "Open MPI, srun --mpi=pmi2 for MPICH)"));
  }
  return absl::OkStatus();
}

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
  int& provided = context->thread_level_;
  if (!initialized) {
    KOLO_MPI_RETURN_IF_ERROR(
        MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided));
    context->owns_mpi_ = true;
    if (provided < MPI_THREAD_SERIALIZED) {
      return absl::FailedPreconditionError(absl::StrCat(
          "kolo needs MPI_THREAD_SERIALIZED or better; ", MpiLibraryName(),
          " provides only ", ThreadLevelName(provided)));
    }
  } else {
    MPI_Query_thread(&provided);
    // kolo's background thread calls MPI; below SERIALIZED the application
    // promised MPI that only its main thread would.
    if (provided < MPI_THREAD_SERIALIZED) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the application initialised MPI at ", ThreadLevelName(provided),
          "; kolo's background thread needs MPI_THREAD_SERIALIZED or better "
          "(call MPI_Init_thread with MPI_THREAD_MULTIPLE)"));
    }
    if (provided < MPI_THREAD_MULTIPLE) {
      Log().warn(
          "MPI was initialised without MPI_THREAD_MULTIPLE: the application "
          "must not call MPI while kolo is running");
    }
  }
  int world_size = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  if (Status s = CheckLauncherMatchesMpi(
          world_size, [](const char* name) { return std::getenv(name); });
      !s.ok()) {
    return s;
  }
  if (Status s = context->Wire(MPI_COMM_WORLD, hostname); !s.ok()) return s;
  KOLO_MPI_RETURN_IF_ERROR(MPI_Comm_dup(MPI_COMM_WORLD, &context->sets_));
  KOLO_MPI_RETURN_IF_ERROR(
      MPI_Comm_set_errhandler(context->sets_, MPI_ERRORS_RETURN));
  return context;
}

StatusOr<std::unique_ptr<MpiContext>> MpiContext::CreateForMembers(
    MPI_Comm members, const std::string& hostname) {
  std::unique_ptr<MpiContext> context(new MpiContext());
  MPI_Query_thread(&context->thread_level_);
  Status wired = context->Wire(members, hostname);
  MPI_Comm_free(&members);
  if (!wired.ok()) return wired;
  return context;
}

Status MpiContext::Wire(MPI_Comm base, const std::string& hostname) {
  MpiContext& c = *this;
  KOLO_MPI_RETURN_IF_ERROR(MPI_Comm_dup(base, &c.control_));
  KOLO_MPI_RETURN_IF_ERROR(MPI_Comm_dup(base, &c.data_));
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
  return absl::OkStatus();
}

MpiContext::~MpiContext() {
  if (abandoned_) return;
  for (MPI_Comm* comm : {&sets_, &cross_, &local_, &data_, &control_}) {
    if (*comm != MPI_COMM_NULL) MPI_Comm_free(comm);
  }
  if (owns_mpi_) {
    MPI_Finalize();
    g_finalized_by_kolo = true;
  }
}

}  // namespace kolo
