// kolorun's per-rank monitor.
#include "rank_monitor.h"

#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <thread>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "elastic.h"
#include "memory_allocator.h"
#include "process.h"

namespace kolo {
namespace launcher {
namespace {

constexpr absl::string_view kReportMarker = "kolorun: rank ";
constexpr absl::string_view kStartMarker = "kolorun-started: rank ";
constexpr absl::string_view kExitMarker = "kolorun-exited: rank ";

std::string HostName() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) return "?";
  return name;
}

// Dies of `sig` like the child did, so mpirun reports a signal death (and
// not an exit status). The child already dumped core if it was going to.
[[noreturn]] void DieOfSignal(int sig) {
  const rlimit no_core = {0, 0};
  setrlimit(RLIMIT_CORE, &no_core);
  signal(sig, SIG_DFL);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, sig);
  sigprocmask(SIG_UNBLOCK, &set, nullptr);
  raise(sig);
  _exit(128 + sig);
}

// Under srun the report goes through slurmstepd's I/O forwarding, which may
// drop what a task wrote just before it ended once the step is being
// cancelled (--kill-on-bad-exit): the rank's SIGKILL reached kolorun as
// "task 1: Killed" without the report naming it. The rank is already gone;
// giving slurmstepd a moment to forward the line costs that much detection
// time only.
void LetSlurmForwardTheReport() {
  if (std::getenv("SLURM_STEP_ID") == nullptr) return;
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
}

}  // namespace

std::string RankFromEnvironment(const std::map<std::string, std::string>& env) {
  for (const char* name :
       {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "SLURM_PROCID"}) {
    auto it = env.find(name);
    if (it != env.end() && !it->second.empty()) return it->second;
  }
  return "?";
}

std::string RankReportPrefix(absl::string_view rank, absl::string_view host) {
  return absl::StrCat(kReportMarker, rank, " on host ", host, ": ");
}

std::string FormatRankExit(absl::string_view rank, absl::string_view host,
                           int exit_status) {
  return absl::StrCat(kReportMarker, rank, " on host ", host,
                      " exited with status ", exit_status);
}

std::string FormatRankSignal(absl::string_view rank, absl::string_view host,
                             int signal_number) {
  return absl::StrCat(kReportMarker, rank, " on host ", host,
                      " was killed by signal ", signal_number, " (",
                      strsignal(signal_number), ")");
}

std::string FormatStartAnnouncement(absl::string_view rank,
                                    absl::string_view host) {
  return absl::StrCat(kStartMarker, rank, " on host ", host);
}

std::optional<std::string> FindStartAnnouncement(absl::string_view line) {
  const size_t at = line.find(kStartMarker);
  if (at == absl::string_view::npos) return std::nullopt;
  absl::string_view rest = line.substr(at + kStartMarker.size());
  return std::string(rest.substr(0, rest.find(' ')));
}

std::string FormatExitAnnouncement(absl::string_view rank, int exit_code) {
  return absl::StrCat(kExitMarker, rank, " status ", exit_code);
}

std::optional<std::pair<std::string, int>> FindExitAnnouncement(
    absl::string_view line) {
  const size_t at = line.find(kExitMarker);
  if (at == absl::string_view::npos) return std::nullopt;
  absl::string_view rest = line.substr(at + kExitMarker.size());
  const size_t space = rest.find(' ');
  if (space == absl::string_view::npos) return std::nullopt;
  absl::string_view code = rest.substr(space + 1);
  if (!absl::ConsumePrefix(&code, "status ")) return std::nullopt;
  int value = 0;
  if (!absl::SimpleAtoi(absl::StripTrailingAsciiWhitespace(code), &value)) {
    return std::nullopt;
  }
  return std::make_pair(std::string(rest.substr(0, space)), value);
}

std::optional<std::string> FindRankReport(absl::string_view line) {
  const size_t at = line.find(kReportMarker);
  if (at == absl::string_view::npos) return std::nullopt;
  absl::string_view report =
      line.substr(at + absl::string_view("kolorun: ").size());
  return std::string(absl::StripTrailingAsciiWhitespace(report));
}

std::optional<int> RankReportExitCode(absl::string_view report) {
  for (const auto& [marker, offset] :
       {std::pair<absl::string_view, int>{" exited with status ", 0},
        {" was killed by signal ", 128}}) {
    const size_t at = report.find(marker);
    if (at == absl::string_view::npos) continue;
    absl::string_view number = report.substr(at + marker.size());
    number = number.substr(0, number.find(' '));
    int value = 0;
    if (absl::SimpleAtoi(number, &value)) return offset + value;
  }
  return std::nullopt;
}

int RunRankMonitor(const std::vector<std::string>& command,
                   bool announce_start) {
  const std::string rank = RankFromEnvironment(CurrentEnvironment());
  const std::string host = HostName();
  // The memory allocator the rank runs with (kolorun --memory-allocator),
  // resolved on this host: the library may be missing on this one only.
  std::map<std::string, std::string> env = CurrentEnvironment();
  auto choice = env.find(kMemoryAllocatorVariable);
  absl::StatusOr<AllocatorSetup> allocator = PlanMemoryAllocator(
      choice == env.end() ? "auto" : choice->second, env, RegularFileExists);
  if (!allocator.ok()) {
    std::fprintf(stderr, "%s%s=%s: %s\n", RankReportPrefix(rank, host).c_str(),
                 kMemoryAllocatorVariable,
                 choice == env.end() ? "auto" : choice->second.c_str(),
                 std::string(allocator.status().message()).c_str());
    return 1;
  }
  for (const auto& [name, value] : allocator->set_env) {
    setenv(name.c_str(), value.c_str(), /*overwrite=*/1);
  }
  // Elastic mode (elastic.h): kolorun's stop request arrives as SIGUSR1 and
  // becomes this host's stop file, which the program polls.
  auto stop_file = env.find("KOLO_ELASTIC_STOP_FILE");
  const bool elastic =
      stop_file != env.end() && !stop_file->second.empty();
  if (elastic) SetStopRequestFile(stop_file->second);
  InstallSignalForwarding(/*forward_terminal_signals=*/true);
  // SIGKILL: if the monitor is killed outright (mpirun's last resort), the
  // rank must not live on unsupervised.
  absl::StatusOr<pid_t> child =
      StartChild(command, /*search_path=*/true, /*stderr_fd=*/-1, SIGKILL,
                 RankReportPrefix(rank, host),
                 /*elastic_child=*/elastic);
  if (!child.ok()) {
    std::fprintf(stderr, "%s%s\n", RankReportPrefix(rank, host).c_str(),
                 std::string(child.status().message()).c_str());
    return 127;
  }
  if (announce_start) {
    std::fprintf(stderr, "%s\n", FormatStartAnnouncement(rank, host).c_str());
    std::fflush(stderr);
  }
  const int status = WaitForChild(*child);
  // A rank that dies because the job is being stopped is not the cause of
  // the failure; reporting it would bury the rank that was. Nor is one that
  // stopped because kolorun asked it to.
  bool report = !TerminationRequested();
  if (elastic) {
    // (Status 75 is the program's answer to a stop request; another rank
    // of this host may already have removed the file.)
    if (ExitCodeOf(status) == kElasticStoppedExitCode) report = false;
    // The stop request is for this launch only; every rank has agreed on it
    // (the check is collective) before any exits.
    unlink(stop_file->second.c_str());
  }
  if (announce_start) {
    std::fprintf(stderr, "%s\n",
                 FormatExitAnnouncement(rank, ExitCodeOf(status)).c_str());
    std::fflush(stderr);
  }
  if (WIFSIGNALED(status)) {
    if (report) {
      std::fprintf(stderr, "%s\n",
                   FormatRankSignal(rank, host, WTERMSIG(status)).c_str());
      std::fflush(stderr);
      LetSlurmForwardTheReport();
    }
    DieOfSignal(WTERMSIG(status));
  }
  const int code = ExitCodeOf(status);
  if (code != 0 && report) {
    std::fprintf(stderr, "%s\n", FormatRankExit(rank, host, code).c_str());
    std::fflush(stderr);
    LetSlurmForwardTheReport();
  }
  return code;
}

}  // namespace launcher
}  // namespace kolo
