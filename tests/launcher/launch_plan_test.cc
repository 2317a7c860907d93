// Command construction: every flag, each launcher (Open MPI, MPICH/Hydra,
// Slurm) and environment (root or not, oversubscribed or not). No processes.
#include "launch_plan.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kolo {
namespace launcher {
namespace {

using ::testing::Contains;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kMpirun[] = "/usr/bin/mpirun";
constexpr char kSrun[] = "/usr/bin/srun";
constexpr char kKolorun[] = "/opt/kolo/bin/kolorun";

LaunchEnvironment Machine(int cores = 8, bool root = false) {
  LaunchEnvironment env;
  env.mpirun_path = kMpirun;
  env.kolorun_path = kKolorun;
  env.is_root = root;
  env.local_cores = cores;
  env.hostname = "node1.cluster.example";
  env.local_addresses = {"10.0.0.1", "fe80::1"};
  env.env = {{"PATH", "/usr/bin"}};
  return env;
}

LaunchOptions Job(int np) {
  LaunchOptions options;
  options.num_proc = np;
  options.command = {"./train", "--epochs", "3"};
  return options;
}

std::vector<std::string> PlanArgv(const LaunchOptions& options,
                                  Launcher launcher,
                                  const LaunchEnvironment& env) {
  absl::StatusOr<LaunchPlan> plan = BuildLaunchPlan(options, launcher, env);
  EXPECT_TRUE(plan.ok()) << plan.status();
  return plan.ok() ? plan->argv : std::vector<std::string>{};
}

std::string PlanError(const LaunchOptions& options, Launcher launcher,
                      const LaunchEnvironment& env) {
  absl::StatusOr<LaunchPlan> plan = BuildLaunchPlan(options, launcher, env);
  EXPECT_FALSE(plan.ok()) << "expected an error, got: "
                          << (plan.ok() ? FormatCommandLine(plan->argv) : "");
  return plan.ok() ? "" : std::string(plan.status().message());
}

// True when `needle` appears in `argv` as consecutive arguments.
bool HasRun(const std::vector<std::string>& argv,
            const std::vector<std::string>& needle) {
  return std::search(argv.begin(), argv.end(), needle.begin(), needle.end()) !=
         argv.end();
}

size_t IndexOf(const std::vector<std::string>& argv, const std::string& arg) {
  return std::find(argv.begin(), argv.end(), arg) - argv.begin();
}

TEST(OpenMpiPlan, LocalJobIsExactlyThisCommand) {
  EXPECT_THAT(PlanArgv(Job(2), Launcher::kOpenMpi, Machine()),
              ElementsAreArray<std::string>(
                  {kMpirun, "-np", "2", "--map-by", "slot", "--bind-to", "none",
                   "--tag-output", kKolorun, "--rank-monitor", "--", "./train",
                   "--epochs", "3"}));
}

TEST(OpenMpiPlan, AllowRunAsRootOnlyAsRoot) {
  EXPECT_THAT(PlanArgv(Job(2), Launcher::kOpenMpi, Machine(8, true)),
              Contains("--allow-run-as-root"));
  EXPECT_THAT(PlanArgv(Job(2), Launcher::kOpenMpi, Machine(8, false)),
              Not(Contains("--allow-run-as-root")));
}

TEST(OpenMpiPlan, OversubscribesOnlyWhenLocalRanksExceedCores) {
  const std::vector<std::string> yield = {"--oversubscribe", "--mca",
                                          "mpi_yield_when_idle", "1"};
  EXPECT_FALSE(HasRun(PlanArgv(Job(8), Launcher::kOpenMpi, Machine(8)), yield));
  EXPECT_FALSE(HasRun(PlanArgv(Job(1), Launcher::kOpenMpi, Machine(1)), yield));
  EXPECT_TRUE(HasRun(PlanArgv(Job(9), Launcher::kOpenMpi, Machine(8)), yield));
  EXPECT_TRUE(HasRun(PlanArgv(Job(4), Launcher::kOpenMpi, Machine(2)), yield));
  EXPECT_THAT(PlanArgv(Job(8), Launcher::kOpenMpi, Machine(8)),
              Not(Contains("mpi_yield_when_idle")));
}

TEST(OpenMpiPlan, CountsOnlyTheRanksPlacedOnTheLocalHost) {
  LaunchOptions options = Job(8);
  options.hosts_flag = "node1:4,node2:4";
  options.host_slots = {{"node1", 4}, {"node2", 4}};
  // Slots are filled in order: ranks 0-3 on node1 (this machine).
  EXPECT_THAT(PlanArgv(options, Launcher::kOpenMpi, Machine(4)),
              Not(Contains("--oversubscribe")));
  EXPECT_THAT(PlanArgv(options, Launcher::kOpenMpi, Machine(2)),
              Contains("--oversubscribe"));
  // With 3 ranks node2 gets none, so 3 ranks on 3 cores is not oversubscribed.
  options.num_proc = 3;
  EXPECT_THAT(PlanArgv(options, Launcher::kOpenMpi, Machine(3)),
              Not(Contains("--oversubscribe")));
}

TEST(OpenMpiPlan, RemoteHostsAreNeverOversubscribedByKolorun) {
  LaunchOptions options = Job(4);
  options.host_slots = {{"a", 2}, {"b", 2}};
  const std::vector<std::string> argv =
      PlanArgv(options, Launcher::kOpenMpi, Machine(1));
  EXPECT_THAT(argv, Not(Contains("--oversubscribe")));
  EXPECT_TRUE(HasRun(argv, {"-H", "a:2,b:2"}));
}

TEST(OpenMpiPlan, MoreRanksThanSlotsOnRemoteHostsIsAnError) {
  LaunchOptions options = Job(5);
  options.host_slots = {{"node1", 2}, {"b", 2}};
  const std::string error = PlanError(options, Launcher::kOpenMpi, Machine());
  EXPECT_THAT(error, HasSubstr("-np 5"));
  EXPECT_THAT(error, HasSubstr("4 slots"));
  EXPECT_THAT(error, HasSubstr("-H node1:2,b:2"));

  options.host_slots.clear();
  options.hostfile = "cluster.hosts";
  options.host_slots = {{"a", 1}, {"b", 1}};
  EXPECT_THAT(PlanError(options, Launcher::kOpenMpi, Machine()),
              HasSubstr("hostfile cluster.hosts"));
}

TEST(OpenMpiPlan, MoreRanksThanSlotsOnTheLocalHostOnlyOversubscribes) {
  LaunchOptions options = Job(4);
  options.host_slots = {{"localhost", 2}};
  const std::vector<std::string> argv =
      PlanArgv(options, Launcher::kOpenMpi, Machine(8));
  EXPECT_TRUE(
      HasRun(argv, {"--oversubscribe", "--mca", "mpi_yield_when_idle", "1"}));
  EXPECT_TRUE(HasRun(argv, {"-H", "localhost:2"}));
}

TEST(OpenMpiPlan, HostfileIsPassedAsIs) {
  LaunchOptions options = Job(4);
  options.hostfile = "/etc/kolo/hosts";
  options.host_slots = {{"a", 2}, {"b", 2}};
  const std::vector<std::string> argv =
      PlanArgv(options, Launcher::kOpenMpi, Machine());
  EXPECT_TRUE(HasRun(argv, {"--hostfile", "/etc/kolo/hosts"}));
  EXPECT_THAT(argv, Not(Contains("-H")));
}

TEST(OpenMpiPlan, OutputFilenamePassesThrough) {
  LaunchOptions options = Job(2);
  options.output_filename = "logs/run1";
  absl::StatusOr<LaunchPlan> plan =
      BuildLaunchPlan(options, Launcher::kOpenMpi, Machine());
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_TRUE(HasRun(plan->argv, {"--output-filename", "logs/run1"}));
  // Open MPI creates the directory itself.
  EXPECT_TRUE(plan->directories_to_create.empty());
}

TEST(OpenMpiPlan, MpiArgsComeAfterKolorunsFlagsAndBeforeTheCommand) {
  LaunchOptions options = Job(2);
  options.mpi_args = {"--mca", "btl_tcp_if_include", "eth0"};
  options.log_level = "info";
  const std::vector<std::string> argv =
      PlanArgv(options, Launcher::kOpenMpi, Machine());
  EXPECT_TRUE(HasRun(argv, {"-x", "KOLO_LOG_LEVEL=info", "--mca",
                            "btl_tcp_if_include", "eth0", kKolorun}));
}

TEST(OpenMpiPlan, NoRankMonitorRunsTheCommandDirectly) {
  LaunchOptions options = Job(2);
  options.rank_monitor = false;
  const std::vector<std::string> argv =
      PlanArgv(options, Launcher::kOpenMpi, Machine());
  EXPECT_THAT(argv, Not(Contains("--rank-monitor")));
  EXPECT_TRUE(HasRun(argv, {"--tag-output", "./train", "--epochs", "3"}));
}

TEST(LaunchPlan, SurvivorsGetThePeerTimeoutToReportBeforeKolorunStopsThem) {
  const auto stop_after = [](const char* peer_timeout) {
    LaunchEnvironment env = Machine();
    if (peer_timeout != nullptr) env.env["KOLO_PEER_TIMEOUT_SECONDS"] = peer_timeout;
    absl::StatusOr<LaunchPlan> plan =
        BuildLaunchPlan(Job(2), Launcher::kHydra, env);
    EXPECT_TRUE(plan.ok()) << plan.status();
    return plan.ok() ? plan->stop_after_rank_failure_seconds : -1;
  };
  EXPECT_EQ(stop_after(nullptr), 7);  // the runtime's default 5 s, + 2
  EXPECT_EQ(stop_after("3"), 5);
  EXPECT_EQ(stop_after("0.5"), 3);  // never less than 3 s
  EXPECT_EQ(stop_after("junk"), 7);  // the runtime refuses it at init
}

TEST(OpenMpiPlan, StartTimeoutMakesRanksAnnounceTheirStart) {
  LaunchOptions options = Job(2);
  options.start_timeout_seconds = 30;
  absl::StatusOr<LaunchPlan> plan =
      BuildLaunchPlan(options, Launcher::kOpenMpi, Machine());
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_TRUE(HasRun(plan->argv, {kKolorun, "--rank-monitor",
                                  "--announce-start", "--", "./train"}));
  EXPECT_EQ(plan->start_timeout_seconds, 30);
  EXPECT_EQ(plan->num_ranks, 2);

  options.rank_monitor = false;
  EXPECT_THAT(PlanError(options, Launcher::kOpenMpi, Machine()),
              HasSubstr("--start-timeout needs the rank monitor"));
}

struct SettingCase {
  const char* name;
  void (*set)(LaunchOptions*);
  const char* exported;
};

TEST(OpenMpiPlan, EveryRuntimeFlagIsExportedAsItsVariable) {
  const SettingCase cases[] = {
      {"fusion", [](LaunchOptions* o) { o->fusion_threshold_mb = 32; },
       "KOLO_FUSION_THRESHOLD=33554432"},
      {"fusion off", [](LaunchOptions* o) { o->fusion_threshold_mb = 0; },
       "KOLO_FUSION_THRESHOLD=0"},
      {"cycle", [](LaunchOptions* o) { o->cycle_time_ms = "0.5"; },
       "KOLO_CYCLE_TIME_MS=0.5"},
      {"cache", [](LaunchOptions* o) { o->cache_capacity = 0; },
       "KOLO_CACHE_CAPACITY=0"},
      {"timeline",
       [](LaunchOptions* o) { o->timeline_filename = "/tmp/t.json"; },
       "KOLO_TIMELINE=/tmp/t.json"},
      {"stall check", [](LaunchOptions* o) { o->stall_check_seconds = 10; },
       "KOLO_STALL_CHECK_TIME_SECONDS=10"},
      {"stall shutdown",
       [](LaunchOptions* o) { o->stall_shutdown_seconds = 20; },
       "KOLO_STALL_SHUTDOWN_TIME_SECONDS=20"},
      {"autotune", [](LaunchOptions* o) { o->autotune = true; },
       "KOLO_AUTOTUNE=1"},
      {"cpu ops", [](LaunchOptions* o) { o->cpu_operations = "hierarchical"; },
       "KOLO_CPU_OPERATIONS=hierarchical"},
      {"gpu ops", [](LaunchOptions* o) { o->gpu_operations = "nccl"; },
       "KOLO_GPU_OPERATIONS=nccl"},
      {"log level", [](LaunchOptions* o) { o->log_level = "debug"; },
       "KOLO_LOG_LEVEL=debug"},
  };
  for (const SettingCase& c : cases) {
    LaunchOptions options = Job(2);
    c.set(&options);
    const std::vector<std::string> argv =
        PlanArgv(options, Launcher::kOpenMpi, Machine());
    EXPECT_TRUE(HasRun(argv, {"-x", c.exported}))
        << c.name << ": " << FormatCommandLine(argv);
    // Exported before the rank command, where mpirun reads its options.
    EXPECT_LT(IndexOf(argv, c.exported), IndexOf(argv, kKolorun)) << c.name;
  }
  // Unset settings export nothing.
  EXPECT_THAT(PlanArgv(Job(2), Launcher::kOpenMpi, Machine()),
              Not(Contains("-x")));
}

TEST(EnvExports, OrderIsFlagsThenEnvironmentThenX) {
  LaunchOptions options = Job(2);
  options.log_level = "info";
  options.env_exports = {"OMP_NUM_THREADS=4", "HOME"};
  LaunchEnvironment env = Machine();
  env.env["HOME"] = "/root";
  env.env["KOLO_CACHE_CAPACITY"] = "16";
  env.env["KOLO_CYCLE_TIME_MS"] = "2";
  const std::vector<std::string> argv =
      PlanArgv(options, Launcher::kOpenMpi, env);
  EXPECT_TRUE(HasRun(
      argv, {"-x", "KOLO_LOG_LEVEL=info", "-x", "KOLO_CACHE_CAPACITY", "-x",
             "KOLO_CYCLE_TIME_MS", "-x", "OMP_NUM_THREADS=4", "-x", "HOME"}))
      << FormatCommandLine(argv);
}

TEST(EnvExports, FlagOverridesTheSameVariableFromTheEnvironment) {
  LaunchOptions options = Job(2);
  options.log_level = "error";
  LaunchEnvironment env = Machine();
  env.env["KOLO_LOG_LEVEL"] = "trace";
  const std::vector<std::string> argv =
      PlanArgv(options, Launcher::kOpenMpi, env);
  EXPECT_THAT(argv, Contains("KOLO_LOG_LEVEL=error"));
  EXPECT_THAT(argv, Not(Contains("KOLO_LOG_LEVEL")));
}

TEST(EnvExports, KoloHostnameIsNotSpreadToEveryRank) {
  LaunchEnvironment env = Machine();
  env.env["KOLO_HOSTNAME"] = "pretend";
  EXPECT_THAT(PlanArgv(Job(2), Launcher::kOpenMpi, env),
              Not(Contains("KOLO_HOSTNAME")));
  LaunchOptions options = Job(2);
  options.env_exports = {"KOLO_HOSTNAME"};
  EXPECT_TRUE(HasRun(PlanArgv(options, Launcher::kOpenMpi, env),
                     {"-x", "KOLO_HOSTNAME"}));
}

TEST(EnvExports, BadXEntriesAreErrorsNamingThem) {
  LaunchOptions options = Job(2);
  options.env_exports = {"NOT_SET_ANYWHERE"};
  EXPECT_THAT(PlanError(options, Launcher::kOpenMpi, Machine()),
              HasSubstr("-x NOT_SET_ANYWHERE: NOT_SET_ANYWHERE is not set"));
  options.env_exports = {"1BAD=x"};
  EXPECT_THAT(PlanError(options, Launcher::kOpenMpi, Machine()),
              HasSubstr("'1BAD' is not a variable name"));
  options.env_exports = {"=x"};
  EXPECT_THAT(PlanError(options, Launcher::kOpenMpi, Machine()),
              HasSubstr("is not a variable name"));
  options.env_exports = {"A=1", "A=2"};
  EXPECT_THAT(PlanError(options, Launcher::kOpenMpi, Machine()),
              HasSubstr("-x A is given more than once"));
  options.env_exports = {"KOLO_LOG_LEVEL=debug"};
  options.log_level = "info";
  EXPECT_THAT(PlanError(options, Launcher::kOpenMpi, Machine()),
              HasSubstr("conflicts with --log-level"));
}

TEST(EnvExports, ValuesMayContainEqualsSigns) {
  LaunchOptions options = Job(2);
  options.env_exports = {"OPTS=a=b"};
  EXPECT_TRUE(HasRun(PlanArgv(options, Launcher::kOpenMpi, Machine()),
                     {"-x", "OPTS=a=b"}));
}

TEST(HydraPlan, TwoHostJobIsExactlyThisCommand) {
  LaunchOptions options = Job(4);
  options.host_slots = {{"a", 2}, {"b", 2}};
  options.fusion_threshold_mb = 1;
  options.env_exports = {"HOME", "OMP_NUM_THREADS=2", "USER"};
  options.mpi_args = {"-iface", "eth0"};
  LaunchEnvironment env = Machine(1, /*root=*/true);
  env.env["HOME"] = "/root";
  env.env["USER"] = "root";
  EXPECT_THAT(PlanArgv(options, Launcher::kHydra, env),
              ElementsAreArray<std::string>({kMpirun,
                                             "-hosts",
                                             "a:2,b:2",
                                             "-prepend-rank",
                                             "-genv",
                                             "KOLO_FUSION_THRESHOLD",
                                             "1048576",
                                             "-genv",
                                             "OMP_NUM_THREADS",
                                             "2",
                                             "-genvlist",
                                             "HOME,USER",
                                             "-iface",
                                             "eth0",
                                             "-n",
                                             "4",
                                             kKolorun,
                                             "--rank-monitor",
                                             "--",
                                             "./train",
                                             "--epochs",
                                             "3"}));
}

TEST(HydraPlan, NeverAddsOpenMpiOnlyFlags) {
  LaunchOptions options = Job(16);
  const std::vector<std::string> argv =
      PlanArgv(options, Launcher::kHydra, Machine(2, /*root=*/true));
  for (const char* flag : {"--allow-run-as-root", "--oversubscribe",
                           "--tag-output", "--map-by", "-x", "-np"}) {
    EXPECT_THAT(argv, Not(Contains(flag))) << flag;
  }
}

TEST(HydraPlan, HostfileBecomesHostsAndOutputGoesToPatternFiles) {
  LaunchOptions options = Job(2);
  options.hostfile = "hosts";
  options.host_slots = {{"a", 1}, {"b", 1}};
  options.output_filename = "out";
  absl::StatusOr<LaunchPlan> plan =
      BuildLaunchPlan(options, Launcher::kHydra, Machine());
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_TRUE(HasRun(plan->argv, {"-hosts", "a:1,b:1"}));
  EXPECT_TRUE(HasRun(plan->argv, {"-outfile-pattern", "out/rank.%r.stdout"}));
  EXPECT_THAT(plan->argv, Not(Contains("-errfile-pattern")));
  EXPECT_THAT(plan->directories_to_create, ElementsAreArray({"out"}));
}

TEST(HydraPlan, MoreRanksThanRemoteSlotsIsAnError) {
  LaunchOptions options = Job(3);
  options.host_slots = {{"a", 1}, {"b", 1}};
  EXPECT_THAT(PlanError(options, Launcher::kHydra, Machine()),
              HasSubstr("-np 3 is more ranks than the 2 slots"));
}

LaunchEnvironment SlurmMachine() {
  LaunchEnvironment env = Machine();
  env.srun_path = kSrun;
  env.env["SLURM_JOB_ID"] = "4242";
  return env;
}

TEST(SlurmPlan, JobIsExactlyThisCommand) {
  LaunchOptions options = Job(4);
  options.cpu_operations = "ring";
  options.env_exports = {"OMP_NUM_THREADS=2", "PATH"};
  options.output_filename = "logs";
  options.mpi_args = {"--mpi=pmix"};
  EXPECT_THAT(
      PlanArgv(options, Launcher::kSlurm, SlurmMachine()),
      ElementsAreArray<std::string>(
          {kSrun, "--ntasks", "4", "--kill-on-bad-exit=1", "--cpu-bind=none",
           "--quit-on-interrupt", "--label", "--output=logs/rank.%t.stdout",
           "--export=ALL,KOLO_CPU_OPERATIONS=ring,OMP_NUM_THREADS=2,PATH",
           "--mpi=pmix", kKolorun, "--rank-monitor", "--", "./train",
           "--epochs", "3"}));
}

TEST(SlurmPlan, PicksThePmiPluginOfTheRanksMpi) {
  LaunchEnvironment env = SlurmMachine();
  env.srun_mpi_plugins = {"pmix", "none", "cray_shasta", "pmi2"};
  EXPECT_THAT(
      PlanArgv(Job(2), Launcher::kSlurm, env),
      ElementsAreArray<std::string>(
          {kSrun, "--ntasks", "2", "--mpi=pmix", "--kill-on-bad-exit=1",
           "--cpu-bind=none", "--quit-on-interrupt", "--label", kKolorun,
           "--rank-monitor", "--", "./train", "--epochs", "3"}));
  env.built_mpi = Launcher::kHydra;
  EXPECT_THAT(PlanArgv(Job(2), Launcher::kSlurm, env), Contains("--mpi=pmi2"));

  // The user's choice stands: --mpi in --mpi-args or SLURM_MPI_TYPE.
  LaunchOptions chosen = Job(2);
  chosen.mpi_args = {"--mpi", "pmix_v4"};
  EXPECT_FALSE(ShouldChooseSrunMpiPlugin(chosen, env));
  EXPECT_THAT(PlanArgv(chosen, Launcher::kSlurm, env),
              Not(Contains("--mpi=pmi2")));
  LaunchEnvironment typed = env;
  typed.env["SLURM_MPI_TYPE"] = "pmi2";
  EXPECT_FALSE(ShouldChooseSrunMpiPlugin(Job(2), typed));
  EXPECT_TRUE(ShouldChooseSrunMpiPlugin(Job(2), env));

  // A plugin srun does not have is not asked for; --verbose says why.
  env.srun_mpi_plugins = {"none", "pmix"};
  absl::StatusOr<LaunchPlan> plan =
      BuildLaunchPlan(Job(2), Launcher::kSlurm, env);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_THAT(plan->argv, Not(Contains(testing::StartsWith("--mpi"))));
  EXPECT_THAT(plan->notes,
              Contains(HasSubstr("ranks use MPICH, but srun offers no pmi2 "
                                 "plugin")));
}

TEST(SrunMpiList, ParsesSlurmsOutput) {
  EXPECT_THAT(
      ParseSrunMpiList("MPI plugin types are...\n\tpmix\n\tnone\n"
                       "\tcray_shasta\n\tpmi2\nspecific pmix plugin "
                       "versions available: pmix_v4\n"),
      ElementsAreArray<std::string>({"pmix", "none", "cray_shasta", "pmi2"}));
  EXPECT_THAT(ParseSrunMpiList("srun: error: something else\n"),
              testing::IsEmpty());
}

TEST(LauncherMismatch, WarnsWhenMpirunIsAnotherMpis) {
  LaunchEnvironment env = Machine();
  EXPECT_EQ(LauncherMismatchWarning(Launcher::kOpenMpi, env), std::nullopt);
  EXPECT_EQ(LauncherMismatchWarning(Launcher::kSlurm, env), std::nullopt);
  std::optional<std::string> warning =
      LauncherMismatchWarning(Launcher::kHydra, env);
  ASSERT_TRUE(warning.has_value());
  EXPECT_THAT(*warning, HasSubstr("/usr/bin/mpirun is MPICH/Hydra's launcher, "
                                  "but kolo here is built against Open MPI"));
  env.built_mpi = Launcher::kHydra;
  EXPECT_EQ(LauncherMismatchWarning(Launcher::kHydra, env), std::nullopt);
  EXPECT_TRUE(LauncherMismatchWarning(Launcher::kOpenMpi, env).has_value());
}

TEST(SlurmPlan, NamedHostsBecomeTheTaskLayoutInSlotOrder) {
  // kolorun's elastic mode names the discovered nodes of the allocation:
  // srun places rank by rank on a repeated --nodelist (the arbitrary
  // distribution), filling each host's slots first, like --map-by slot.
  LaunchOptions options = Job(4);
  options.host_slots = {{"node3", 2}, {"node1", 1}, {"node2", 4}};
  std::vector<std::string> argv =
      PlanArgv(options, Launcher::kSlurm, SlurmMachine());
  EXPECT_THAT(argv, Contains("--nodelist=node3,node3,node1,node2"));
  EXPECT_THAT(argv, Contains("--distribution=arbitrary"));
  EXPECT_THAT(argv, Contains("4"));  // --ntasks 4
  // No hosts named: Slurm places the ranks.
  EXPECT_THAT(PlanArgv(Job(4), Launcher::kSlurm, SlurmMachine()),
              Not(Contains(testing::StartsWith("--nodelist"))));
  options.num_proc = 8;
  EXPECT_THAT(PlanError(options, Launcher::kSlurm, SlurmMachine()),
              HasSubstr("-np 8 is more ranks than the 7 slots of "
                        "node3:2,node1:1,node2:4"));
}

TEST(SlurmPlan, WithoutExportsLeavesSrunsDefault) {
  EXPECT_THAT(PlanArgv(Job(2), Launcher::kSlurm, SlurmMachine()),
              Not(Contains(testing::StartsWith("--export"))));
}

TEST(SlurmPlan, ErrorsNameTheCause) {
  LaunchOptions options = Job(2);
  options.env_exports = {"LIST=a,b"};
  EXPECT_THAT(PlanError(options, Launcher::kSlurm, SlurmMachine()),
              HasSubstr("the value of LIST contains a comma"));

  LaunchEnvironment env = SlurmMachine();
  env.env["SLURM_NTASKS"] = "4";
  EXPECT_TRUE(BuildLaunchPlan(Job(4), Launcher::kSlurm, env).ok());
  EXPECT_THAT(PlanError(Job(5), Launcher::kSlurm, env),
              HasSubstr("-np 5 is more ranks than the 4 tasks of Slurm "
                        "allocation 4242"));

  EXPECT_THAT(PlanError(Job(2), Launcher::kSlurm, Machine()),
              HasSubstr("SLURM_JOB_ID is not set"));
}

TEST(ChooseSrun, OnlyInsideAnAllocationWithSrunAndNoHosts) {
  EXPECT_TRUE(ShouldUseSrun(Job(2), SlurmMachine()));
  EXPECT_FALSE(ShouldUseSrun(Job(2), Machine()));
  LaunchEnvironment no_srun = SlurmMachine();
  no_srun.srun_path.clear();
  EXPECT_FALSE(ShouldUseSrun(Job(2), no_srun));
  LaunchOptions with_hosts = Job(2);
  with_hosts.host_slots = {{"a", 2}};
  EXPECT_FALSE(ShouldUseSrun(with_hosts, SlurmMachine()));
}

TEST(DetectMpi, RecognisesOpenMpiAndHydra) {
  EXPECT_EQ(
      *DetectMpiImplementation("mpirun (Open MPI) 4.1.4\n\nReport bugs to "
                               "http://www.open-mpi.org/community/help/\n"),
      Launcher::kOpenMpi);
  EXPECT_EQ(*DetectMpiImplementation("HYDRA build details:\n    Version:  "
                                     "                4.0.2\n"),
            Launcher::kHydra);
  EXPECT_EQ(*DetectMpiImplementation(
                "Intel(R) MPI Library for Linux* OS, Version 2021.6"),
            Launcher::kHydra);
  absl::StatusOr<Launcher> unknown =
      DetectMpiImplementation("mpirun: some other launcher 1.0\nmore\n");
  ASSERT_FALSE(unknown.ok());
  EXPECT_THAT(std::string(unknown.status().message()),
              HasSubstr("'mpirun: some other launcher 1.0'"));
  EXPECT_THAT(std::string(unknown.status().message()),
              HasSubstr("openmpi-bin"));
}

TEST(LocalHost, RecognisesNamesAndAddressesOfThisMachine) {
  const LaunchEnvironment env = Machine();
  for (const char* local : {"localhost", "LOCALHOST", "127.0.0.1", "127.1.2.3",
                            "node1.cluster.example", "node1", "NODE1",
                            "node1.other-domain", "10.0.0.1", "fe80::1"}) {
    EXPECT_TRUE(IsLocalHost(local, env)) << local;
  }
  for (const char* remote :
       {"node2", "node10", "10.0.0.2", "10.0.0.10", "node"}) {
    EXPECT_FALSE(IsLocalHost(remote, env)) << remote;
  }
}

TEST(FormatCommandLine, QuotesOnlyWhatTheShellWouldSplitOrExpand) {
  EXPECT_EQ(FormatCommandLine({"/usr/bin/mpirun", "-x", "A=1", "a b", "",
                               "it's", "$HOME", "x:y,z"}),
            "/usr/bin/mpirun -x A=1 'a b' '' 'it'\\''s' '$HOME' x:y,z");
}

}  // namespace
}  // namespace launcher
}  // namespace kolo
