// Command construction for kolorun: options + machine facts -> argv.
#include "launch_plan.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <set>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "host_list.h"

namespace kolo {
namespace launcher {
namespace {

// The runtime's default KOLO_PEER_TIMEOUT_SECONDS, and the shortest time
// kolorun lets a launcher leave ranks running after one failed.
constexpr double kDefaultPeerTimeoutSeconds = 5;
constexpr double kMinStopAfterRankFailureSeconds = 3;

constexpr int64_t kBytesPerMiB = int64_t{1} << 20;

bool IsValidEnvName(absl::string_view name) {
  if (name.empty() || absl::ascii_isdigit(static_cast<unsigned char>(name[0])))
    return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_')
      return false;
  }
  return true;
}

// Where the ranks land once each host's slots are filled in order (Open
// MPI's --map-by slot, Hydra's host:n).
struct Placement {
  int local_ranks = 0;
  int total_slots = 0;
};

absl::StatusOr<Placement> PlaceRanks(const LaunchOptions& options,
                                     const LaunchEnvironment& env) {
  Placement placement;
  if (options.host_slots.empty()) {
    placement.local_ranks = options.num_proc;
    placement.total_slots = env.local_cores;
    return placement;
  }
  bool all_local = true;
  int remaining = options.num_proc;
  for (const HostSlots& host : options.host_slots) {
    const bool local = IsLocalHost(host.host, env);
    all_local = all_local && local;
    placement.total_slots += host.slots;
    const int here = std::min(remaining, host.slots);
    remaining -= here;
    if (local) placement.local_ranks += here;
  }
  if (remaining > 0) {
    // Open MPI would wrap the extra ranks round the hosts; on a remote host
    // that silently oversubscribes a machine kolorun knows nothing about.
    if (!all_local) {
      return absl::InvalidArgumentError(absl::StrCat(
          "-np ", options.num_proc, " is more ranks than the ",
          placement.total_slots, " slots of ",
          options.hostfile.empty() ? "-H " : "hostfile ",
          options.hostfile.empty() ? FormatHostList(options.host_slots)
                                   : options.hostfile,
          "; kolorun oversubscribes only the local host: add slots or hosts, "
          "or lower -np"));
    }
    placement.local_ranks = options.num_proc;
  }
  return placement;
}

// The environment variables behind kolorun's runtime flags, in a fixed
// order (so commands are reproducible).
std::vector<EnvExport> RuntimeSettingExports(const LaunchOptions& options) {
  std::vector<EnvExport> exports;
  auto add = [&exports](const char* name, std::string value) {
    exports.push_back(EnvExport{name, std::move(value)});
  };
  if (options.fusion_threshold_mb)
    add("KOLO_FUSION_THRESHOLD",
        absl::StrCat(*options.fusion_threshold_mb * kBytesPerMiB));
  if (options.cycle_time_ms) add("KOLO_CYCLE_TIME_MS", *options.cycle_time_ms);
  if (options.cache_capacity)
    add("KOLO_CACHE_CAPACITY", absl::StrCat(*options.cache_capacity));
  if (options.timeline_filename)
    add("KOLO_TIMELINE", *options.timeline_filename);
  if (options.stall_check_seconds)
    add("KOLO_STALL_CHECK_TIME_SECONDS",
        absl::StrCat(*options.stall_check_seconds));
  if (options.stall_shutdown_seconds)
    add("KOLO_STALL_SHUTDOWN_TIME_SECONDS",
        absl::StrCat(*options.stall_shutdown_seconds));
  if (options.cpu_operations)
    add("KOLO_CPU_OPERATIONS", *options.cpu_operations);
  if (options.gpu_operations)
    add("KOLO_GPU_OPERATIONS", *options.gpu_operations);
  if (options.log_level) add("KOLO_LOG_LEVEL", *options.log_level);
  if (options.memory_allocator)
    add("KOLO_MEMORY_ALLOCATOR", *options.memory_allocator);
  if (options.autotune) add("KOLO_AUTOTUNE", "1");
  return exports;
}

// Which flag set a KOLO_* variable, for conflict messages.
std::string FlagForVariable(absl::string_view name) {
  static const std::pair<const char*, const char*> kFlags[] = {
      {"KOLO_FUSION_THRESHOLD", "--fusion-threshold-mb"},
      {"KOLO_CYCLE_TIME_MS", "--cycle-time-ms"},
      {"KOLO_CACHE_CAPACITY", "--cache-capacity"},
      {"KOLO_TIMELINE", "--timeline-filename"},
      {"KOLO_STALL_CHECK_TIME_SECONDS", "--stall-check-seconds"},
      {"KOLO_STALL_SHUTDOWN_TIME_SECONDS", "--stall-shutdown-seconds"},
      {"KOLO_CPU_OPERATIONS", "--cpu-operations"},
      {"KOLO_GPU_OPERATIONS", "--gpu-operations"},
      {"KOLO_LOG_LEVEL", "--log-level"},
      {"KOLO_MEMORY_ALLOCATOR", "--memory-allocator"},
      {"KOLO_AUTOTUNE", "--autotune"},
  };
  for (const auto& [variable, flag] : kFlags) {
    if (name == variable) return flag;
  }
  return std::string(name);
}

void AppendAll(std::vector<std::string>* argv,
               const std::vector<std::string>& more) {
  argv->insert(argv->end(), more.begin(), more.end());
}

// The program each rank runs: the user's command, under the rank monitor
// unless it was turned off.
std::vector<std::string> RankCommand(const LaunchOptions& options,
                                     const LaunchEnvironment& env) {
  std::vector<std::string> command;
  if (options.rank_monitor) {
    command = {env.kolorun_path, "--rank-monitor"};
    if (options.start_timeout_seconds) command.push_back("--announce-start");
    command.push_back("--");
  }
  AppendAll(&command, options.command);
  return command;
}

absl::StatusOr<LaunchPlan> BuildOpenMpiPlan(
    const LaunchOptions& options, const LaunchEnvironment& env,
    const std::vector<EnvExport>& exports) {
  absl::StatusOr<Placement> placement = PlaceRanks(options, env);
  if (!placement.ok()) return placement.status();
  LaunchPlan plan;
  plan.launcher = Launcher::kOpenMpi;
  std::vector<std::string>& argv = plan.argv;
  argv.push_back(env.mpirun_path);
  // Open MPI refuses to run as root unless told; the flag is kept off
  // otherwise so that a mistaken sudo still gets Open MPI's warning.
  if (env.is_root) {
    argv.push_back("--allow-run-as-root");
    plan.notes.push_back("running as root: --allow-run-as-root");
  }
  AppendAll(&argv, {"-np", absl::StrCat(options.num_proc)});
  if (!options.hostfile.empty()) {
    AppendAll(&argv, {"--hostfile", options.hostfile});
  } else if (!options.host_slots.empty()) {
    AppendAll(&argv, {"-H", FormatHostList(options.host_slots)});
  }
  // Data-parallel ranks are independent replicas that each run a
  // communication thread plus intra-op (OpenMP) threads. --map-by slot keeps
  // consecutive ranks on one host (contiguous local ranks for shm and
  // hierarchical allreduce); --bind-to none lets each rank's threads spread
  // over the cores instead of sharing the single core Open MPI would bind it
  // to by default (Horovod launches the same way).
  AppendAll(&argv, {"--map-by", "slot", "--bind-to", "none"});
  // Every output line starts with [jobid,rank]<stdout|stderr>.
  argv.push_back("--tag-output");
  if (options.output_filename) {
    AppendAll(&argv, {"--output-filename", *options.output_filename});
  }
  // Within the slots of -H/--hostfile a host never gets more ranks than
  // its slots, so only the core count can be exceeded; beyond them (allowed
  // only when every host is local) Open MPI itself demands --oversubscribe.
  const bool oversubscribed = placement->local_ranks > env.local_cores ||
                              (!options.host_slots.empty() &&
                               options.num_proc > placement->total_slots);
  if (oversubscribed) {
    // Idle MPI ranks busy-poll; with more ranks than cores they would steal
    // the cores the working ranks need, so they yield instead.
    AppendAll(&argv, {"--oversubscribe", "--mca", "mpi_yield_when_idle", "1"});
    plan.notes.push_back(absl::StrCat(
        "local host runs ", placement->local_ranks, " ranks on ",
        env.local_cores, " cores: oversubscribed, idle ranks yield"));
  } else {
    plan.notes.push_back(absl::StrCat("local host runs ",
                                      placement->local_ranks, " ranks on ",
                                      env.local_cores, " cores"));
  }
  for (const EnvExport& e : exports) {
    AppendAll(&argv,
              {"-x", e.value ? absl::StrCat(e.name, "=", *e.value) : e.name});
  }
  AppendAll(&argv, options.mpi_args);
  AppendAll(&argv, RankCommand(options, env));
  return plan;
}

absl::StatusOr<LaunchPlan> BuildHydraPlan(
    const LaunchOptions& options, const LaunchEnvironment& env,
    const std::vector<EnvExport>& exports) {
  absl::StatusOr<Placement> placement = PlaceRanks(options, env);
  if (!placement.ok()) return placement.status();
  LaunchPlan plan;
  plan.launcher = Launcher::kHydra;
  std::vector<std::string>& argv = plan.argv;
  argv.push_back(env.mpirun_path);
  // Hydra's global options must precede the local ones (-n), so -n comes
  // last, right before the program. Hydra reads "host:n" as n consecutive
  // ranks per host (like --map-by slot), runs as root without a flag, never
  // refuses extra ranks and binds nothing unless asked, so no mapping,
  // binding or oversubscription flags are needed. The hostfile is passed as
  // -hosts because Hydra's hostfile syntax (host:n) differs from Open MPI's.
  if (!options.host_slots.empty()) {
    AppendAll(&argv, {"-hosts", FormatHostList(options.host_slots)});
  }
  argv.push_back("-prepend-rank");
  if (options.output_filename) {
    // stdout only: stderr stays with kolorun, which watches it for the rank
    // monitor's reports (Open MPI copies files' contents to the terminal
    // anyway).
    const std::string& dir = *options.output_filename;
    AppendAll(&argv,
              {"-outfile-pattern", absl::StrCat(dir, "/rank.%r.stdout")});
    plan.directories_to_create.push_back(dir);
  }
  std::vector<std::string> passed_through;
  for (const EnvExport& e : exports) {
    if (e.value) {
      AppendAll(&argv, {"-genv", e.name, *e.value});
    } else {
      passed_through.push_back(e.name);
    }
  }
  if (!passed_through.empty()) {
    AppendAll(&argv, {"-genvlist", absl::StrJoin(passed_through, ",")});
  }
  plan.notes.push_back(absl::StrCat("local host runs ", placement->local_ranks,
                                    " ranks on ", env.local_cores, " cores"));
  AppendAll(&argv, options.mpi_args);
  AppendAll(&argv, {"-n", absl::StrCat(options.num_proc)});
  AppendAll(&argv, RankCommand(options, env));
  return plan;
}

absl::StatusOr<LaunchPlan> BuildSlurmPlan(
    const LaunchOptions& options, const LaunchEnvironment& env,
    const std::vector<EnvExport>& exports) {
  auto job = env.env.find("SLURM_JOB_ID");
  if (job == env.env.end()) {
    return absl::FailedPreconditionError(
        "srun needs a Slurm allocation, and SLURM_JOB_ID is not set");
  }
  auto ntasks = env.env.find("SLURM_NTASKS");
  int allocated = 0;
  if (ntasks != env.env.end() && absl::SimpleAtoi(ntasks->second, &allocated) &&
      options.num_proc > allocated) {
    return absl::InvalidArgumentError(
        absl::StrCat("-np ", options.num_proc, " is more ranks than the ",
                     allocated, " tasks of Slurm allocation ", job->second,
                     " (SLURM_NTASKS); lower -np or allocate more tasks"));
  }
  LaunchPlan plan;
  plan.launcher = Launcher::kSlurm;
  std::vector<std::string>& argv = plan.argv;
  argv.push_back(env.srun_path);
  AppendAll(&argv, {"--ntasks", absl::StrCat(options.num_proc)});
  if (!options.host_slots.empty()) {
    // Named hosts (kolorun's elastic mode: the discovered nodes of the
    // allocation): one node name per rank, in rank order, filling each
    // host's slots before the next as --map-by slot does. srun takes a
    // repeated --nodelist as the task layout under the arbitrary
    // distribution (it refuses nodes outside the allocation).
    std::vector<std::string> layout;
    for (const HostSlots& host : options.host_slots) {
      for (int slot = 0; slot < host.slots &&
                         static_cast<int>(layout.size()) < options.num_proc;
           ++slot) {
        layout.push_back(host.host);
      }
    }
    if (static_cast<int>(layout.size()) < options.num_proc) {
      return absl::InvalidArgumentError(absl::StrCat(
          "-np ", options.num_proc, " is more ranks than the ", layout.size(),
          " slots of ", FormatHostList(options.host_slots)));
    }
    argv.push_back(absl::StrCat("--nodelist=", absl::StrJoin(layout, ",")));
    argv.push_back("--distribution=arbitrary");
    plan.notes.push_back(absl::StrCat("ranks placed on ",
                                      FormatHostList(options.host_slots),
                                      " in slot order"));
  }
  if (ShouldChooseSrunMpiPlugin(options, env)) {
    // Without a plugin the ranks' MPI finds no process manager: MPICH's
    // ranks would each start alone and Open MPI's abort, and Debian's Slurm
    // defaults to none (MpiDefault).
    const absl::string_view plugin = SrunMpiPlugin(env.built_mpi);
    const bool offered =
        env.srun_mpi_plugins &&
        std::find(env.srun_mpi_plugins->begin(), env.srun_mpi_plugins->end(),
                  plugin) != env.srun_mpi_plugins->end();
    if (offered) {
      argv.push_back(absl::StrCat("--mpi=", plugin));
      plan.notes.push_back(absl::StrCat("ranks use ", MpiName(env.built_mpi),
                                        ": srun --mpi=", plugin));
    } else {
      plan.notes.push_back(absl::StrCat(
          "ranks use ", MpiName(env.built_mpi), ", but srun offers no ", plugin,
          " plugin: leaving the choice to Slurm's MpiDefault"));
    }
  }
  // Without this, srun lets the other tasks run on after one fails, and a
  // data-parallel job whose peer died can only hang or fail later.
  argv.push_back("--kill-on-bad-exit=1");
  // The same reason as Open MPI's --bind-to none: each rank runs several
  // threads, which a one-CPU binding would squeeze onto one core.
  argv.push_back("--cpu-bind=none");
  // One Ctrl-C stops the job: by default srun's first SIGINT only reports
  // the tasks' states and a second one within a second is needed.
  argv.push_back("--quit-on-interrupt");
  argv.push_back("--label");
  if (options.output_filename) {
    // stdout only, for the same reason as with Hydra.
    const std::string& dir = *options.output_filename;
    argv.push_back(absl::StrCat("--output=", dir, "/rank.%t.stdout"));
    plan.directories_to_create.push_back(dir);
  }
  if (!exports.empty()) {
    std::vector<std::string> items = {"ALL"};
    for (const EnvExport& e : exports) {
      // srun's --export list has no escape for commas.
      if (e.value && absl::StrContains(*e.value, ',')) {
        return absl::InvalidArgumentError(absl::StrCat(
            "the value of ", e.name,
            " contains a comma, which srun --export cannot carry; set it in "
            "the environment instead of with a flag or -x"));
      }
      items.push_back(e.value ? absl::StrCat(e.name, "=", *e.value) : e.name);
    }
    argv.push_back(absl::StrCat("--export=", absl::StrJoin(items, ",")));
  }
  plan.notes.push_back(
      absl::StrCat("inside Slurm allocation ", job->second, ": using srun"));
  AppendAll(&argv, options.mpi_args);
  AppendAll(&argv, RankCommand(options, env));
  return plan;
}

}  // namespace

absl::string_view LauncherName(Launcher launcher) {
  switch (launcher) {
    case Launcher::kOpenMpi:
      return "Open MPI";
    case Launcher::kHydra:
      return "MPICH/Hydra";
    case Launcher::kSlurm:
      return "Slurm";
  }
  return "unknown";
}

absl::StatusOr<Launcher> DetectMpiImplementation(
    absl::string_view version_output) {
  if (absl::StrContains(version_output, "Open MPI") ||
      absl::StrContains(version_output, "OpenRTE")) {
    return Launcher::kOpenMpi;
  }
  if (absl::StrContains(version_output, "HYDRA") ||
      absl::StrContains(version_output, "Intel(R) MPI")) {
    return Launcher::kHydra;
  }
  absl::string_view first_line =
      version_output.substr(0, version_output.find('\n'));
  return absl::FailedPreconditionError(absl::StrCat(
      "mpirun is neither Open MPI nor MPICH/Hydra (`mpirun --version` said '",
      first_line,
      "'); install Open MPI (apt-get install openmpi-bin) or MPICH "
      "(apt-get install mpich)"));
}

absl::string_view MpiName(Launcher built_mpi) {
  return built_mpi == Launcher::kHydra ? "MPICH" : "Open MPI";
}

absl::string_view SrunMpiPlugin(Launcher built_mpi) {
  return built_mpi == Launcher::kHydra ? "pmi2" : "pmix";
}

bool ShouldChooseSrunMpiPlugin(const LaunchOptions& options,
                               const LaunchEnvironment& env) {
  auto type = env.env.find("SLURM_MPI_TYPE");
  if (type != env.env.end() && !type->second.empty()) return false;
  for (const std::string& arg : options.mpi_args) {
    if (arg == "--mpi" || absl::StartsWith(arg, "--mpi=")) return false;
  }
  return true;
}

std::vector<std::string> ParseSrunMpiList(absl::string_view output) {
  // "MPI plugin types are...\n\tpmix\n\tnone\n\tpmi2\nspecific pmix
  // plugin versions available: pmix_v4\n"
  std::vector<std::string> plugins;
  for (absl::string_view line : absl::StrSplit(output, '\n')) {
    if (line.empty() || (line[0] != '\t' && line[0] != ' ')) continue;
    line = absl::StripAsciiWhitespace(line);
    if (!line.empty()) plugins.emplace_back(line);
  }
  return plugins;
}

std::optional<std::string> LauncherMismatchWarning(
    Launcher detected, const LaunchEnvironment& env) {
  if (detected == Launcher::kSlurm || detected == env.built_mpi) {
    return std::nullopt;
  }
  return absl::StrCat(
      "warning: ", env.mpirun_path, " is ", LauncherName(detected),
      "'s launcher, but kolo here is built against ", MpiName(env.built_mpi),
      ": kolo programs it starts will refuse to run (each rank would be "
      "alone); put ",
      MpiName(env.built_mpi), "'s launcher first on PATH");
}

bool ShouldUseSrun(const LaunchOptions& options, const LaunchEnvironment& env) {
  return env.env.count("SLURM_JOB_ID") > 0 && !env.srun_path.empty() &&
         options.host_slots.empty();
}

bool IsLocalHost(absl::string_view host, const LaunchEnvironment& env) {
  const std::string name = absl::AsciiStrToLower(host);
  if (name == "localhost" || absl::StartsWith(name, "127.")) return true;
  const std::string self = absl::AsciiStrToLower(env.hostname);
  if (!self.empty()) {
    if (name == self) return true;
    // "node1" and "node1.cluster.example" are the same machine (but the
    // first label of an IP address says nothing).
    auto short_name = [](absl::string_view n) {
      return n.substr(0, n.find('.'));
    };
    const bool name_is_ip =
        name.find_first_not_of("0123456789.") == std::string::npos ||
        name.find(':') != std::string::npos;
    if (!name_is_ip && short_name(name) == short_name(self)) return true;
  }
  for (const std::string& address : env.local_addresses) {
    if (name == address) return true;
  }
  return false;
}

absl::StatusOr<std::vector<EnvExport>> CollectEnvExports(
    const LaunchOptions& options, const LaunchEnvironment& env) {
  std::vector<EnvExport> from_flags = RuntimeSettingExports(options);
  std::set<std::string> from_flag_names;
  for (const EnvExport& e : from_flags) from_flag_names.insert(e.name);

  std::vector<EnvExport> from_x;
  std::set<std::string> from_x_names;
  for (const std::string& entry : options.env_exports) {
    const size_t eq = entry.find('=');
    EnvExport e{entry.substr(0, eq), std::nullopt};
    if (eq != std::string::npos) e.value = entry.substr(eq + 1);
    if (!IsValidEnvName(e.name)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "-x ", entry, ": '", e.name, "' is not a variable name"));
    }
    if (!e.value && env.env.count(e.name) == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "-x ", entry, ": ", e.name,
          " is not set in kolorun's environment; use -x ", e.name, "=VALUE"));
    }
    if (from_flag_names.count(e.name) > 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("-x ", entry, " conflicts with ",
                       FlagForVariable(e.name), ", which sets ", e.name));
    }
    if (!from_x_names.insert(e.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("-x ", e.name, " is given more than once"));
    }
    from_x.push_back(std::move(e));
  }

  std::vector<EnvExport> exports = std::move(from_flags);
  // KOLO_* settings in kolorun's environment reach the local ranks anyway;
  // exporting them makes remote ranks agree. KOLO_HOSTNAME is left out: it
  // makes a rank pretend to be on a host, which is per rank by nature.
  for (const auto& [name, value] : env.env) {
    if (absl::StartsWith(name, "KOLO_") && name != "KOLO_HOSTNAME" &&
        from_flag_names.count(name) == 0 && from_x_names.count(name) == 0) {
      exports.push_back(EnvExport{name, std::nullopt});
    }
  }
  // Without the rank monitor, kolorun applied --memory-allocator itself
  // (allocator_env); a -x of the same variable is the user's explicit word.
  for (const auto& [name, value] : env.allocator_env) {
    if (from_x_names.count(name) == 0)
      exports.push_back(EnvExport{name, value});
  }
  for (EnvExport& e : from_x) exports.push_back(std::move(e));
  return exports;
}

absl::StatusOr<LaunchPlan> BuildLaunchPlan(const LaunchOptions& options,
                                           Launcher launcher,
                                           const LaunchEnvironment& env) {
  if (options.start_timeout_seconds && !options.rank_monitor) {
    return absl::InvalidArgumentError(
        "--start-timeout needs the rank monitor (ranks announce their start "
        "through it); drop --no-rank-monitor or --start-timeout");
  }
  absl::StatusOr<std::vector<EnvExport>> exports =
      CollectEnvExports(options, env);
  if (!exports.ok()) return exports.status();
  absl::StatusOr<LaunchPlan> plan;
  switch (launcher) {
    case Launcher::kOpenMpi:
      plan = BuildOpenMpiPlan(options, env, *exports);
      break;
    case Launcher::kHydra:
      plan = BuildHydraPlan(options, env, *exports);
      break;
    case Launcher::kSlurm:
      plan = BuildSlurmPlan(options, env, *exports);
      break;
  }
  if (plan.ok()) {
    plan->num_ranks = options.num_proc;
    plan->start_timeout_seconds = options.start_timeout_seconds;
    double peer_timeout = kDefaultPeerTimeoutSeconds;
    auto set = env.env.find("KOLO_PEER_TIMEOUT_SECONDS");
    double value = 0;
    if (set != env.env.end() && absl::SimpleAtod(set->second, &value) &&
        std::isfinite(value) && value >= 0) {
      peer_timeout = value;
    }
    plan->stop_after_rank_failure_seconds =
        std::max(kMinStopAfterRankFailureSeconds, peer_timeout + 2);
    plan->notes.insert(plan->notes.begin(),
                       absl::StrCat("launcher: ", LauncherName(launcher), " (",
                                    plan->argv.front(), ")"));
  }
  return plan;
}

std::string FormatCommandLine(const std::vector<std::string>& argv) {
  std::vector<std::string> words;
  for (const std::string& arg : argv) {
    const bool plain =
        !arg.empty() && arg.find_first_not_of(
                            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTU"
                            "VWXYZ0123456789_@%+=:,./-") == std::string::npos;
    words.push_back(
        plain ? arg
              : absl::StrCat("'", absl::StrReplaceAll(arg, {{"'", "'\\''"}}),
                             "'"));
  }
  return absl::StrJoin(words, " ");
}

}  // namespace launcher
}  // namespace kolo
