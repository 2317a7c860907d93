// Tests of the KOLO_* environment parsing.
#include "runtime/core/config.h"

#include <cstdlib>
#include <map>
#include <string>

#include <gtest/gtest.h>

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
      {"KOLO_PEER_TIMEOUT_SECONDS", "2.5"},
      {"KOLO_GPU_OPERATIONS", "Hierarchical"},
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
  EXPECT_EQ(options->peer_timeout_seconds, 2.5);
  EXPECT_EQ(options->gpu_operations, GpuOperations::kHierarchical);
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
      {{"KOLO_PEER_TIMEOUT_SECONDS", "-1"}},
      {{"KOLO_GPU_OPERATIONS", "shm"}},
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
