// What one kolorun invocation asks for, as parsed from its command line.
//
// This is plain data: parsing fills it (command_line.h), the launch planner
// turns it into an mpirun or srun command (launch_plan.h). Nothing here
// touches the system, so tests build these by hand.
#ifndef KOLO_LAUNCHER_LAUNCH_OPTIONS_H_
#define KOLO_LAUNCHER_LAUNCH_OPTIONS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace kolo {
namespace launcher {

// One host of -H or --hostfile and the number of ranks it may run.
struct HostSlots {
  std::string host;
  int slots = 1;

  bool operator==(const HostSlots& other) const {
    return host == other.host && slots == other.slots;
  }
};

// Elastic mode (elastic.h): relaunching after failures, resizing as hosts
// come and go.
struct ElasticOptions {
  // --host-discovery-script: prints the available "HOST[:SLOTS]" lines.
  // Empty: the hosts are -H/--hostfile's (or this machine), fixed.
  std::string discovery_script;
  // --min-np / --max-np: the rank counts a launch may have (max_np 0: as
  // many as there are slots).
  int min_np = 1;
  int max_np = 0;
  // --max-restarts: failed launches relaunched before giving up.
  int max_restarts = 0;
  double discovery_interval_seconds = 1;
  // --host-cooldown: how long a host whose rank failed is left out.
  double host_cooldown_seconds = 60;
  // --elastic-timeout: the longest wait for --min-np slots.
  double elastic_timeout_seconds = 600;
  // Whether the number of ranks may change (a discovery script, or --min-np
  // below the fixed hosts' slots); only then do failed hosts cool down.
  bool resizable() const {
    return !discovery_script.empty() || min_np != max_np;
  }
};

struct LaunchOptions {
  // -np: number of ranks. Always >= 1 once parsed (in elastic mode with a
  // discovery script, the first launch's count comes from discovery and
  // this is 0 unless given).
  int num_proc = 0;

  // -H as the user wrote it, and --hostfile's path; at most one is set.
  std::string hosts_flag;
  std::string hostfile;
  // The hosts of -H or of the hostfile, in order; empty means "this machine"
  // (or the Slurm allocation). Filled after parsing (reading the hostfile is
  // I/O, which the parser does not do).
  std::vector<HostSlots> host_slots;

  // --mpi-args: extra launcher arguments, split like a shell would.
  std::vector<std::string> mpi_args;
  // -x: "VAR" (export VAR's current value) or "VAR=VALUE", in command-line
  // order.
  std::vector<std::string> env_exports;

  // kolo runtime settings; unset means "leave the runtime's default".
  std::optional<int64_t> fusion_threshold_mb;
  std::optional<std::string> cycle_time_ms;  // validated decimal, as written
  std::optional<int64_t> cache_capacity;
  std::optional<std::string> timeline_filename;
  std::optional<int64_t> stall_check_seconds;
  std::optional<int64_t> stall_shutdown_seconds;
  bool autotune = false;
  std::optional<std::string> cpu_operations;
  std::optional<std::string> gpu_operations;
  std::optional<std::string> log_level;
  // --memory-allocator (memory_allocator.h); unset means auto.
  std::optional<std::string> memory_allocator;

  std::optional<std::string> output_filename;
  std::optional<int> start_timeout_seconds;

  bool verbose = false;
  bool dry_run = false;
  // Run every rank under `kolorun --rank-monitor`, which names the rank
  // that failed. Off with --no-rank-monitor (kolorun then need not be
  // installed at the same path on every host).
  bool rank_monitor = true;

  // Set by --host-discovery-script, --max-restarts, --min-np or --max-np.
  std::optional<ElasticOptions> elastic;

  // The program every rank runs, and its arguments.
  std::vector<std::string> command;
};

}  // namespace launcher
}  // namespace kolo

#endif  // KOLO_LAUNCHER_LAUNCH_OPTIONS_H_
