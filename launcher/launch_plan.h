// Turns kolorun's options into the exact command that starts the job.
//
// This is the whole of kolorun's policy, kept free of I/O: the facts it
// depends on (which launcher is installed, the local core count, whether we
// run as root, the environment) come in as a LaunchEnvironment, so every
// combination can be unit tested without starting a process.
//
// Policy, in short:
// - Inside a Slurm allocation (SLURM_JOB_ID set, srun on PATH) and without
//   -H/--hostfile, the job is started with srun; otherwise with mpirun, whose
//   flavour (Open MPI or MPICH/Hydra) comes from `mpirun --version`.
// - srun is given the process-management interface the ranks' MPI speaks
//   (--mpi=pmix for Open MPI, --mpi=pmi2 for MPICH) when srun has it and the
//   user chose none.
// - Ranks fill each host's slots in order (rank r and r+1 share a host), so
//   local ranks are contiguous, which is what hierarchical allreduce wants.
// - More ranks than slots is allowed only when every host is this machine;
//   the local host is oversubscribed (ranks yield when idle) only when it
//   runs more ranks than it has cores or slots.
// - KOLO_* settings from flags, KOLO_* variables already in the environment
//   (except KOLO_HOSTNAME, which is per rank by nature) and -x variables are
//   exported to every rank, on every host.
#ifndef KOLO_LAUNCHER_LAUNCH_PLAN_H_
#define KOLO_LAUNCHER_LAUNCH_PLAN_H_

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "launch_options.h"

namespace kolo {
namespace launcher {

enum class Launcher {
  kOpenMpi,  // Open MPI's mpirun (ORTE/PRRTE)
  kHydra,    // MPICH's (or Intel MPI's) Hydra mpirun/mpiexec
  kSlurm,    // srun inside a Slurm allocation
};

absl::string_view LauncherName(Launcher launcher);

// Recognises the output of `mpirun --version`.
absl::StatusOr<Launcher> DetectMpiImplementation(
    absl::string_view version_output);

// The MPI a kolo build uses, named by the launcher family that starts its
// ranks: kOpenMpi or kHydra (MPICH).
absl::string_view MpiName(Launcher built_mpi);

// Facts about the machine and process that the plan depends on.
struct LaunchEnvironment {
  // Absolute paths; empty when not found on PATH.
  std::string mpirun_path;
  std::string srun_path;
  // Where this kolorun binary lives (for --rank-monitor on every rank).
  std::string kolorun_path;
  bool is_root = false;
  // Cores this process may run on (Open MPI's default slot count).
  int local_cores = 1;
  // This machine's host name and interface addresses: a -H entry that names
  // one of them (or localhost/127.x) is the local host.
  std::string hostname;
  std::vector<std::string> local_addresses;
  // kolorun's environment (SLURM_*, KOLO_*, the values behind -x VAR).
  std::map<std::string, std::string> env;
  // With --no-rank-monitor: the variables --memory-allocator sets on every
  // rank, resolved on this host (memory_allocator.h). Empty otherwise: the
  // rank monitor applies the choice on each host.
  std::map<std::string, std::string> allocator_env;
  // The MPI kolo is built against (KOLO_MPI), which the ranks use.
  Launcher built_mpi = Launcher::kOpenMpi;
  // The MPI plugins `srun --mpi=list` names; unset when srun was not asked.
  std::optional<std::vector<std::string>> srun_mpi_plugins;
};

// Picks srun or mpirun (before mpirun's flavour is known, since detecting it
// runs a process): srun inside a Slurm allocation unless hosts are named.
bool ShouldUseSrun(const LaunchOptions& options, const LaunchEnvironment& env);

// The srun MPI plugin through which ranks of `built_mpi` wire up: Open MPI
// 4.1 understands only PMIx, MPICH's default PMI client speaks PMI-2.
absl::string_view SrunMpiPlugin(Launcher built_mpi);

// True when kolorun should pick srun's MPI plugin, i.e. the user chose none
// (no --mpi in --mpi-args, no SLURM_MPI_TYPE): then it needs
// LaunchEnvironment::srun_mpi_plugins.
bool ShouldChooseSrunMpiPlugin(const LaunchOptions& options,
                               const LaunchEnvironment& env);

// The plugin names in the output of `srun --mpi=list` (one per indented
// line; Slurm 22.05 and later).
std::vector<std::string> ParseSrunMpiList(absl::string_view output);

// A warning when mpirun belongs to another MPI than the ranks' (whose kolo
// would then refuse to start, each rank alone); nullopt when they match.
std::optional<std::string> LauncherMismatchWarning(
    Launcher detected, const LaunchEnvironment& env);

// A variable exported to every rank; without a value, its current value in
// the launcher's environment is passed on.
struct EnvExport {
  std::string name;
  std::optional<std::string> value;
};

struct LaunchPlan {
  Launcher launcher = Launcher::kOpenMpi;
  // The full command, argv[0] an absolute path.
  std::vector<std::string> argv;
  // Directories to create before starting (per-rank output files).
  std::vector<std::string> directories_to_create;
  // For supervision: how many ranks must announce their start, and within
  // how long (unset: no limit).
  int num_ranks = 0;
  std::optional<int> start_timeout_seconds;
  // How long the launcher may leave the other ranks running after one
  // failed before kolorun stops it: the ranks' peer timeout
  // (KOLO_PEER_TIMEOUT_SECONDS, default 5) plus 2 s, at least 3 s, so that
  // the survivors notice the failure themselves and say so before they are
  // stopped.
  double stop_after_rank_failure_seconds = 7;
  // The decisions behind the command, for --verbose.
  std::vector<std::string> notes;
};

// REQUIRES: options.num_proc >= 1 and options.command is not empty (the
// command-line parser guarantees both).
absl::StatusOr<LaunchPlan> BuildLaunchPlan(const LaunchOptions& options,
                                           Launcher launcher,
                                           const LaunchEnvironment& env);

// The variables BuildLaunchPlan exports, in the order it exports them.
absl::StatusOr<std::vector<EnvExport>> CollectEnvExports(
    const LaunchOptions& options, const LaunchEnvironment& env);

// True when `host` names this machine.
bool IsLocalHost(absl::string_view host, const LaunchEnvironment& env);

// One line a POSIX shell reads back as exactly `argv` (for --dry-run).
std::string FormatCommandLine(const std::vector<std::string>& argv);

}  // namespace launcher
}  // namespace kolo

#endif  // KOLO_LAUNCHER_LAUNCH_PLAN_H_
