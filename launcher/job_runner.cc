// Supervision of the mpirun/srun process for kolorun.
#include "job_runner.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "elastic.h"
#include "process.h"
#include "rank_monitor.h"

namespace kolo {
namespace launcher {
namespace {

using Clock = std::chrono::steady_clock;

// After mpirun exits, its stderr may stay open in processes it left behind
// (e.g. a remote agent); wait this long for the rest of the output.
constexpr auto kDrainAfterExit = std::chrono::seconds(2);
// After kolorun asked the launcher to stop (SIGTERM), how long it gets to
// stop its job cleanly before SIGKILL.
constexpr auto kGraceAfterStop = std::chrono::seconds(10);
// Longest line kept whole; longer ones are passed on in pieces.
constexpr size_t kMaxLine = 64 * 1024;
// How long a partial line may wait for its end before it is passed on.
constexpr int kPartialLineFlushMs = 100;

void WriteAll(int fd, absl::string_view text) {
  while (!text.empty()) {
    const ssize_t n = write(fd, text.data(), text.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // stderr closed: keep supervising regardless
    text.remove_prefix(static_cast<size_t>(n));
  }
}

// Relays stderr to our stderr line by line, consuming start announcements
// and remembering the first failure report.
class StderrRelay {
 public:
  void Consume(const char* data, size_t size) {
    for (size_t i = 0; i < size; ++i) {
      line_ += data[i];
      if (data[i] == '\n' || line_.size() >= kMaxLine) HandleLine();
    }
  }
  // Passes on a line still waiting for its end (a progress bar, a prompt).
  void FlushPartial() {
    if (!line_.empty()) HandleLine();
  }
  const std::optional<std::string>& first_report() const {
    return first_report_;
  }
  const std::set<std::string>& started_ranks() const { return started_; }
  const std::vector<std::string>& reports() const { return reports_; }
  const std::map<std::string, int>& exits() const { return exits_; }

 private:
  void HandleLine() {
    if (std::optional<std::string> rank = FindStartAnnouncement(line_)) {
      started_.insert(*std::move(rank));
    } else if (std::optional<std::pair<std::string, int>> exit =
                   FindExitAnnouncement(line_)) {
      exits_[exit->first] = exit->second;
    } else {
      WriteAll(2, line_);
      if (std::optional<std::string> report = FindRankReport(line_)) {
        if (!first_report_) first_report_ = report;
        reports_.push_back(*std::move(report));
      }
    }
    line_.clear();
  }
  std::string line_;
  std::optional<std::string> first_report_;
  std::vector<std::string> reports_;
  std::map<std::string, int> exits_;
  std::set<std::string> started_;
};

}  // namespace

int JobExitCode(const JobOutcome& outcome) {
  const int code = ExitCodeOf(outcome.wait_status);
  const bool launcher_failed = code != 0 && WIFEXITED(outcome.wait_status);
  if ((launcher_failed || outcome.stopped_after_failure) &&
      outcome.first_report) {
    if (std::optional<int> rank_code =
            RankReportExitCode(*outcome.first_report)) {
      return *rank_code;
    }
  }
  return code;
}

std::string JobFailureSummary(const JobOutcome& outcome,
                              absl::string_view launcher_name) {
  std::string summary =
      WIFSIGNALED(outcome.wait_status) && !outcome.stopped_after_failure
          ? absl::StrCat("kolorun: ", launcher_name, " was killed by signal ",
                         WTERMSIG(outcome.wait_status))
          : absl::StrCat("kolorun: job failed with exit status ",
                         JobExitCode(outcome));
  if (outcome.first_report) {
    absl::StrAppend(&summary, "; first failure: ", *outcome.first_report);
  } else {
    absl::StrAppend(&summary, "; no rank reported a failure (see ",
                    launcher_name, "'s messages above)");
  }
  return summary;
}

std::string StartTimeoutMessage(int timeout_seconds, int num_ranks,
                                const std::set<std::string>& started) {
  constexpr int kMaxListed = 16;
  std::vector<int> missing;
  for (int rank = 0; rank < num_ranks; ++rank) {
    if (started.count(absl::StrCat(rank)) == 0) missing.push_back(rank);
  }
  std::string message = absl::StrCat(
      "kolorun: only ", num_ranks - static_cast<int>(missing.size()), " of ",
      num_ranks, " ranks started within --start-timeout ", timeout_seconds,
      " s; not started: rank");
  if (missing.size() > 1) message += "s";
  message += " ";
  const bool truncated = missing.size() > kMaxListed;
  if (truncated) missing.resize(kMaxListed);
  absl::StrAppend(&message, absl::StrJoin(missing, ", "),
                  truncated ? ", ..." : "", "; stopping the job");
  return message;
}

int RunJob(const LaunchPlan& plan, absl::string_view launcher_name,
           JobHooks* hooks) {
  // If our own stderr reader goes away, keep supervising the job.
  signal(SIGPIPE, SIG_IGN);
  InstallSignalForwarding(/*forward_terminal_signals=*/false);
  int err_pipe[2];
  if (pipe2(err_pipe, O_CLOEXEC) != 0) {
    std::fprintf(stderr, "kolorun: pipe: %s\n", strerror(errno));
    return 1;
  }
  absl::StatusOr<pid_t> child = StartChild(plan.argv, /*search_path=*/false,
                                           err_pipe[1], SIGTERM, "kolorun: ");
  close(err_pipe[1]);
  if (!child.ok()) {
    close(err_pipe[0]);
    std::fprintf(stderr, "kolorun: %s\n",
                 std::string(child.status().message()).c_str());
    return 1;
  }

  StderrRelay relay;
  bool pipe_open = true;
  bool exited = false;
  int status = 0;
  auto drain_deadline = Clock::now();
  const bool check_start = plan.start_timeout_seconds.has_value();
  const auto start_deadline =
      Clock::now() +
      std::chrono::seconds(plan.start_timeout_seconds.value_or(0));
  bool start_timed_out = false;
  auto kill_deadline = Clock::now();
  // Set when a rank's failure report arrives while the launcher runs.
  std::optional<Clock::time_point> failure_deadline;
  bool stopped_after_failure = false;
  for (;;) {
    if (!exited) {
      if (waitpid(*child, &status, WNOHANG) == *child) {
        exited = true;
        drain_deadline = Clock::now() + kDrainAfterExit;
      }
    }
    const auto now = Clock::now();
    if (exited && (!pipe_open || now >= drain_deadline)) break;
    if (!exited && check_start && !start_timed_out && now >= start_deadline &&
        static_cast<int>(relay.started_ranks().size()) < plan.num_ranks) {
      relay.FlushPartial();
      std::fprintf(stderr, "%s\n",
                   StartTimeoutMessage(*plan.start_timeout_seconds,
                                       plan.num_ranks, relay.started_ranks())
                       .c_str());
      kill(*child, SIGTERM);
      start_timed_out = true;
      kill_deadline = now + kGraceAfterStop;
    }
    if (!exited && !failure_deadline && relay.first_report()) {
      // How long the launcher may run on after a rank reported a failure
      // (LaunchPlan::stop_after_rank_failure_seconds). Open MPI's mpirun and
      // srun (--kill-on-bad-exit) usually stop the job themselves at once;
      // MPICH's Hydra lets the other ranks run on when a rank exits with an
      // error status, and so does Open MPI now and then, so kolorun stops it.
      failure_deadline =
          now + std::chrono::duration_cast<Clock::duration>(
                    std::chrono::duration<double>(
                        plan.stop_after_rank_failure_seconds));
    }
    if (!exited && !start_timed_out && !stopped_after_failure &&
        failure_deadline && now >= *failure_deadline) {
      std::fprintf(stderr,
                   "kolorun: %s left the other ranks running after rank "
                   "failure; stopping the job\n",
                   std::string(launcher_name).c_str());
      kill(*child, SIGTERM);
      stopped_after_failure = true;
      kill_deadline = now + kGraceAfterStop;
    }
    if (!exited && (start_timed_out || stopped_after_failure) &&
        now >= kill_deadline) {
      kill(*child, SIGKILL);
    }
    if (!exited && hooks != nullptr && hooks->poll && !hooks->stop_sent &&
        !start_timed_out && !failure_deadline && hooks->poll()) {
      kill(*child, SIGUSR1);
      hooks->stop_sent = true;
    }
    if (!pipe_open) {
      // Only polling remains; the 100 ms sleep keeps the timers above live.
      poll(nullptr, 0, kPartialLineFlushMs);
      continue;
    }
    pollfd p{err_pipe[0], POLLIN, 0};
    const int ready = poll(&p, 1, kPartialLineFlushMs);
    if (ready == 0) relay.FlushPartial();
    if (ready <= 0) continue;  // timeout, or EINTR from a forwarded signal
    char buffer[8192];
    const ssize_t n = read(err_pipe[0], buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      pipe_open = false;
      continue;
    }
    relay.Consume(buffer, static_cast<size_t>(n));
  }
  relay.FlushPartial();
  close(err_pipe[0]);
  if (hooks != nullptr) {
    hooks->reports = relay.reports();
    hooks->started = relay.started_ranks();
    hooks->exits = relay.exits();
  }

  if (start_timed_out) return kStartTimeoutExitCode;
  const JobOutcome outcome{status, relay.first_report(), stopped_after_failure};
  const int exit_code = JobExitCode(outcome);
  const bool stopped_on_request = hooks != nullptr && hooks->stop_sent &&
                                  exit_code == kElasticStoppedExitCode;
  if (exit_code != 0 && !stopped_on_request) {
    std::fprintf(stderr, "%s\n",
                 JobFailureSummary(outcome, launcher_name).c_str());
  } else if (const int sig = TerminationSignal(); sig != 0) {
    // MPICH's Hydra exits 0 after a Ctrl-C stopped every rank; a job that
    // was stopped must not look finished.
    std::fprintf(stderr, "kolorun: job stopped by signal %d (%s)\n", sig,
                 strsignal(sig));
    return 128 + sig;
  } else if (relay.first_report()) {
    // mpirun --enable-recovery exits 0 however its ranks ended; a rank that
    // failed still fails the job.
    std::fprintf(
        stderr, "%s\n",
        UnreportedFailureSummary(launcher_name, *relay.first_report()).c_str());
    return kUnreportedFailureExitCode;
  }
  return exit_code;
}

std::string UnreportedFailureSummary(absl::string_view launcher_name,
                                     absl::string_view first_report) {
  return absl::StrCat("kolorun: job failed: ", launcher_name,
                      " exited with status 0, but ", first_report);
}

}  // namespace launcher
}  // namespace kolo
