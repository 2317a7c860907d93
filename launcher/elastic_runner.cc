// kolorun's elastic loop (see elastic_runner.h).
#include "elastic_runner.h"

#include <poll.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <cstdio>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "elastic.h"
#include "host_list.h"
#include "job_runner.h"
#include "process.h"

namespace kolo {
namespace launcher {
namespace {

constexpr int kUsageError = 2;
// How long one run of the discovery script may take.
constexpr int kDiscoveryTimeoutSeconds = 30;
// Ranks must start within this long unless --start-timeout says otherwise:
// elastic mode needs the start announcements to tell which host never ran
// its ranks when a launch fails without a rank's report.
constexpr int kDefaultElasticStartTimeoutSeconds = 60;
// How long running `true` on one host may take.
constexpr int kHostProbeTimeoutSeconds = 60;

// "kolorun: 2026-12-07 07:01:02.123 elastic: MESSAGE" on stderr.
void Log(const std::string& message) {
  timeval now;
  gettimeofday(&now, nullptr);
  tm local;
  localtime_r(&now.tv_sec, &local);
  char stamp[32];
  strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", &local);
  std::fprintf(stderr, "kolorun: %s.%03ld elastic: %s\n", stamp,
               static_cast<long>(now.tv_usec / 1000), message.c_str());
  std::fflush(stderr);
}

absl::StatusOr<std::vector<HostSlots>> Discover(const std::string& script) {
  absl::StatusOr<std::string> output =
      CaptureShellStdout(script, kDiscoveryTimeoutSeconds);
  if (!output.ok()) {
    return absl::Status(
        output.status().code(),
        absl::StrCat("--host-discovery-script ", output.status().message()));
  }
  return ParseDiscoveryOutput(*output, script);
}

// Sleeps up to `seconds`, waking early when kolorun is asked to stop.
void SleepUnlessStopped(double seconds) {
  const auto until =
      ElasticClock::now() +
      std::chrono::duration_cast<ElasticClock::duration>(
          std::chrono::duration<double>(seconds));
  while (!TerminationRequested() && ElasticClock::now() < until) {
    poll(nullptr, 0, 50);
  }
}

std::string Plural(int n, absl::string_view word) {
  return absl::StrCat(n, " ", word,
                      n == 1 ? "" : (absl::EndsWith(word, "h") ? "es" : "s"));
}

// After a launch in which no rank started and none reported (the launcher
// could not start its daemons, e.g. on a host that cannot be reached): runs
// `true` on each host alone, through the same launcher and arguments, and
// returns the hosts where that fails.
std::set<std::string> ProbeHosts(const LaunchOptions& options,
                                 Launcher launcher,
                                 const LaunchEnvironment& env,
                                 const std::vector<HostSlots>& hosts) {
  Log("no rank started and none reported: trying each host alone");
  std::set<std::string> failed;
  for (const HostSlots& host : hosts) {
    LaunchOptions probe = options;
    probe.num_proc = 1;
    probe.host_slots = {HostSlots{host.host, 1}};
    probe.hosts_flag = host.host;
    probe.command = {"true"};
    probe.start_timeout_seconds.reset();
    absl::StatusOr<LaunchPlan> plan = BuildLaunchPlan(probe, launcher, env);
    if (!plan.ok()) continue;
    absl::StatusOr<int> code =
        RunQuietly(plan->argv, kHostProbeTimeoutSeconds);
    if (!code.ok() || *code != 0) {
      Log(absl::StrCat("host ", host.host, " does not run a rank: ",
                       code.ok() ? absl::StrCat("status ", *code)
                                 : std::string(code.status().message())));
      failed.insert(host.host);
    }
  }
  return failed;
}

// How the ranks of a launch ended, by their monitors' exit announcements.
struct RankStatuses {
  bool all_zero = false;     // every rank exited 0
  bool all_stopped = false;  // every rank exited kElasticStoppedExitCode
  std::string description;   // which ranks did not exit 0, for the log
};

RankStatuses Summarize(const std::map<std::string, int>& exits,
                       int num_ranks) {
  RankStatuses result;
  int zero = 0, stopped = 0;
  std::vector<std::string> others;
  for (int rank = 0; rank < num_ranks; ++rank) {
    auto it = exits.find(absl::StrCat(rank));
    if (it == exits.end()) {
      others.push_back(absl::StrCat("rank ", rank, " never reported"));
    } else if (it->second == 0) {
      ++zero;
    } else {
      if (it->second == kElasticStoppedExitCode) ++stopped;
      others.push_back(absl::StrCat("rank ", rank, " exited ", it->second));
    }
  }
  result.all_zero = zero == num_ranks;
  result.all_stopped = stopped == num_ranks;
  constexpr size_t kMaxListed = 8;
  if (others.size() > kMaxListed) {
    others.resize(kMaxListed);
    others.push_back("...");
  }
  result.description = absl::StrJoin(others, ", ");
  return result;
}

// Inside a Slurm allocation (srun launches the ranks): a discovered host
// must be one of the allocation's nodes, since srun refuses a step on any
// other. Set up by ForSlurmAllocation; Filter leaves the others out and
// logs each such host once.
class AllocationNodes {
 public:
  // The allocation's node names (`scontrol show hostnames` of
  // SLURM_JOB_NODELIST), or an error naming what failed.
  static absl::StatusOr<AllocationNodes> ForSlurmAllocation(
      const LaunchEnvironment& env) {
    auto job = env.env.find("SLURM_JOB_ID");
    auto list = env.env.find("SLURM_JOB_NODELIST");
    if (job == env.env.end() || list == env.env.end() ||
        list->second.empty()) {
      return absl::FailedPreconditionError(
          "--host-discovery-script inside a Slurm allocation needs "
          "SLURM_JOB_ID and SLURM_JOB_NODELIST (the allocation's nodes)");
    }
    absl::StatusOr<std::string> names = CaptureShellStdout(
        "scontrol show hostnames \"$SLURM_JOB_NODELIST\"",
        kDiscoveryTimeoutSeconds);
    if (!names.ok()) {
      return absl::Status(
          names.status().code(),
          absl::StrCat("cannot list the nodes of Slurm allocation ",
                       job->second, " (", list->second,
                       "): ", names.status().message()));
    }
    AllocationNodes nodes;
    nodes.job_ = job->second;
    for (absl::string_view line : absl::StrSplit(*names, '\n')) {
      line = absl::StripAsciiWhitespace(line);
      if (!line.empty()) nodes.names_.emplace(line);
    }
    if (nodes.names_.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "scontrol listed no nodes for Slurm allocation ", job->second,
          " (SLURM_JOB_NODELIST=", list->second, ")"));
    }
    return nodes;
  }

  std::vector<HostSlots> Filter(const std::vector<HostSlots>& discovered) {
    std::vector<HostSlots> kept;
    for (const HostSlots& host : discovered) {
      if (names_.count(host.host) > 0) {
        kept.push_back(host);
      } else if (reported_.insert(host.host).second) {
        Log(absl::StrCat("host ", host.host,
                         " is not a node of Slurm allocation ", job_, " (",
                         absl::StrJoin(names_, ","), "): left out"));
      }
    }
    return kept;
  }

  std::string Describe() const {
    return absl::StrCat("Slurm allocation ", job_, ", nodes ",
                        absl::StrJoin(names_, ","));
  }

 private:
  std::string job_;
  std::set<std::string> names_;
  std::set<std::string> reported_;
};

}  // namespace

int RunElasticJob(const LaunchOptions& options, Launcher launcher,
                  const LaunchEnvironment& env) {
  const ElasticOptions& e = *options.elastic;
  const bool discovery = !e.discovery_script.empty();
  ElasticPolicy policy(e);
  std::optional<AllocationNodes> allocation;
  if (discovery && launcher == Launcher::kSlurm) {
    absl::StatusOr<AllocationNodes> nodes =
        AllocationNodes::ForSlurmAllocation(env);
    if (!nodes.ok()) {
      std::fprintf(stderr, "kolorun: %s\n",
                   std::string(nodes.status().message()).c_str());
      return kUsageError;
    }
    allocation = *std::move(nodes);
  }
  // What discovery reports, less the hosts outside the Slurm allocation.
  auto discover = [&]() -> absl::StatusOr<std::vector<HostSlots>> {
    absl::StatusOr<std::vector<HostSlots>> found =
        Discover(e.discovery_script);
    if (found.ok() && allocation) return allocation->Filter(*found);
    return found;
  };
  InstallSignalForwarding(/*forward_terminal_signals=*/false);
  const std::string launcher_name(LauncherName(launcher));
  Log(absl::StrCat(
      discovery ? absl::StrCat("hosts from ", e.discovery_script)
                : absl::StrCat("fixed hosts, ", Plural(options.num_proc, "rank")),
      "; ranks ", e.min_np, "..", e.max_np > 0 ? absl::StrCat(e.max_np) : "any",
      ", up to ", Plural(e.max_restarts, "restart"),
      discovery ? absl::StrCat(", host cool-down ", e.host_cooldown_seconds,
                               " s, discovery every ",
                               e.discovery_interval_seconds, " s")
                : ""));
  if (allocation) {
    Log(absl::StrCat("inside ", allocation->Describe(),
                     ": srun runs each launch on the discovered nodes"));
  }
  for (int launch_index = 0;; ++launch_index) {
    // ---- where to run: wait (bounded) for --min-np usable slots ----------
    ElasticLaunch launch{options.host_slots, options.num_proc};
    if (discovery) {
      const auto wait_start = ElasticClock::now();
      std::string last_wait_message;
      for (;;) {
        if (TerminationRequested()) return 128 + TerminationSignal();
        absl::StatusOr<std::vector<HostSlots>> found = discover();
        if (!found.ok()) {
          if (launch_index == 0) {
            std::fprintf(stderr, "kolorun: %s\n",
                         std::string(found.status().message()).c_str());
            return kUsageError;
          }
          // Later, a failing script is treated as "no hosts for now".
          Log(absl::StrCat("discovery failed: ", found.status().message()));
          found = std::vector<HostSlots>{};
        }
        const auto now = ElasticClock::now();
        const std::vector<HostSlots> usable = policy.Usable(*found, now);
        if (std::optional<ElasticLaunch> planned = policy.Plan(usable)) {
          launch = *std::move(planned);
          break;
        }
        const double waited =
            std::chrono::duration<double>(now - wait_start).count();
        std::vector<std::string> cooling = policy.CoolingDown(now);
        const std::string message = absl::StrCat(
            "waiting for ", Plural(e.min_np, "slot"), " (--min-np): usable ",
            DescribeHosts(usable),
            cooling.empty()
                ? ""
                : absl::StrCat("; cooling down: ", absl::StrJoin(cooling, ",")));
        if (message != last_wait_message) {
          Log(message);
          last_wait_message = message;
        }
        if (waited >= e.elastic_timeout_seconds) {
          Log(absl::StrCat("giving up: fewer than ", Plural(e.min_np, "slot"),
                           " for ", e.elastic_timeout_seconds,
                           " s (--elastic-timeout)"));
          return kElasticTooFewSlotsExitCode;
        }
        SleepUnlessStopped(std::min(e.discovery_interval_seconds,
                                    e.elastic_timeout_seconds - waited));
      }
    }

    // ---- the launch ------------------------------------------------------
    LaunchOptions run = options;
    run.num_proc = launch.num_proc;
    if (discovery) {
      run.host_slots = launch.hosts;
      run.hosts_flag = FormatHostList(launch.hosts);
    }
    const std::string stop_file = absl::StrCat(
        "/tmp/kolo-elastic-", getpid(), "-", launch_index, ".stop");
    run.env_exports.push_back(
        absl::StrCat(kElasticRestartVariable, "=", launch_index));
    run.env_exports.push_back(
        absl::StrCat(kElasticStopFileVariable, "=", stop_file));
    if (!run.start_timeout_seconds) {
      run.start_timeout_seconds = kDefaultElasticStartTimeoutSeconds;
    }
    absl::StatusOr<LaunchPlan> plan = BuildLaunchPlan(run, launcher, env);
    if (!plan.ok()) {
      std::fprintf(stderr, "kolorun: %s\n",
                   std::string(plan.status().message()).c_str());
      return kUsageError;
    }
    Log(absl::StrCat("launch ", launch_index + 1, ": ",
                     Plural(launch.num_proc, "rank"), " on ",
                     discovery ? DescribeHosts(launch.hosts)
                               : (options.host_slots.empty()
                                      ? std::string("the default hosts")
                                      : DescribeHosts(options.host_slots)),
                     " (", kElasticRestartVariable, "=", launch_index, ")"));
    if (options.verbose) {
      Log(absl::StrCat("running ", FormatCommandLine(plan->argv)));
    }

    JobHooks hooks;
    auto next_discovery =
        ElasticClock::now() +
        std::chrono::duration_cast<ElasticClock::duration>(
            std::chrono::duration<double>(e.discovery_interval_seconds));
    bool discovery_failing = false;
    if (discovery) {
      hooks.poll = [&]() {
        const auto now = ElasticClock::now();
        if (now < next_discovery) return false;
        absl::StatusOr<std::vector<HostSlots>> found = discover();
        next_discovery =
            ElasticClock::now() +
            std::chrono::duration_cast<ElasticClock::duration>(
                std::chrono::duration<double>(e.discovery_interval_seconds));
        if (!found.ok()) {
          // The job keeps running on what it has.
          if (!discovery_failing) {
            Log(absl::StrCat("discovery failed while the job runs (keeping "
                             "it as it is): ",
                             found.status().message()));
          }
          discovery_failing = true;
          return false;
        }
        discovery_failing = false;
        std::optional<std::string> reason =
            policy.ResizeReason(launch, policy.Usable(*found, now));
        if (!reason) return false;
        Log(absl::StrCat(*reason, ": asking the job to stop at its next "
                                  "step boundary (SIGUSR1 to ",
                         launcher_name, ")"));
        return true;
      };
    }
    std::fflush(stdout);
    const auto launch_start = ElasticClock::now();
    int code = RunJob(*plan, launcher_name, &hooks);
    unlink(stop_file.c_str());
    const double ran =
        std::chrono::duration<double>(ElasticClock::now() - launch_start)
            .count();
    if (TerminationRequested()) {
      Log(absl::StrCat("kolorun was stopped by signal ", TerminationSignal(),
                       "; not relaunching"));
      return code != 0 ? code : 128 + TerminationSignal();
    }
    // The ranks' own statuses decide (the launcher's may hide them: Hydra
    // exits 0 after passing on SIGUSR1).
    const RankStatuses statuses = Summarize(hooks.exits, launch.num_proc);
    if (code == 0 && statuses.all_zero) {
      Log(absl::StrCat("job finished after ", Plural(launch_index + 1, "launch"),
                       " (", Plural(policy.restarts(), "restart"),
                       " after failures)"));
      return 0;
    }
    if (hooks.stop_sent && statuses.all_stopped) {
      Log(absl::StrCat("the job stopped on request after ", ran,
                       " s; relaunching"));
      continue;
    }
    if (code == 0) {
      Log(absl::StrCat(launcher_name, " exited with status 0, but ",
                       statuses.description, "; counting it as a failure"));
      code = 1;
    }

    // ---- a failure -------------------------------------------------------
    std::set<std::string> failed =
        FailedHosts(launch, hooks.reports, hooks.started);
    if (failed.empty() && hooks.started.empty() && discovery &&
        launch.hosts.size() > 1) {
      failed = ProbeHosts(options, launcher, env, launch.hosts);
    }
    Log(absl::StrCat("failure seen: launch ", launch_index + 1,
                     " ended with status ", code, " after ", ran, " s",
                     hooks.reports.empty()
                         ? std::string("; no rank reported a failure")
                         : absl::StrCat("; ranks reported: ",
                                        absl::StrJoin(hooks.reports, " | ")),
                     failed.empty()
                         ? std::string()
                         : absl::StrCat("; host",
                                        failed.size() == 1 ? " " : "s ",
                                        absl::StrJoin(failed, ","),
                                        " at fault")));
    if (e.resizable()) {
      for (const std::string& host : failed) {
        policy.RecordFailure(host, ElasticClock::now());
        Log(absl::StrCat("host ", host, " removed for ",
                         e.host_cooldown_seconds, " s (--host-cooldown)"));
      }
    }
    if (!policy.CountRestart()) {
      Log(absl::StrCat("giving up after ", Plural(e.max_restarts, "restart"),
                       " (--max-restarts); last status ", code));
      return kElasticGaveUpExitCode;
    }
    Log(absl::StrCat("restart ", policy.restarts(), " of ", e.max_restarts));
  }
}

}  // namespace launcher
}  // namespace kolo
