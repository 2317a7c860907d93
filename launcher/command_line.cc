// kolorun's command-line parsing (CLI11) and --mpi-args word splitting.
#include "command_line.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "host_list.h"
#include "memory_allocator.h"

namespace kolo {
namespace launcher {
namespace {

constexpr char kDescription[] =
    "kolorun: start a kolo job on one or many hosts.\n"
    "\n"
    "kolorun turns its flags into an Open MPI or MPICH mpirun command (or an "
    "srun\ncommand inside a Slurm allocation when no hosts are named), runs "
    "it and exits\nwith the job's status. When a rank fails it names the rank "
    "and the job stops.";

constexpr char kFooter[] =
    "Hostfile lines are 'HOST [slots=N]' as in Open MPI; '#' starts a "
    "comment.\n"
    "KOLO_* variables already in kolorun's environment (except KOLO_HOSTNAME)"
    " are\nexported to every rank too; a flag overrides them.\n"
    "\n"
    "Exit status: the job's (128+N when the launcher died of signal N); 2 "
    "when\nkolorun itself rejects the command line, hosts or environment. In "
    "elastic mode\n(--host-discovery-script, --max-restarts): 0 when the job "
    "finished, 3 after\n--max-restarts failed launches, 4 when --min-np slots "
    "did not appear within\n--elastic-timeout. Every rank then gets "
    "KOLO_ELASTIC_RESTART and\nKOLO_ELASTIC_STOP_FILE; a program that stops on "
    "request exits with 75.\n"
    "\n"
    "Internal: every rank runs as 'kolorun --rank-monitor [--announce-start]"
    " --\nCOMMAND [ARGS...]', which runs the command, forwards signals to it,"
    " reports\n'kolorun: rank R on host H exited with status S' when it fails"
    " and, with\n--announce-start (used by --start-timeout), tells kolorun it"
    " started.\n"
    "\n"
    "Examples:\n"
    "  kolorun -np 4 ./train                          4 ranks on this "
    "machine\n"
    "  kolorun -np 8 -H a:4,b:4 ./train               2 hosts x 4 ranks\n"
    "  kolorun -np 8 --hostfile hosts --cpu-operations hierarchical ./train\n"
    "  kolorun -np 2 -x OMP_NUM_THREADS=4 --dry-run ./train   print, don't "
    "run";

// CLI11 knows no positionals here (the command is the unparsed tail), so
// its generated usage line would leave out the command.
class UsageFormatter : public CLI::Formatter {
 public:
  std::string make_usage(const CLI::App*, std::string) const override {
    return "\nUsage: kolorun -np N [-H HOST:SLOTS,...|--hostfile FILE] "
           "[options] [--] COMMAND [ARGS...]\n";
  }
};

// Values CLI11 parses before they are checked and moved into LaunchOptions.
struct RawFlags {
  int num_proc = 0;
  std::string hostfile;
  std::string hosts;
  std::string mpi_args;
  std::vector<std::string> env_exports;
  int64_t fusion_threshold_mb = 0;
  std::string cycle_time_ms;
  int64_t cache_capacity = 0;
  std::string timeline_filename;
  int64_t stall_check_seconds = 0;
  int64_t stall_shutdown_seconds = 0;
  bool autotune = false;
  std::string cpu_operations;
  std::string gpu_operations;
  std::string log_level;
  std::string memory_allocator;
  std::string output_filename;
  int start_timeout_seconds = 0;
  bool verbose = false;
  bool dry_run = false;
  bool no_rank_monitor = false;
  std::string discovery_script;
  int min_np = 0;
  int max_np = 0;
  int max_restarts = 0;
  double discovery_interval_seconds = 1;
  double host_cooldown_seconds = 60;
  double elastic_timeout_seconds = 600;
};

constexpr int64_t kMaxFusionThresholdMb =
    std::numeric_limits<int64_t>::max() >> 20;

std::unique_ptr<CLI::App> MakeApp(RawFlags* f) {
  auto app = std::make_unique<CLI::App>(kDescription, "kolorun");
  app->footer(kFooter);
  auto formatter = std::make_shared<UsageFormatter>();
  formatter->column_width(40);
  app->formatter(formatter);
  // The command is whatever follows kolorun's flags; see command_line.h.
  app->prefix_command();

  app->option_defaults()->group("Job");
  app->add_option("-n,--np,--num-proc", f->num_proc,
                  "Number of ranks (required; -np also works, as in mpirun "
                  "and horovodrun)")
      ->type_name("N")
      ->check(CLI::Range(1, 1 << 20));
  CLI::Option* hosts =
      app->add_option("-H,--hosts", f->hosts,
                      "Hosts and their slots, e.g. a:4,b:4 (no slot count "
                      "means 1); ranks fill each host's slots in order")
          ->type_name("HOST[:SLOTS],...");
  app->add_option("--hostfile", f->hostfile,
                  "File of 'HOST [slots=N]' lines (also -hostfile)")
      ->type_name("FILE")
      ->excludes(hosts);
  app->add_option("--mpi-args", f->mpi_args,
                  "Extra arguments for mpirun (or srun), split like a shell "
                  "would, placed before the command")
      ->type_name("\"ARGS\"");
  app->add_option("-x", f->env_exports,
                  "Export VAR (its current value) or VAR=VALUE to every "
                  "rank; repeatable")
      ->type_name("VAR[=VALUE]")
      ->allow_extra_args(false);
  app->add_option("--output-filename", f->output_filename,
                  "Write each rank's output to files under DIR (Open MPI: "
                  "DIR/1/rank.R/{stdout,stderr}, also shown; MPICH and "
                  "srun: stdout to DIR/rank.R.stdout, stderr shown)")
      ->type_name("DIR");
  app->add_option("--start-timeout", f->start_timeout_seconds,
                  "Stop the job and fail (exit 1) if not every rank has "
                  "started within S seconds, naming the missing ranks")
      ->type_name("S")
      ->check(CLI::Range(1, 1 << 30));

  app->option_defaults()->group("kolo runtime (exported as KOLO_* variables)");
  app->add_option("--fusion-threshold-mb", f->fusion_threshold_mb,
                  "Fusion buffer size in MiB; 0 disables fusion "
                  "(KOLO_FUSION_THRESHOLD, in bytes; default 64)")
      ->type_name("MB")
      ->check(CLI::Range(int64_t{0}, kMaxFusionThresholdMb));
  app->add_option("--cycle-time-ms", f->cycle_time_ms,
                  "Longest wait before a negotiation round once work is "
                  "queued (KOLO_CYCLE_TIME_MS; default 1)")
      ->type_name("MS");
  app->add_option("--cache-capacity", f->cache_capacity,
                  "Response-cache entries; 0 disables the cache "
                  "(KOLO_CACHE_CAPACITY; default 1024)")
      ->type_name("N")
      ->check(CLI::NonNegativeNumber);
  app->add_option("--timeline-filename", f->timeline_filename,
                  "Rank 0 writes a Chrome-trace timeline to FILE "
                  "(KOLO_TIMELINE)")
      ->type_name("FILE");
  app->add_option("--stall-check-seconds,--stall-check-warning-time-seconds",
                  f->stall_check_seconds,
                  "Warn about tensors some ranks submitted and others not "
                  "after S seconds (KOLO_STALL_CHECK_TIME_SECONDS; default "
                  "60)")
      ->type_name("S")
      ->check(CLI::NonNegativeNumber);
  app->add_option(
         "--stall-shutdown-seconds,--stall-check-shutdown-time-seconds",
         f->stall_shutdown_seconds,
         "Then fail every pending operation on every rank after S seconds "
         "(KOLO_STALL_SHUTDOWN_TIME_SECONDS; default 300)")
      ->type_name("S")
      ->check(CLI::NonNegativeNumber);
  app->add_flag("--autotune", f->autotune,
                "Tune fusion threshold and cycle time online "
                "(KOLO_AUTOTUNE=1)");
  app->add_option("--cpu-operations", f->cpu_operations,
                  "CPU collective backend: auto, shm, ring, hierarchical or "
                  "mpi (KOLO_CPU_OPERATIONS; default auto)")
      ->type_name("NAME")
      ->transform(CLI::IsMember({"auto", "shm", "ring", "hierarchical", "mpi"},
                                CLI::ignore_case));
  app->add_option("--gpu-operations", f->gpu_operations,
                  "CUDA tensor backend: auto, nccl or hierarchical "
                  "(KOLO_GPU_OPERATIONS; default auto)")
      ->type_name("NAME")
      ->transform(
          CLI::IsMember({"auto", "nccl", "hierarchical"}, CLI::ignore_case));
  app->add_option("--log-level", f->log_level,
                  "trace, debug, info, warning or error (KOLO_LOG_LEVEL; "
                  "default warning)")
      ->type_name("LEVEL")
      ->transform(CLI::IsMember({"trace", "debug", "info", "warning", "error"},
                                CLI::ignore_case));

  app->add_option("--memory-allocator", f->memory_allocator,
                  "Ranks' malloc: auto (tcmalloc if installed, else glibc), "
                  "tcmalloc, jemalloc, glibc (tuned to keep training "
                  "buffers) or system (untouched) (KOLO_MEMORY_ALLOCATOR; "
                  "default auto)")
      ->type_name("NAME")
      ->transform(CLI::IsMember(MemoryAllocatorNames(), CLI::ignore_case));

  app->option_defaults()->group(
      "Elastic (relaunch after failures; follow hosts as they come and go)");
  app->add_option("--host-discovery-script", f->discovery_script,
                  "Program printing the available hosts, one HOST[:SLOTS] "
                  "per line; run before each launch and every "
                  "--discovery-interval while the job runs (-np then "
                  "optional)")
      ->type_name("SCRIPT");
  app->add_option("--min-np", f->min_np,
                  "Fewest ranks a launch may have; kolorun waits (at most "
                  "--elastic-timeout) for that many slots")
      ->type_name("N")
      ->check(CLI::Range(1, 1 << 20));
  app->add_option("--max-np", f->max_np,
                  "Most ranks a launch may have (default: -np, else every "
                  "discovered slot)")
      ->type_name("N")
      ->check(CLI::Range(1, 1 << 20));
  app->add_option("--max-restarts", f->max_restarts,
                  "Relaunch a failed job up to K times (also with a fixed "
                  "host list); the program resumes from its checkpoint")
      ->type_name("K")
      ->check(CLI::Range(0, 1 << 20));
  app->add_option("--discovery-interval", f->discovery_interval_seconds,
                  "Seconds between discovery runs while the job runs "
                  "(default 1)")
      ->type_name("S")
      ->check(CLI::Range(0.05, 86400.0));
  app->add_option("--host-cooldown", f->host_cooldown_seconds,
                  "Seconds a host whose rank failed is left out (default "
                  "60)")
      ->type_name("S")
      ->check(CLI::Range(0.0, 1e7));
  app->add_option("--elastic-timeout", f->elastic_timeout_seconds,
                  "Longest wait for --min-np slots before giving up (exit "
                  "4; default 600)")
      ->type_name("S")
      ->check(CLI::Range(0.0, 1e7));

  app->option_defaults()->group("kolorun");
  app->add_flag("--verbose", f->verbose,
                "Print the launcher's decisions and the command before "
                "running it (to stderr)");
  app->add_flag("--dry-run", f->dry_run,
                "Print the exact command (to stdout) and exit without "
                "running it");
  app->add_flag("--no-rank-monitor", f->no_rank_monitor,
                "Run the command directly on each rank, without kolorun's "
                "monitor (which names a failed rank but needs kolorun at the "
                "same path on every host)");
  app->set_help_flag("-h,--help", "Print this help and exit");
  return app;
}

// Multi-letter single-dash flags (mpirun and horovodrun spell them so) that
// CLI11 cannot name; rewritten to their long forms before parsing.
std::string RewriteSingleDashFlag(const std::string& arg) {
  for (const auto& [from, to] :
       {std::pair<const char*, const char*>{"-np", "--num-proc"},
        {"-hostfile", "--hostfile"}}) {
    if (arg == from) return to;
    if (absl::StartsWith(arg, absl::StrCat(from, "="))) {
      return absl::StrCat(to, arg.substr(std::string(from).size()));
    }
  }
  return arg;
}

absl::Status Invalid(absl::string_view message) {
  return absl::InvalidArgumentError(message);
}

// Optimal string alignment distance: insertions, deletions, substitutions
// and swaps of neighbours each cost 1 ("--dryrun", "--hsots").
size_t EditDistance(absl::string_view a, absl::string_view b) {
  std::vector<std::vector<size_t>> d(a.size() + 1,
                                     std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t substitution = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min(
          {d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + substitution});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

// The known flag closest to `flag` (its "=VALUE" part ignored), or "" when
// none is close enough to be a plausible misspelling: at most one edit per
// four characters, and never a guess for a one-letter flag.
std::string ClosestFlag(const CLI::App& app, absl::string_view flag) {
  flag = flag.substr(0, flag.find('='));
  std::vector<std::string> known = {"-np", "-hostfile"};
  for (const CLI::Option* option : app.get_options()) {
    for (const std::string& name : option->get_lnames()) {
      known.push_back(absl::StrCat("--", name));
    }
  }
  std::string best;
  size_t best_distance = std::numeric_limits<size_t>::max();
  for (const std::string& candidate : known) {
    const size_t distance = EditDistance(flag, candidate);
    if (distance < best_distance) {
      best = candidate;
      best_distance = distance;
    }
  }
  const size_t longer = std::max(flag.size(), best.size());
  if (best_distance == 0 || best_distance * 4 > longer) return "";
  return best;
}

absl::Status UnknownFlag(const CLI::App& app, const std::string& flag) {
  const std::string closest = ClosestFlag(app, flag);
  return Invalid(absl::StrCat(
      "unknown flag '", flag, "'",
      closest.empty() ? "" : absl::StrCat("; did you mean '", closest, "'?"),
      " (see kolorun --help; put the command after -- if it starts with "
      "'-')"));
}

// Checks and fills LaunchOptions::elastic.
absl::Status ParseElastic(const CLI::App& app, const RawFlags& f,
                          LaunchOptions* o) {
  ElasticOptions e;
  const bool discovery = app.count("--host-discovery-script") > 0;
  if (discovery) {
    if (f.discovery_script.empty()) {
      return Invalid("--host-discovery-script: empty file name");
    }
    if (!o->hosts_flag.empty() || !o->hostfile.empty()) {
      return Invalid(
          "--host-discovery-script names the hosts; leave out -H and "
          "--hostfile");
    }
    e.discovery_script = f.discovery_script;
  }
  if (!o->rank_monitor) {
    return Invalid(
        "elastic mode needs the rank monitor (it names the failed rank and "
        "passes on the stop request); leave out --no-rank-monitor");
  }
  const bool has_np = app.count("--num-proc") > 0;
  e.max_np = app.count("--max-np") > 0 ? f.max_np : (has_np ? f.num_proc : 0);
  e.min_np = app.count("--min-np") > 0 ? f.min_np
             : has_np                  ? f.num_proc
                                       : 1;
  if (!discovery) {
    // A fixed host list: the ranks it can hold are -np at most.
    if (!has_np) return Invalid("-np N is required: how many ranks to start");
    if (e.max_np != f.num_proc) {
      return Invalid(absl::StrCat(
          "--max-np ", e.max_np, " differs from -np ", f.num_proc,
          "; without --host-discovery-script the job never grows past -np"));
    }
  }
  if (e.max_np > 0 && e.min_np > e.max_np) {
    return Invalid(absl::StrCat("--min-np ", e.min_np,
                                " is more than --max-np ", e.max_np));
  }
  if (has_np && (f.num_proc < e.min_np ||
                 (e.max_np > 0 && f.num_proc > e.max_np))) {
    return Invalid(absl::StrCat("-np ", f.num_proc, " is outside --min-np ",
                                e.min_np, " .. --max-np ", e.max_np));
  }
  e.max_restarts = f.max_restarts;
  e.discovery_interval_seconds = f.discovery_interval_seconds;
  e.host_cooldown_seconds = f.host_cooldown_seconds;
  e.elastic_timeout_seconds = f.elastic_timeout_seconds;
  o->elastic = e;
  return absl::OkStatus();
}

}  // namespace

std::string HelpText() {
  RawFlags flags;
  return MakeApp(&flags)->help();
}

absl::StatusOr<ParsedCommandLine> ParseCommandLine(
    const std::vector<std::string>& args) {
  RawFlags f;
  std::unique_ptr<CLI::App> app = MakeApp(&f);
  // CLI11 parses a reversed vector (it pops arguments off the back).
  std::vector<std::string> reversed;
  for (auto it = args.rbegin(); it != args.rend(); ++it) {
    reversed.push_back(RewriteSingleDashFlag(*it));
  }
  ParsedCommandLine result;
  try {
    app->parse(reversed);
  } catch (const CLI::CallForHelp&) {
    result.help = true;
    result.help_text = app->help();
    return result;
  } catch (const CLI::ParseError& e) {
    return Invalid(e.what());
  }

  // CLI11 sets aside each flag it does not know and parses on, so an unknown
  // flag shows up first in remaining(), before the command (which starts at
  // the first word that is not a flag, or after "--"). Without one,
  // remaining() is the tail of args, one to one; take the user's original
  // spelling (the -np rewrite must not touch the command's own arguments).
  const std::vector<std::string> remaining = app->remaining();
  if (!remaining.empty() && remaining.front() != "--" &&
      remaining.front().size() > 1 && remaining.front()[0] == '-') {
    return UnknownFlag(*app, remaining.front());
  }
  std::vector<std::string> command(args.end() - remaining.size(), args.end());
  if (!command.empty() && command.front() == "--") {
    command.erase(command.begin());
  }

  LaunchOptions& o = result.options;
  const bool discovery = app->count("--host-discovery-script") > 0;
  if (app->count("--num-proc") == 0 && !discovery) {
    return Invalid("-np N is required: how many ranks to start");
  }
  if (command.empty()) {
    return Invalid("no command given: kolorun -np N [options] COMMAND [ARGS]");
  }
  o.num_proc = f.num_proc;
  o.command = std::move(command);
  if (app->count("--hosts") > 0) {
    absl::StatusOr<std::vector<HostSlots>> hosts = ParseHostList(f.hosts);
    if (!hosts.ok()) return hosts.status();
    o.hosts_flag = f.hosts;
    o.host_slots = *std::move(hosts);
  }
  if (app->count("--hostfile") > 0) {
    if (f.hostfile.empty()) return Invalid("--hostfile: empty file name");
    o.hostfile = f.hostfile;
  }
  if (app->count("--mpi-args") > 0) {
    absl::StatusOr<std::vector<std::string>> words =
        SplitShellWords(f.mpi_args);
    if (!words.ok()) {
      return Invalid(absl::StrCat("--mpi-args \"", f.mpi_args,
                                  "\": ", words.status().message()));
    }
    o.mpi_args = *std::move(words);
  }
  o.env_exports = f.env_exports;
  if (app->count("--fusion-threshold-mb") > 0)
    o.fusion_threshold_mb = f.fusion_threshold_mb;
  if (app->count("--cycle-time-ms") > 0) {
    double ms = 0;
    if (!absl::SimpleAtod(f.cycle_time_ms, &ms) || !std::isfinite(ms) ||
        ms < 0) {
      return Invalid(absl::StrCat("--cycle-time-ms: '", f.cycle_time_ms,
                                  "' is not a non-negative number of "
                                  "milliseconds"));
    }
    o.cycle_time_ms = f.cycle_time_ms;
  }
  if (app->count("--cache-capacity") > 0) o.cache_capacity = f.cache_capacity;
  if (app->count("--timeline-filename") > 0) {
    if (f.timeline_filename.empty())
      return Invalid("--timeline-filename: empty file name");
    o.timeline_filename = f.timeline_filename;
  }
  if (app->count("--stall-check-seconds") > 0)
    o.stall_check_seconds = f.stall_check_seconds;
  if (app->count("--stall-shutdown-seconds") > 0)
    o.stall_shutdown_seconds = f.stall_shutdown_seconds;
  o.autotune = f.autotune;
  if (app->count("--cpu-operations") > 0) o.cpu_operations = f.cpu_operations;
  if (app->count("--gpu-operations") > 0) o.gpu_operations = f.gpu_operations;
  if (app->count("--log-level") > 0) o.log_level = f.log_level;
  if (app->count("--memory-allocator") > 0) {
    o.memory_allocator = f.memory_allocator;
  }
  if (app->count("--output-filename") > 0) {
    if (f.output_filename.empty())
      return Invalid("--output-filename: empty directory name");
    o.output_filename = f.output_filename;
  }
  if (app->count("--start-timeout") > 0)
    o.start_timeout_seconds = f.start_timeout_seconds;
  o.verbose = f.verbose;
  o.dry_run = f.dry_run;
  o.rank_monitor = !f.no_rank_monitor;
  if (discovery || app->count("--max-restarts") > 0 ||
      app->count("--min-np") > 0 || app->count("--max-np") > 0) {
    absl::Status elastic = ParseElastic(*app, f, &o);
    if (!elastic.ok()) return elastic;
  } else {
    for (const char* flag : {"--discovery-interval", "--host-cooldown",
                             "--elastic-timeout"}) {
      if (app->count(flag) > 0) {
        return Invalid(absl::StrCat(
            flag, " applies to elastic mode only: add "
                  "--host-discovery-script or --max-restarts"));
      }
    }
  }
  return result;
}

absl::StatusOr<std::vector<std::string>> SplitShellWords(
    absl::string_view text) {
  std::vector<std::string> words;
  std::string word;
  bool in_word = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == ' ' || c == '\t' || c == '\n') {
      if (in_word) words.push_back(std::move(word));
      word.clear();
      in_word = false;
      continue;
    }
    in_word = true;
    if (c == '\\') {
      if (++i == text.size()) return Invalid("trailing backslash");
      word += text[i];
    } else if (c == '\'') {
      const size_t end = text.find('\'', i + 1);
      if (end == absl::string_view::npos)
        return Invalid("unterminated single quote");
      word.append(text.data() + i + 1, end - i - 1);
      i = end;
    } else if (c == '"') {
      for (++i;; ++i) {
        if (i == text.size()) return Invalid("unterminated double quote");
        if (text[i] == '"') break;
        if (text[i] == '\\' && i + 1 < text.size() &&
            absl::string_view("\"\\$`").find(text[i + 1]) !=
                absl::string_view::npos) {
          ++i;
        }
        word += text[i];
      }
    } else {
      word += c;
    }
  }
  if (in_word) words.push_back(std::move(word));
  return words;
}

}  // namespace launcher
}  // namespace kolo
