// The rank monitor: `kolorun --rank-monitor -- COMMAND [ARGS...]`, which
// mpirun (or srun) starts on every rank in place of COMMAND.
//
// It runs COMMAND as its child, forwards signals to it, and exits as the
// child did (same status, or the same signal). When the child fails on its
// own - not because the launcher is tearing the job down - it prints one
// line naming the rank and host to stderr, e.g.
//   kolorun: rank 2 on host node7 exited with status 3
// The launcher side of kolorun recognises that line in mpirun's output and
// repeats it in its final summary, so the user learns which rank failed.
#ifndef KOLO_LAUNCHER_RANK_MONITOR_H_
#define KOLO_LAUNCHER_RANK_MONITOR_H_

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace kolo {
namespace launcher {

// Runs the monitor; returns only if the child exited (its exit status).
// With announce_start, first prints FormatStartAnnouncement's line to stderr
// once the child is running (kolorun's --start-timeout counts these).
// REQUIRES: command is not empty.
int RunRankMonitor(const std::vector<std::string>& command,
                   bool announce_start);

// The world rank as the process manager announced it (Open MPI, MPICH/PMI,
// PMIx or Slurm variables), or "?" when none is set.
std::string RankFromEnvironment(const std::map<std::string, std::string>& env);

// The monitor's report lines.
std::string FormatRankExit(absl::string_view rank, absl::string_view host,
                           int exit_status);
std::string FormatRankSignal(absl::string_view rank, absl::string_view host,
                             int signal_number);
// The prefix of every monitor report (also of the child's "cannot run"
// message, which makes an exec failure the reported cause).
std::string RankReportPrefix(absl::string_view rank, absl::string_view host);

// "kolorun-started: rank R on host H"; kolorun consumes these lines (they
// never reach the user).
std::string FormatStartAnnouncement(absl::string_view rank,
                                    absl::string_view host);
// The rank R of a start announcement found in `line` (tags allowed).
std::optional<std::string> FindStartAnnouncement(absl::string_view line);

// "kolorun-exited: rank R status S" (S as ExitCodeOf), printed at the end
// with --announce-start; kolorun consumes these too. Elastic mode trusts
// them over the launcher's own status, which MPICH's Hydra reports as 0
// after a stop request although its ranks exited with 75.
std::string FormatExitAnnouncement(absl::string_view rank, int exit_code);
// The rank and exit code of an exit announcement found in `line`.
std::optional<std::pair<std::string, int>> FindExitAnnouncement(
    absl::string_view line);

// When `line` (one line of mpirun's stderr, possibly with a rank tag such as
// "[1,2]<stderr>:") carries a monitor report, returns the report without the
// "kolorun: " prefix, e.g. "rank 2 on host node7 exited with status 3".
std::optional<std::string> FindRankReport(absl::string_view line);

// The shell-style exit code a report (FindRankReport's result) gives the
// rank: N for "exited with status N", 128+N for "was killed by signal N";
// nullopt for other reports (a command that could not be run).
std::optional<int> RankReportExitCode(absl::string_view report);

}  // namespace launcher
}  // namespace kolo

#endif  // KOLO_LAUNCHER_RANK_MONITOR_H_
