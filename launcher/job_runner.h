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

#include <functional>
#include <map>
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

// What elastic mode (elastic.h) adds to the supervision of one launch.
struct JobHooks {
  // Called about every 100 ms while the launcher runs; when it returns true,
  // the launcher gets SIGUSR1 once (the stop request, which it passes on to
  // every rank).
  std::function<bool()> poll;
  // Filled in by RunJob: every rank monitor report in arrival order, the
  // ranks that announced their start, and whether the stop request went
  // out.
  std::vector<std::string> reports;
  std::set<std::string> started;
  // Rank -> its command's exit code, from the monitors' exit
  // announcements (rank_monitor.h).
  std::map<std::string, int> exits;
  bool stop_sent = false;
};

// Runs plan.argv (argv[0] an absolute path) to completion and returns the
// exit code kolorun should end with: JobExitCode, kStartTimeoutExitCode,
// 128+N when kolorun itself was stopped by signal N, or
// kUnreportedFailureExitCode. launcher_name appears in messages. hooks may
// be null.
int RunJob(const LaunchPlan& plan, absl::string_view launcher_name,
           JobHooks* hooks = nullptr);

// How the launcher ended, as far as the exit code and summary care.
struct JobOutcome {
  int wait_status = 0;
  // The first rank failure report seen (FindRankReport), if any.
  std::optional<std::string> first_report;
  // kolorun sent the launcher SIGTERM because it left the other ranks
  // running after a rank failed.
  bool stopped_after_failure = false;
};

// The exit code kolorun ends with: when the job failed and a rank reported
// a failure, the first failed rank's own code (srun exits with the highest
// of all tasks', which after --kill-on-bad-exit is 143 from the SIGTERM that
// stopped the others; Open MPI's mpirun already exits with the first
// failure's; a Hydra that kolorun stopped dies of its SIGTERM); otherwise
// the launcher's (128+N when it was killed by signal N).
int JobExitCode(const JobOutcome& outcome);

// The final line printed for a job that failed: the exit code (JobExitCode)
// and the first rank report seen, if any.
std::string JobFailureSummary(const JobOutcome& outcome,
                              absl::string_view launcher_name);

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
