// Tests of the KOLO_* environment parsing.
#include "runtime/core/config.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "kolo/kolo.h"

namespace kolo {
namespace {

StatusOr<Options> Parse(const std::map<std::string, std::string>& env) {
  return OptionsFromLookup([&env](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  });
}

TEST(Config, DefaultsMatchTheDesign) {
  StatusOr<Options> options = Parse({});
  ASSERT_TRUE(options.ok());
  EXPECT_EQ(options->fusion_threshold_bytes, 64 << 20);
  EXPECT_EQ(options->cycle_time_ms, 1.0);
  EXPECT_EQ(options->cache_capacity, 1024);
  EXPECT_EQ(options->timeline_path, "");
  EXPECT_EQ(options->stall_check_seconds, 60);
  EXPECT_EQ(options->stall_shutdown_seconds, 300);
  EXPECT_EQ(options->cpu_operations, CpuOperations::kAuto);
  EXPECT_EQ(options->log_level, LogLevel::kWarning);
  EXPECT_FALSE(options->autotune);
  EXPECT_EQ(options->gpu_operations, GpuOperations::kAuto);
  EXPECT_EQ(options->memory_allocator, MemoryAllocator::kAuto);
  EXPECT_EQ(options->elastic_restart, 0);
  EXPECT_EQ(options->elastic_stop_file, "");
  EXPECT_EQ(options->thread_nice, kThreadNiceUnset);
  EXPECT_EQ(options->priority_cycle_bytes, 4 << 20);
  EXPECT_EQ(options->shm_single_copy_bytes, 0);
}

TEST(Config, ReadsEveryVariable) {
  StatusOr<Options> options = Parse({
      {"KOLO_FUSION_THRESHOLD", "1024"},
      {"KOLO_CYCLE_TIME_MS", "2.5"},
      {"KOLO_CACHE_CAPACITY", "0"},
      {"KOLO_TIMELINE", "/tmp/t.json"},
      {"KOLO_STALL_CHECK_TIME_SECONDS", "5"},
      {"KOLO_STALL_SHUTDOWN_TIME_SECONDS", "10"},
      {"KOLO_CPU_OPERATIONS", "MPI"},
      {"KOLO_LOG_LEVEL", "debug"},
      {"KOLO_AUTOTUNE", "1"},
      {"KOLO_TIMELINE_MARK_CYCLES", "yes"},
      {"KOLO_SHM_SLOT_BYTES", "65536"},
      {"KOLO_SHM_SINGLE_COPY_BYTES", "131072"},
      {"KOLO_PEER_TIMEOUT_SECONDS", "2.5"},
      {"KOLO_GPU_OPERATIONS", "Hierarchical"},
      {"KOLO_RING_TRANSPORT", "MPI"},
      {"KOLO_TCP_IFACE", "eth1"},
      {"KOLO_HOSTNAME", "node7"},
      {"KOLO_MEMORY_ALLOCATOR", "Jemalloc"},
      {"KOLO_ELASTIC_RESTART", "3"},
      {"KOLO_ELASTIC_STOP_FILE", "/tmp/stop"},
      {"KOLO_THREAD_NICE", "-5"},
      {"KOLO_PRIORITY_CYCLE_BYTES", "1048576"},
  });
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->fusion_threshold_bytes, 1024);
  EXPECT_EQ(options->cycle_time_ms, 2.5);
  EXPECT_EQ(options->cache_capacity, 0);
  EXPECT_EQ(options->timeline_path, "/tmp/t.json");
  EXPECT_EQ(options->stall_check_seconds, 5);
  EXPECT_EQ(options->stall_shutdown_seconds, 10);
  EXPECT_EQ(options->cpu_operations, CpuOperations::kMpi);
  EXPECT_EQ(options->log_level, LogLevel::kDebug);
  EXPECT_TRUE(options->autotune);
  EXPECT_TRUE(options->timeline_mark_cycles);
  EXPECT_EQ(options->shm_slot_bytes, 65536);
  EXPECT_EQ(options->shm_single_copy_bytes, 131072);
  EXPECT_EQ(options->peer_timeout_seconds, 2.5);
  EXPECT_EQ(options->gpu_operations, GpuOperations::kHierarchical);
  EXPECT_EQ(options->ring_transport, RingTransport::kMpi);
  EXPECT_EQ(options->tcp_iface, "eth1");
  EXPECT_EQ(options->hostname, "node7");
  EXPECT_EQ(options->memory_allocator, MemoryAllocator::kJemalloc);
  EXPECT_STREQ(MemoryAllocatorName(options->memory_allocator), "jemalloc");
  EXPECT_EQ(options->elastic_restart, 3);
  EXPECT_EQ(options->elastic_stop_file, "/tmp/stop");
  EXPECT_EQ(options->thread_nice, -5);
  EXPECT_EQ(options->priority_cycle_bytes, 1048576);
}

TEST(Config, MalformedValuesNameTheVariableAndValue) {
  const std::map<std::string, std::string> bad[] = {
      {{"KOLO_FUSION_THRESHOLD", "64MB"}},
      {{"KOLO_FUSION_THRESHOLD", "-1"}},
      {{"KOLO_CYCLE_TIME_MS", "fast"}},
      {{"KOLO_CACHE_CAPACITY", "1.5"}},
      {{"KOLO_STALL_CHECK_TIME_SECONDS", "nan"}},
      {{"KOLO_STALL_SHUTDOWN_TIME_SECONDS", ""}},
      {{"KOLO_CPU_OPERATIONS", "gpu"}},
      {{"KOLO_LOG_LEVEL", "loud"}},
      {{"KOLO_AUTOTUNE", "maybe"}},
      {{"KOLO_SHM_SLOT_BYTES", "big"}},
      {{"KOLO_SHM_SINGLE_COPY_BYTES", "-1"}},
      {{"KOLO_SHM_SINGLE_COPY_BYTES", "64K"}},
      {{"KOLO_PEER_TIMEOUT_SECONDS", "-1"}},
      {{"KOLO_GPU_OPERATIONS", "shm"}},
      {{"KOLO_RING_TRANSPORT", "udp"}},
      {{"KOLO_MEMORY_ALLOCATOR", "mimalloc"}},
      {{"KOLO_ELASTIC_RESTART", "-1"}},
      {{"KOLO_ELASTIC_RESTART", "2x"}},
      {{"KOLO_THREAD_NICE", "-21"}},
      {{"KOLO_THREAD_NICE", "20"}},
      {{"KOLO_THREAD_NICE", "high"}},
      {{"KOLO_PRIORITY_CYCLE_BYTES", "-1"}},
      // Sizes beyond their bounds (a huge fusion buffer used to throw
      // bad_alloc through kolo_init).
      {{"KOLO_FUSION_THRESHOLD", "1099511627776000"}},
      {{"KOLO_FUSION_THRESHOLD", "17179869185"}},
      {{"KOLO_SHM_SLOT_BYTES", "1073741825"}},
      {{"KOLO_CACHE_CAPACITY", "1048577"}},
      {{"KOLO_CYCLE_TIME_MS", "1e9"}},
      {{"KOLO_PEER_TIMEOUT_SECONDS", "1e300"}},
      {{"KOLO_TCP_IFACE", "an-interface-name-longer-than-linux-allows"}},
  };
  for (const auto& env : bad) {
    StatusOr<Options> options = Parse(env);
    const auto& [name, value] = *env.begin();
    ASSERT_FALSE(options.ok()) << name << "=" << value;
    EXPECT_EQ(options.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(options.status().message().find(name), std::string::npos)
        << options.status();
    EXPECT_NE(options.status().message().find("'" + value + "'"),
              std::string::npos)
        << options.status();
  }
}

TEST(Config, GpuOperationsAcceptsEveryChoice) {
  for (GpuOperations choice : {GpuOperations::kAuto, GpuOperations::kNccl,
                               GpuOperations::kHierarchical}) {
    StatusOr<Options> options =
        Parse({{"KOLO_GPU_OPERATIONS", GpuOperationsName(choice)}});
    ASSERT_TRUE(options.ok()) << GpuOperationsName(choice);
    EXPECT_EQ(options->gpu_operations, choice) << GpuOperationsName(choice);
  }
  StatusOr<Options> bad = Parse({{"KOLO_GPU_OPERATIONS", "nvlink"}});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("one of auto, nccl, hierarchical"),
            std::string::npos)
      << bad.status();
}

TEST(Config, BoundsAreAccepted) {
  StatusOr<Options> options = Parse({{"KOLO_FUSION_THRESHOLD", "17179869184"},
                                     {"KOLO_SHM_SLOT_BYTES", "1073741824"},
                                     {"KOLO_CACHE_CAPACITY", "1048576"}});
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->fusion_threshold_bytes, int64_t{16} << 30);
}

TEST(Config, AgreementNamesTheVariableBothRanksAndBothValues) {
  Options base;
  std::vector<AgreedSettings> all(4, AgreedSettingsOf(base, false));
  EXPECT_TRUE(CheckAgreement(all).ok());

  Options slot = base;
  slot.shm_slot_bytes = 1 << 20;
  all[2] = AgreedSettingsOf(slot, false);
  Status s = CheckAgreement(all);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("KOLO_SHM_SLOT_BYTES: rank 0 has 524288 but "
                             "rank 2 has 1048576"),
            std::string::npos)
      << s;

  // Each setting that must agree is checked, not only the slot size.
  struct Case {
    const char* variable;
    std::function<void(Options&)> change;
  };
  const Case cases[] = {
      {"KOLO_FUSION_THRESHOLD",
       [](Options& o) { o.fusion_threshold_bytes = 65536; }},
      {"KOLO_CACHE_CAPACITY", [](Options& o) { o.cache_capacity = 7; }},
      {"KOLO_SHM_SINGLE_COPY_BYTES",
       [](Options& o) { o.shm_single_copy_bytes = 65536; }},
      {"KOLO_PEER_TIMEOUT_SECONDS",
       [](Options& o) { o.peer_timeout_seconds = 9; }},
      {"KOLO_CPU_OPERATIONS",
       [](Options& o) { o.cpu_operations = CpuOperations::kRing; }},
      {"KOLO_GPU_OPERATIONS",
       [](Options& o) { o.gpu_operations = GpuOperations::kNccl; }},
      {"KOLO_RING_TRANSPORT",
       [](Options& o) { o.ring_transport = RingTransport::kMpi; }},
  };
  for (const Case& c : cases) {
    Options changed = base;
    c.change(changed);
    std::vector<AgreedSettings> pair = {AgreedSettingsOf(base, false),
                                        AgreedSettingsOf(changed, false)};
    const Status status = CheckAgreement(pair);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.variable;
    EXPECT_NE(status.message().find(c.variable), std::string::npos) << status;
    EXPECT_NE(status.message().find("rank 1"), std::string::npos) << status;
  }
  // A build with NCCL beside one without.
  std::vector<AgreedSettings> builds = {AgreedSettingsOf(base, true),
                                        AgreedSettingsOf(base, false)};
  EXPECT_NE(CheckAgreement(builds).message().find("NCCL"), std::string::npos);
  // Settings that only rank 0 uses, or that are per rank, may differ.
  Options local = base;
  local.stall_check_seconds = 1;
  local.log_level = LogLevel::kTrace;
  local.hostname = "elsewhere";
  local.tcp_iface = "eth9";
  std::vector<AgreedSettings> fine = {AgreedSettingsOf(base, false),
                                      AgreedSettingsOf(local, false)};
  EXPECT_TRUE(CheckAgreement(fine).ok());
}

TEST(Config, InitFailsOnMalformedEnvironment) {
  setenv("KOLO_CYCLE_TIME_MS", "abc", 1);
  const Status status = Init();
  unsetenv("KOLO_CYCLE_TIME_MS");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("KOLO_CYCLE_TIME_MS"), std::string::npos);
  EXPECT_FALSE(IsInitialized());
}

}  // namespace
}  // namespace kolo
