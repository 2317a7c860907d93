// Process plumbing shared by kolorun's launcher side and its rank monitor:
// PATH lookup, running a short command for its output, and forwarding
// signals to a child process.
//
// Signal forwarding is process-wide state (signal handlers are), so a
// process forwards to at most one child. Not thread-safe: call from the main
// thread.
#ifndef KOLO_LAUNCHER_PROCESS_H_
#define KOLO_LAUNCHER_PROCESS_H_

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kolo {
namespace launcher {

// The absolute path of `name` in the directories of `path_env` (a PATH
// value), or "" when no executable of that name is there.
std::string FindOnPath(absl::string_view name, absl::string_view path_env);

// This process's environment as a map.
std::map<std::string, std::string> CurrentEnvironment();

// Runs argv (argv[0] a path) with stdin from /dev/null and returns what it
// wrote to stdout and stderr. Kills it and fails with DeadlineExceeded after
// timeout_seconds.
absl::StatusOr<std::string> CaptureOutput(const std::vector<std::string>& argv,
                                          int timeout_seconds);

// Runs argv (argv[0] a path) with stdin from /dev/null and its output
// discarded; returns its exit code (ExitCodeOf), or fails when it runs past
// timeout_seconds (then it is killed).
absl::StatusOr<int> RunQuietly(const std::vector<std::string>& argv,
                               int timeout_seconds);

// Runs `/bin/sh -c command` with stdin from /dev/null and returns its
// stdout; its stderr goes to ours. Fails naming the command when it exits
// with a non-zero status, dies of a signal or runs past timeout_seconds
// (then it is killed).
absl::StatusOr<std::string> CaptureShellStdout(const std::string& command,
                                               int timeout_seconds);

// Catches SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 and passes
// them on to the child named by StartChild.
//
// When forward_terminal_signals is false, signals the kernel raised for a
// terminal (Ctrl-C, hang-up) are not forwarded: the child shares our
// foreground process group and already received them, and Open MPI's mpirun
// reads a second SIGINT as "kill everything now". Signals sent by a process
// (kill, a batch system, timeout) are always forwarded.
void InstallSignalForwarding(bool forward_terminal_signals);

// From now on a SIGUSR1 sent by a process (kolorun's stop request, passed
// on by the launcher) creates the file at `path` instead of being
// forwarded; the program polls for it (kolo::torch::elastic). Call before
// InstallSignalForwarding.
void SetStopRequestFile(const std::string& path);

// True once SIGINT, SIGTERM, SIGHUP or SIGQUIT arrived: the process is being
// asked to stop.
bool TerminationRequested();

// The first of those signals that arrived, or 0.
int TerminationSignal();

// Forks and execs argv as the forwarding target; execvp when search_path,
// else execv. In the child: stderr goes to stderr_fd when >= 0, signal
// dispositions are reset, and parent_death_signal is delivered to it if this
// process dies (so nothing outlives its launcher). If exec fails the child
// prints exec_error_prefix and the reason to stderr and exits 127. With
// elastic_child (kolorun's elastic mode, elastic.h) the child leads a
// process group of its own, so that signals a launcher sends to ours (Open
// MPI's daemons signal the whole group) reach it only through the
// forwarding, and starts with SIGUSR1 ignored: Slurm's slurmstepd signals
// every process of a step whatever its group, and kolorun's stop request
// (SIGUSR1) must reach the program only as the stop file, not kill it. A
// program that installs its own SIGUSR1 handler still gets the signal.
// REQUIRES: InstallSignalForwarding was called.
absl::StatusOr<pid_t> StartChild(const std::vector<std::string>& argv,
                                 bool search_path, int stderr_fd,
                                 int parent_death_signal,
                                 const std::string& exec_error_prefix,
                                 bool elastic_child = false);

// Waits for `pid` (retrying when a signal interrupts) and returns its wait
// status.
int WaitForChild(pid_t pid);

// A shell-style exit code for a wait status: the exit status, or 128+N for
// death by signal N.
int ExitCodeOf(int wait_status);

}  // namespace launcher
}  // namespace kolo

#endif  // KOLO_LAUNCHER_PROCESS_H_
