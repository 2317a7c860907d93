// kolorun's elastic mode: the policy that decides where and with how many
// ranks a job runs after a failure or when hosts come and go.
//
// Elastic mode is on with --host-discovery-script (hosts may change while the
// job runs) or --max-restarts (a failed job is started again). kolorun then
// runs the job in launches: each launch is one mpirun/srun of the command on
// the hosts available at that moment. A launch ends in one of four ways:
//   - the job finished (status 0): kolorun exits 0;
//   - it stopped because kolorun asked it to (status 75 after kolorun sent
//     the stop request, see below): relaunch at once, not counted as a
//     restart;
//   - a rank failed: the host of the failed rank cools down (is not used for
//     --host-cooldown seconds, in elastic mode only), the restart count grows
//     and, within --max-restarts, the job is launched again on the hosts
//     discovery reports now;
//   - fewer than --min-np slots are available: kolorun waits, asking the
//     script again, for at most --elastic-timeout seconds.
// While a launch runs, discovery is asked every --discovery-interval
// seconds. When more slots appear (up to --max-np) or a host in use
// disappears from the list, kolorun asks the job to stop at its next step
// boundary: it sends SIGUSR1 to the launcher, which passes it to every rank's
// monitor, which creates the file named by KOLO_ELASTIC_STOP_FILE on its
// host; the program sees it through kolo::torch::elastic::stop_requested(),
// writes a checkpoint and exits with status 75.
//
// Everything in this header is free of I/O (the clock is passed in), so the
// decisions are unit tested; kolorun_main.cc runs the loop.
#ifndef KOLO_LAUNCHER_ELASTIC_H_
#define KOLO_LAUNCHER_ELASTIC_H_

#include <chrono>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "launch_options.h"

namespace kolo {
namespace launcher {

// The status a program exits with after stopping on kolorun's request
// (kolo::torch::elastic::kStoppedExitCode; EX_TEMPFAIL in sysexits.h).
constexpr int kElasticStoppedExitCode = 75;
// kolorun's own exit statuses in elastic mode (besides the job's 0).
constexpr int kElasticGaveUpExitCode = 3;       // after --max-restarts
constexpr int kElasticTooFewSlotsExitCode = 4;  // --min-np not reachable

// Variables every rank gets in elastic mode.
inline constexpr char kElasticRestartVariable[] = "KOLO_ELASTIC_RESTART";
inline constexpr char kElasticStopFileVariable[] = "KOLO_ELASTIC_STOP_FILE";

using ElasticClock = std::chrono::steady_clock;

// Parses a discovery script's output: one "HOST" or "HOST:SLOTS" per line
// (Horovod's format); blank lines and lines starting with '#' are skipped; a
// host named twice gets the sum of its slots. Errors name the script and the
// line at fault.
absl::StatusOr<std::vector<HostSlots>> ParseDiscoveryOutput(
    absl::string_view text, absl::string_view script);

// One launch: its hosts (slots trimmed to the ranks placed there) and rank
// count.
struct ElasticLaunch {
  std::vector<HostSlots> hosts;
  int num_proc = 0;
};

class ElasticPolicy {
 public:
  // REQUIRES: 1 <= options.min_np <= options.max_np (max_np 0: no limit).
  explicit ElasticPolicy(const ElasticOptions& options);

  // `discovered` minus the hosts still cooling down at `now`, in order.
  std::vector<HostSlots> Usable(const std::vector<HostSlots>& discovered,
                                ElasticClock::time_point now) const;

  // The launch on `usable` hosts: min(max_np, their slots) ranks, filling
  // hosts in order; nullopt when fewer than min_np slots are usable.
  std::optional<ElasticLaunch> Plan(const std::vector<HostSlots>& usable) const;

  // Why the running launch should stop and start again on `usable`, or
  // nullopt: more ranks would fit (up to max_np), or a host in use is gone.
  std::optional<std::string> ResizeReason(
      const ElasticLaunch& running, const std::vector<HostSlots>& usable) const;

  // A failure on `host`: it is not used until now + host_cooldown. Without
  // a discovery script (a fixed job that only restarts) nothing cools down.
  void RecordFailure(const std::string& host, ElasticClock::time_point now);
  // Hosts cooling down at `now`.
  std::vector<std::string> CoolingDown(ElasticClock::time_point now) const;

  // Counts a failed launch; false once more than max_restarts have failed
  // (the job gives up).
  bool CountRestart();
  int restarts() const { return restarts_; }

 private:
  ElasticOptions options_;
  std::map<std::string, ElasticClock::time_point> cool_until_;
  int restarts_ = 0;
};

// The hosts to blame for a failed launch that ran `launch`: those of ranks
// killed by a signal other than SIGTERM/SIGINT (a crash or kill -9 there),
// else those of ranks that exited with an error on their own, else those of
// ranks that never announced their start (`started` holds the rank numbers
// that did); empty when nothing points at a host. `reports` are the rank
// monitors' reports (FindRankReport), in arrival order; ranks are placed as
// Plan places them.
std::set<std::string> FailedHosts(const ElasticLaunch& launch,
                                  const std::vector<std::string>& reports,
                                  const std::set<std::string>& started);

// "a:2,b:1" for log lines; "none" when empty.
std::string DescribeHosts(const std::vector<HostSlots>& hosts);

}  // namespace launcher
}  // namespace kolo

#endif  // KOLO_LAUNCHER_ELASTIC_H_
