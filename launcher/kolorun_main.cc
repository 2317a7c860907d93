// kolorun: starts a kolo job through mpirun or srun (see command_line.h for
// the command line, launch_plan.h for the policy, job_runner.h for how the
// job is supervised).
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "command_line.h"
#include "elastic_runner.h"
#include "host_list.h"
#include "job_runner.h"
#include "launch_plan.h"
#include "machine_facts.h"
#include "memory_allocator.h"
#include "process.h"
#include "rank_monitor.h"

namespace kolo {
namespace launcher {
namespace {

// kolorun's own errors (command line, hosts, environment) exit with 2, as
// the issue asks, apart from the job's own statuses.
constexpr int kUsageError = 2;
constexpr int kVersionProbeTimeoutSeconds = 30;

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "kolorun: %s\n", std::string(status.message()).c_str());
  return kUsageError;
}

absl::Status LoadHostfile(LaunchOptions* options) {
  std::ifstream in(options->hostfile);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot read hostfile ",
                                            options->hostfile, ": ",
                                            std::strerror(errno)));
  }
  std::stringstream text;
  text << in.rdbuf();
  absl::StatusOr<std::vector<HostSlots>> hosts =
      ParseHostfile(text.str(), options->hostfile);
  if (!hosts.ok()) return hosts.status();
  options->host_slots = *std::move(hosts);
  return absl::OkStatus();
}

absl::StatusOr<Launcher> ChooseLauncher(const LaunchOptions& options,
                                        LaunchEnvironment* env) {
  if (ShouldUseSrun(options, *env)) {
    if (ShouldChooseSrunMpiPlugin(options, *env)) {
      absl::StatusOr<std::string> list = CaptureOutput(
          {env->srun_path, "--mpi=list"}, kVersionProbeTimeoutSeconds);
      env->srun_mpi_plugins =
          list.ok() ? ParseSrunMpiList(*list) : std::vector<std::string>{};
    }
    return Launcher::kSlurm;
  }
  if (env->mpirun_path.empty()) {
    return absl::NotFoundError(
        env->built_mpi == Launcher::kHydra
            ? "neither mpiexec.hydra, mpiexec.mpich nor mpirun found on PATH; "
              "install MPICH (Debian/Ubuntu: apt-get install mpich)"
            : "mpirun not found on PATH; install Open MPI (Debian/Ubuntu: "
              "apt-get install openmpi-bin)");
  }
  absl::StatusOr<std::string> version = CaptureOutput(
      {env->mpirun_path, "--version"}, kVersionProbeTimeoutSeconds);
  if (!version.ok()) return version.status();
  absl::StatusOr<Launcher> launcher = DetectMpiImplementation(*version);
  if (launcher.ok()) {
    if (std::optional<std::string> warning =
            LauncherMismatchWarning(*launcher, *env)) {
      std::fprintf(stderr, "kolorun: %s\n", warning->c_str());
    }
  }
  return launcher;
}

int Main(const std::vector<std::string>& args) {
  if (!args.empty() && args[0] == "--rank-monitor") {
    size_t start = 1;
    const bool announce_start =
        args.size() > start && args[start] == "--announce-start";
    if (announce_start) ++start;
    if (args.size() > start && args[start] == "--") ++start;
    if (start >= args.size()) {
      return Fail(absl::InvalidArgumentError(
          "--rank-monitor needs a command: kolorun --rank-monitor "
          "[--announce-start] -- COMMAND [ARGS...]"));
    }
    return RunRankMonitor(
        std::vector<std::string>(args.begin() + start, args.end()),
        announce_start);
  }

  absl::StatusOr<ParsedCommandLine> parsed = ParseCommandLine(args);
  if (!parsed.ok()) {
    std::fprintf(stderr, "kolorun: %s\nRun 'kolorun --help' for usage.\n",
                 std::string(parsed.status().message()).c_str());
    return kUsageError;
  }
  if (parsed->help) {
    std::fputs(parsed->help_text.c_str(), stdout);
    return 0;
  }
  LaunchOptions& options = parsed->options;
  if (!options.hostfile.empty()) {
    absl::Status loaded = LoadHostfile(&options);
    if (!loaded.ok()) return Fail(loaded);
  }
  LaunchEnvironment env = DetectLaunchEnvironment();
  if (!options.rank_monitor) {
    // No monitor on the ranks to apply it there: resolve it here.
    const std::string choice = options.memory_allocator.value_or(
        env.env.count(kMemoryAllocatorVariable) > 0
            ? env.env.at(kMemoryAllocatorVariable)
            : "auto");
    absl::StatusOr<AllocatorSetup> setup =
        PlanMemoryAllocator(choice, env.env, RegularFileExists);
    if (!setup.ok()) return Fail(setup.status());
    env.allocator_env = setup->set_env;
  }
  absl::StatusOr<Launcher> launcher = ChooseLauncher(options, &env);
  if (!launcher.ok()) return Fail(launcher.status());
  if (options.elastic && !options.dry_run) {
    return RunElasticJob(options, *launcher, env);
  }
  if (options.elastic && options.num_proc == 0) {
    return Fail(absl::InvalidArgumentError(
        "--dry-run with --host-discovery-script needs -np (the hosts are "
        "discovered only when the job runs)"));
  }
  absl::StatusOr<LaunchPlan> plan = BuildLaunchPlan(options, *launcher, env);
  if (!plan.ok()) return Fail(plan.status());

  if (options.verbose) {
    for (const std::string& note : plan->notes) {
      std::fprintf(stderr, "kolorun: %s\n", note.c_str());
    }
  }
  const std::string command_line = FormatCommandLine(plan->argv);
  if (options.dry_run) {
    std::printf("%s\n", command_line.c_str());
    return 0;
  }
  if (options.verbose) {
    std::fprintf(stderr, "kolorun: running %s\n", command_line.c_str());
  }
  for (const std::string& dir : plan->directories_to_create) {
    std::error_code error;
    std::filesystem::create_directories(dir, error);
    if (error) {
      return Fail(absl::PermissionDeniedError(absl::StrCat(
          "--output-filename: cannot create ", dir, ": ", error.message())));
    }
  }
  std::fflush(stdout);
  std::fflush(stderr);
  const std::string& path = plan->argv.front();
  return RunJob(*plan, path.substr(path.rfind('/') + 1));
}

}  // namespace
}  // namespace launcher
}  // namespace kolo

int main(int argc, char** argv) {
  return kolo::launcher::Main(std::vector<std::string>(argv + 1, argv + argc));
}
