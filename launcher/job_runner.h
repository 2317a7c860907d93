// Runs the launcher command (mpirun or srun) and supervises it.
//
// kolorun's stdout and stdin pass straight through. mpirun's stderr is
// relayed line by line as it arrives (a partial line is flushed after
// 100 ms), minus the rank monitors' start announcements, and watched for
// their failure reports (rank_monitor.h). Signals sent to kolorun are
// forwarded to mpirun, and mpirun receives SIGTERM if kolorun dies. When the
// job fails, kolorun ends with one line naming the first rank that failed.
#ifndef KOLO_LAUNCHER_JOB_RUNNER_H_
#define KOLO_LAUNCHER_JOB_RUNNER_H_

#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "launch_plan.h"

namespace kolo {
namespace launcher {

// Exit code when the ranks did not all start within --start-timeout.
constexpr int kStartTimeoutExitCode = 1;
// Exit code when the launcher exited 0 although a rank failed (mpirun
// --enable-recovery does that).
constexpr int kUnreportedFailureExitCode = 1;

// Runs plan.argv (argv[0] an absolute path) to completion and returns the
// exit code kolorun should end with: the job's exit status, 128+N if the
// launcher was killed by signal N, kStartTimeoutExitCode, or
// kUnreportedFailureExitCode. launcher_name appears in messages.
int RunJob(const LaunchPlan& plan, absl::string_view launcher_name);

// The final line printed for a launcher that ended with wait_status (not a
// success): names the first rank report seen, if any.
std::string JobFailureSummary(int wait_status, absl::string_view launcher_name,
                              const std::optional<std::string>& first_report);

// The final line when the launcher exited 0 although a rank monitor
// reported `first_report` (e.g. "rank 2 on host b exited with status 3").
std::string UnreportedFailureSummary(absl::string_view launcher_name,
                                     absl::string_view first_report);

// The message for a start timeout: which of ranks 0..num_ranks-1 are not
// among `started` (at most the first 16 are listed).
std::string StartTimeoutMessage(int timeout_seconds, int num_ranks,
                                const std::set<std::string>& started);

}  // namespace launcher
}  // namespace kolo

#endif  // KOLO_LAUNCHER_JOB_RUNNER_H_
