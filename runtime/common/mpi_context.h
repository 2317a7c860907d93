// MpiContext: kolo's use of MPI for process wire-up. Initialises MPI unless
// the application already did, and owns kolo's communicators: one for
// negotiation (control), one for collectives (data), and the local (same
// host) and cross (same local rank, other hosts) communicators.
//
// Hosts are told apart by name: gethostname(), or the configured name
// (KOLO_HOSTNAME: pretend hosts on one machine, for tests of hierarchical
// algorithms).
#ifndef KOLO_RUNTIME_COMMON_MPI_CONTEXT_H_
#define KOLO_RUNTIME_COMMON_MPI_CONTEXT_H_

#include <mpi.h>

#include <functional>
#include <memory>
#include <string>

#include "kolo/status.h"
#include "runtime/common/mpi_status.h"

namespace kolo {

// The MPI library this process runs on, from MPI_Get_library_version
// (callable before MPI_Init): "Open MPI 4.1.4", "MPICH 4.0.2", or the
// library's own first line for others.
std::string MpiLibraryName();

// "MPI_THREAD_SERIALIZED" for MPI_THREAD_SERIALIZED, and so on.
const char* ThreadLevelName(int level);

// When MPI_COMM_WORLD has one rank but the process's launcher says it
// started more, every process is running alone: it was started by another
// MPI's launcher (Hydra's PMI, Open MPI's ORTE) or by srun without a
// process-management interface this MPI understands. Returns the error to
// stop on, naming the variable that betrays the launcher; OK otherwise.
// `getenv` is injected so that tests can pose as any launcher.
Status CheckLauncherMatchesMpi(
    int world_size, const std::function<const char*(const char*)>& getenv);

class MpiContext {
 public:
  // hostname: this rank's host name; empty = gethostname().
  static StatusOr<std::unique_ptr<MpiContext>> Create(
      const std::string& hostname);
  // A process set's context: wires up the members of `members` (a
  // communicator of the set's ranks only, which the context takes over and
  // frees) as Create does MPI_COMM_WORLD's. MPI must stay initialised; the
  // context never finalises it.
  static StatusOr<std::unique_ptr<MpiContext>> CreateForMembers(
      MPI_Comm members, const std::string& hostname);
  ~MpiContext();

  MpiContext(const MpiContext&) = delete;
  MpiContext& operator=(const MpiContext&) = delete;

  // After a peer failed: the destructor leaves MPI alone (freeing
  // communicators or finalising could wait forever on the dead peer).
  void Abandon() { abandoned_ = true; }

  int rank() const { return rank_; }
  int size() const { return size_; }
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }
  int cross_rank() const { return cross_rank_; }
  int cross_size() const { return cross_size_; }
  const std::string& hostname() const { return hostname_; }
  // The thread level MPI provides (MPI_Query_thread).
  int thread_level() const { return thread_level_; }

  MPI_Comm control() const { return control_; }
  MPI_Comm data() const { return data_; }
  MPI_Comm local() const { return local_; }
  MPI_Comm cross() const { return cross_; }
  // The global context's communicator for creating process sets (a copy of
  // MPI_COMM_WORLD that only the application's thread uses, one change at a
  // time); MPI_COMM_NULL in a process set's context.
  MPI_Comm sets() const { return sets_; }

 private:
  MpiContext() = default;
  // Everything but MPI's initialisation: copies `base` into the control
  // and data communicators and splits the local and cross ones.
  Status Wire(MPI_Comm base, const std::string& hostname);

  bool owns_mpi_ = false;
  bool abandoned_ = false;
  int rank_ = 0;
  int size_ = 1;
  int local_rank_ = 0;
  int local_size_ = 1;
  int cross_rank_ = 0;
  int cross_size_ = 1;
  int thread_level_ = MPI_THREAD_SINGLE;
  std::string hostname_;
  MPI_Comm control_ = MPI_COMM_NULL;
  MPI_Comm data_ = MPI_COMM_NULL;
  MPI_Comm local_ = MPI_COMM_NULL;
  MPI_Comm cross_ = MPI_COMM_NULL;
  MPI_Comm sets_ = MPI_COMM_NULL;
};

}  // namespace kolo

#endif  // KOLO_RUNTIME_COMMON_MPI_CONTEXT_H_
