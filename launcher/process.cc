// Process plumbing for kolorun (POSIX and Linux: prctl for parent death).
#include "process.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

extern char** environ;

namespace kolo {
namespace launcher {
namespace {

constexpr int kForwardedSignals[] = {SIGINT,  SIGTERM, SIGHUP,
                                     SIGQUIT, SIGUSR1, SIGUSR2};

// Read by the signal handler: plain lock-free atomics only.
std::atomic<pid_t> g_target{0};
std::atomic<bool> g_termination_requested{false};
std::atomic<int> g_termination_signal{0};
std::atomic<bool> g_forward_terminal_signals{true};
// Signals that arrived before the child existed; sent once it does.
std::atomic<unsigned> g_pending_mask{0};
// SetStopRequestFile's path; written once before the handler is installed.
char g_stop_file[4096] = {};

void ForwardSignal(int sig, siginfo_t* info, void*) {
  if (sig != SIGUSR1 && sig != SIGUSR2) {
    g_termination_requested = true;
    int none = 0;
    g_termination_signal.compare_exchange_strong(none, sig);
  }
  if (sig == SIGUSR1 && g_stop_file[0] != '\0') {
    // open() is async-signal-safe; errno is the interrupted code's.
    const int saved_errno = errno;
    const int fd = open(g_stop_file, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) close(fd);
    errno = saved_errno;
    return;
  }
  // si_code > 0 means the kernel raised it (a terminal); <= 0 means a
  // process sent it (SI_USER, SI_QUEUE, SI_TKILL).
  if (info != nullptr && info->si_code > 0 && !g_forward_terminal_signals) {
    return;
  }
  const pid_t target = g_target.load();
  if (target > 0) {
    kill(target, sig);
  } else {
    g_pending_mask.fetch_or(1u << sig);
  }
}

sigset_t ForwardedSet() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : kForwardedSignals) sigaddset(&set, sig);
  return set;
}

// Writes all of `text` to fd, giving up on errors (stderr may be gone).
void WriteAll(int fd, absl::string_view text) {
  while (!text.empty()) {
    const ssize_t n = write(fd, text.data(), text.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    text.remove_prefix(static_cast<size_t>(n));
  }
}

std::vector<char*> CStrings(const std::vector<std::string>& argv) {
  std::vector<char*> out;
  for (const std::string& arg : argv)
    out.push_back(const_cast<char*>(arg.c_str()));
  out.push_back(nullptr);
  return out;
}

}  // namespace

std::map<std::string, std::string> CurrentEnvironment() {
  std::map<std::string, std::string> env;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    absl::string_view kv(*entry);
    const size_t eq = kv.find('=');
    if (eq != absl::string_view::npos) {
      env.emplace(std::string(kv.substr(0, eq)),
                  std::string(kv.substr(eq + 1)));
    }
  }
  return env;
}

std::string FindOnPath(absl::string_view name, absl::string_view path_env) {
  for (absl::string_view dir : absl::StrSplit(path_env, ':')) {
    const std::string candidate =
        absl::StrCat(dir.empty() ? "." : dir, "/", name);
    struct stat st;
    if (stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        access(candidate.c_str(), X_OK) == 0) {
      if (candidate[0] == '/') return candidate;
      char cwd[4096];
      if (getcwd(cwd, sizeof(cwd)) != nullptr) {
        return absl::StrCat(cwd, "/", candidate);
      }
      return candidate;
    }
  }
  return "";
}

namespace {

// Runs argv; stdout (and, with merge_stderr, stderr) comes back in *output.
// Returns the wait status, or fails (DeadlineExceeded after killing it).
absl::StatusOr<int> RunForOutput(const std::vector<std::string>& argv,
                                 bool merge_stderr, int timeout_seconds,
                                 std::string* output) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", strerror(errno)));
  }
  std::vector<char*> args = CStrings(argv);
  const pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return absl::InternalError(absl::StrCat("fork: ", strerror(errno)));
  }
  if (pid == 0) {
    const int null_fd = open("/dev/null", O_RDONLY);
    if (null_fd >= 0) dup2(null_fd, 0);
    dup2(fds[1], 1);
    if (merge_stderr) dup2(fds[1], 2);
    execv(args[0], args.data());
    _exit(127);
  }
  close(fds[1]);
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(timeout_seconds);
  bool timed_out = false;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    const int ready = poll(&p, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) continue;
    char buffer[4096];
    const ssize_t n = read(fds[0], buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    output->append(buffer, static_cast<size_t>(n));
  }
  close(fds[0]);
  if (timed_out) kill(pid, SIGKILL);
  const int status = WaitForChild(pid);
  if (timed_out) {
    return absl::DeadlineExceededError(
        absl::StrCat("did not finish within ", timeout_seconds, " s"));
  }
  return status;
}

}  // namespace

absl::StatusOr<std::string> CaptureOutput(const std::vector<std::string>& argv,
                                          int timeout_seconds) {
  std::string output;
  absl::StatusOr<int> status =
      RunForOutput(argv, /*merge_stderr=*/true, timeout_seconds, &output);
  if (!status.ok()) {
    return absl::Status(
        status.status().code(),
        absl::StrCat("'", argv[0], " ", argv.size() > 1 ? argv[1] : "", "' ",
                     status.status().message()));
  }
  return output;
}

absl::StatusOr<int> RunQuietly(const std::vector<std::string>& argv,
                               int timeout_seconds) {
  std::string output;
  absl::StatusOr<int> status =
      RunForOutput(argv, /*merge_stderr=*/true, timeout_seconds, &output);
  if (!status.ok()) return status.status();
  return ExitCodeOf(*status);
}

absl::StatusOr<std::string> CaptureShellStdout(const std::string& command,
                                               int timeout_seconds) {
  std::string output;
  absl::StatusOr<int> status = RunForOutput({"/bin/sh", "-c", command},
                                            /*merge_stderr=*/false,
                                            timeout_seconds, &output);
  if (!status.ok()) {
    return absl::Status(status.status().code(),
                        absl::StrCat("'", command, "' ",
                                     status.status().message()));
  }
  if (WIFSIGNALED(*status)) {
    return absl::UnavailableError(absl::StrCat(
        "'", command, "' was killed by signal ", WTERMSIG(*status)));
  }
  if (ExitCodeOf(*status) != 0) {
    return absl::UnavailableError(absl::StrCat(
        "'", command, "' exited with status ", ExitCodeOf(*status)));
  }
  return output;
}

void InstallSignalForwarding(bool forward_terminal_signals) {
  g_forward_terminal_signals = forward_terminal_signals;
  struct sigaction action;
  memset(&action, 0, sizeof(action));
  action.sa_sigaction = ForwardSignal;
  action.sa_flags = SA_SIGINFO | SA_RESTART;
  sigemptyset(&action.sa_mask);
  for (int sig : kForwardedSignals) sigaction(sig, &action, nullptr);
}

void SetStopRequestFile(const std::string& path) {
  const size_t n = std::min(path.size(), sizeof(g_stop_file) - 1);
  std::memcpy(g_stop_file, path.data(), n);
  g_stop_file[n] = '\0';
}

bool TerminationRequested() { return g_termination_requested.load(); }

int TerminationSignal() { return g_termination_signal.load(); }

absl::StatusOr<pid_t> StartChild(const std::vector<std::string>& argv,
                                 bool search_path, int stderr_fd,
                                 int parent_death_signal,
                                 const std::string& exec_error_prefix,
                                 bool elastic_child) {
  std::vector<char*> args = CStrings(argv);
  // Blocked across fork so that no signal slips in between the fork and
  // the moment g_target names the child.
  sigset_t forwarded = ForwardedSet();
  sigset_t previous;
  sigprocmask(SIG_BLOCK, &forwarded, &previous);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    const int error = errno;
    sigprocmask(SIG_SETMASK, &previous, nullptr);
    return absl::InternalError(absl::StrCat("fork: ", strerror(error)));
  }
  if (pid == 0) {
    for (int sig : kForwardedSignals) signal(sig, SIG_DFL);
    sigprocmask(SIG_SETMASK, &previous, nullptr);
    prctl(PR_SET_PDEATHSIG, parent_death_signal);
    // The parent may have died before prctl took effect.
    if (getppid() != parent) _exit(128 + parent_death_signal);
    if (elastic_child) {
      setpgid(0, 0);
      // Ignored signals stay ignored across exec.
      signal(SIGUSR1, SIG_IGN);
    }
    if (stderr_fd >= 0) dup2(stderr_fd, 2);
    if (search_path) {
      execvp(args[0], args.data());
    } else {
      execv(args[0], args.data());
    }
    WriteAll(2, absl::StrCat(exec_error_prefix, "cannot run '", argv[0],
                             "': ", strerror(errno), "\n"));
    _exit(127);
  }
  g_target = pid;
  const unsigned pending = g_pending_mask.exchange(0);
  for (int sig : kForwardedSignals) {
    if (pending & (1u << sig)) kill(pid, sig);
  }
  sigprocmask(SIG_SETMASK, &previous, nullptr);
  return pid;
}

int WaitForChild(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    // Only ECHILD is possible here, which no caller provokes; never report
    // it as success.
    if (errno != EINTR) return 1 << 8;  // "exited with status 1"
  }
  return status;
}

int ExitCodeOf(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return 1;
}

}  // namespace launcher
}  // namespace kolo
