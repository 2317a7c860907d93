// Parsing of the KOLO_* environment. Each variable is declared once, in the
// table in OptionsFromLookup, with the field it sets.
#include "runtime/core/config.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace kolo {
namespace {

Status Malformed(const char* name, absl::string_view value,
                 absl::string_view expected) {
  return absl::InvalidArgumentError(
      absl::StrCat("environment variable ", name, "='", value,
                   "' is malformed: expected ", expected));
}

Status ParseIntInRange(const char* name, absl::string_view value,
                       int64_t low, int64_t high, int64_t* out) {
  int64_t parsed;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(value), &parsed) ||
      parsed < low || parsed > high) {
    return Malformed(name, value,
                     absl::StrCat("an integer from ", low, " to ", high));
  }
  *out = parsed;
  return absl::OkStatus();
}

Status ParseNonNegativeInt(const char* name, absl::string_view value,
                           int64_t limit, int64_t* out) {
  return ParseIntInRange(name, value, 0, limit, out);
}

Status ParseNonNegativeDouble(const char* name, absl::string_view value,
                              double limit, double* out) {
  double parsed;
  if (!absl::SimpleAtod(absl::StripAsciiWhitespace(value), &parsed) ||
      !std::isfinite(parsed) || parsed < 0 || parsed > limit) {
    return Malformed(name, value, absl::StrCat("a number from 0 to ", limit));
  }
  *out = parsed;
  return absl::OkStatus();
}

Status ParseString(const char* name, absl::string_view value, size_t limit,
                   std::string* out) {
  if (value.size() > limit) {
    return Malformed(name, value.substr(0, 64),
                     absl::StrCat("at most ", limit, " characters"));
  }
  *out = std::string(value);
  return absl::OkStatus();
}

Status ParseBool(const char* name, absl::string_view value, bool* out) {
  const std::string lower =
      absl::AsciiStrToLower(absl::StripAsciiWhitespace(value));
  if (lower == "1" || lower == "true" || lower == "yes" || lower == "on") {
    *out = true;
  } else if (lower == "0" || lower == "false" || lower == "no" ||
             lower == "off" || lower.empty()) {
    *out = false;
  } else {
    return Malformed(name, value, "0 or 1");
  }
  return absl::OkStatus();
}

// Parses one of a fixed set of lower-case words into the matching value.
template <typename T, size_t N>
Status ParseChoice(const char* name, absl::string_view value,
                   const std::pair<const char*, T> (&choices)[N], T* out) {
  const std::string lower =
      absl::AsciiStrToLower(absl::StripAsciiWhitespace(value));
  std::vector<std::string> words;
  for (const auto& [word, choice] : choices) {
    if (lower == word) {
      *out = choice;
      return absl::OkStatus();
    }
    words.push_back(word);
  }
  return Malformed(name, value,
                   absl::StrCat("one of ", absl::StrJoin(words, ", ")));
}

constexpr std::pair<const char*, CpuOperations> kCpuOperations[] = {
    {"auto", CpuOperations::kAuto},
    {"shm", CpuOperations::kShm},
    {"ring", CpuOperations::kRing},
    {"hierarchical", CpuOperations::kHierarchical},
    {"mpi", CpuOperations::kMpi},
};

constexpr std::pair<const char*, GpuOperations> kGpuOperations[] = {
    {"auto", GpuOperations::kAuto},
    {"nccl", GpuOperations::kNccl},
    {"hierarchical", GpuOperations::kHierarchical},
};

constexpr std::pair<const char*, RingTransport> kRingTransports[] = {
    {"tcp", RingTransport::kTcp},
    {"mpi", RingTransport::kMpi},
};

constexpr std::pair<const char*, MemoryAllocator> kMemoryAllocators[] = {
    {"auto", MemoryAllocator::kAuto},
    {"tcmalloc", MemoryAllocator::kTcmalloc},
    {"jemalloc", MemoryAllocator::kJemalloc},
    {"glibc", MemoryAllocator::kGlibc},
    {"system", MemoryAllocator::kSystem},
};

constexpr std::pair<const char*, LogLevel> kLogLevels[] = {
    {"trace", LogLevel::kTrace},  {"debug", LogLevel::kDebug},
    {"info", LogLevel::kInfo},    {"warning", LogLevel::kWarning},
    {"warn", LogLevel::kWarning}, {"error", LogLevel::kError},
};

}  // namespace

StatusOr<Options> OptionsFromLookup(const EnvironmentLookup& lookup) {
  Options options;
  // One entry per variable: name and how it sets its field.
  const std::pair<const char*, std::function<Status(const char*, const char*)>>
      parsers[] = {
          {"KOLO_FUSION_THRESHOLD",
           [&](const char* n, const char* v) {
             return ParseNonNegativeInt(n, v, kMaxFusionThresholdBytes,
                                        &options.fusion_threshold_bytes);
           }},
          {"KOLO_CYCLE_TIME_MS",
           [&](const char* n, const char* v) {
             return ParseNonNegativeDouble(n, v, kMaxCycleTimeMs,
                                           &options.cycle_time_ms);
           }},
          {"KOLO_THREAD_NICE",
           [&](const char* n, const char* v) {
             return ParseIntInRange(n, v, -20, 19, &options.thread_nice);
           }},
          {"KOLO_PRIORITY_CYCLE_BYTES",
           [&](const char* n, const char* v) {
             return ParseNonNegativeInt(n, v, kMaxFusionThresholdBytes,
                                        &options.priority_cycle_bytes);
           }},
          {"KOLO_CACHE_CAPACITY",
           [&](const char* n, const char* v) {
             return ParseNonNegativeInt(n, v, kMaxCacheCapacity,
                                        &options.cache_capacity);
           }},
          {"KOLO_TIMELINE",
           [&](const char* n, const char* v) {
             return ParseString(n, v, 4096, &options.timeline_path);
           }},
          {"KOLO_TIMELINE_MARK_CYCLES",
           [&](const char* n, const char* v) {
             return ParseBool(n, v, &options.timeline_mark_cycles);
           }},
          {"KOLO_STALL_CHECK_TIME_SECONDS",
           [&](const char* n, const char* v) {
             return ParseNonNegativeDouble(n, v, kMaxSeconds,
                                           &options.stall_check_seconds);
           }},
          {"KOLO_STALL_SHUTDOWN_TIME_SECONDS",
           [&](const char* n, const char* v) {
             return ParseNonNegativeDouble(n, v, kMaxSeconds,
                                           &options.stall_shutdown_seconds);
           }},
          {"KOLO_CPU_OPERATIONS",
           [&](const char* n, const char* v) {
             return ParseChoice(n, v, kCpuOperations, &options.cpu_operations);
           }},
          {"KOLO_LOG_LEVEL",
           [&](const char* n, const char* v) {
             return ParseChoice(n, v, kLogLevels, &options.log_level);
           }},
          {"KOLO_AUTOTUNE",
           [&](const char* n, const char* v) {
             return ParseBool(n, v, &options.autotune);
           }},
          {"KOLO_SHM_SLOT_BYTES",
           [&](const char* n, const char* v) {
             return ParseNonNegativeInt(n, v, kMaxShmSlotBytes,
                                        &options.shm_slot_bytes);
           }},
          {"KOLO_SHM_SINGLE_COPY_BYTES",
           [&](const char* n, const char* v) {
             return ParseNonNegativeInt(n, v, kMaxShmSlotBytes,
                                        &options.shm_single_copy_bytes);
           }},
          {"KOLO_PEER_TIMEOUT_SECONDS",
           [&](const char* n, const char* v) {
             return ParseNonNegativeDouble(n, v, kMaxSeconds,
                                           &options.peer_timeout_seconds);
           }},
          {"KOLO_GPU_OPERATIONS",
           [&](const char* n, const char* v) {
             return ParseChoice(n, v, kGpuOperations, &options.gpu_operations);
           }},
          {"KOLO_FAST_LANE",
           [&](const char* n, const char* v) {
             return ParseBool(n, v, &options.fast_lane);
           }},
          {"KOLO_RING_TRANSPORT",
           [&](const char* n, const char* v) {
             return ParseChoice(n, v, kRingTransports, &options.ring_transport);
           }},
          {"KOLO_TCP_IFACE",
           [&](const char* n, const char* v) {
             return ParseString(n, v, 15, &options.tcp_iface);  // IFNAMSIZ-1
           }},
          {"KOLO_HOSTNAME",
           [&](const char* n, const char* v) {
             return ParseString(n, v, 255, &options.hostname);
           }},
          {"KOLO_MEMORY_ALLOCATOR",
           [&](const char* n, const char* v) {
             return ParseChoice(n, v, kMemoryAllocators,
                                &options.memory_allocator);
           }},
          {"KOLO_ELASTIC_RESTART",
           [&](const char* n, const char* v) {
             return ParseNonNegativeInt(n, v, kMaxElasticRestart,
                                        &options.elastic_restart);
           }},
          {"KOLO_ELASTIC_STOP_FILE",
           [&](const char* n, const char* v) {
             return ParseString(n, v, 4096, &options.elastic_stop_file);
           }},
      };
  for (const auto& [name, parse] : parsers) {
    const char* value = lookup(name);
    if (value == nullptr) continue;
    if (Status status = parse(name, value); !status.ok()) return status;
  }
  return options;
}

StatusOr<Options> OptionsFromEnvironment() {
  return OptionsFromLookup([](const char* name) { return std::getenv(name); });
}

const char* CpuOperationsName(CpuOperations value) {
  for (const auto& [word, choice] : kCpuOperations) {
    if (choice == value) return word;
  }
  return "invalid";
}

AgreedSettings AgreedSettingsOf(const Options& options, bool nccl_built) {
  AgreedSettings s{};
  // Bumped whenever negotiation messages or data-plane layouts change.
  std::strncpy(s.version, "kolo-0.1/p4", sizeof(s.version) - 1);
  s.fusion_threshold_bytes = options.fusion_threshold_bytes;
  s.shm_slot_bytes = options.shm_slot_bytes;
  s.shm_single_copy_bytes = options.shm_single_copy_bytes;
  s.cache_capacity = options.cache_capacity;
  s.peer_timeout_seconds = options.peer_timeout_seconds;
  s.cpu_operations = static_cast<int32_t>(options.cpu_operations);
  s.gpu_operations = static_cast<int32_t>(options.gpu_operations);
  s.ring_transport = static_cast<int32_t>(options.ring_transport);
  s.nccl_built = nccl_built ? 1 : 0;
  s.fast_lane = options.fast_lane ? 1 : 0;
  s.autotune = options.autotune ? 1 : 0;
  return s;
}

Status CheckAgreement(const std::vector<AgreedSettings>& all) {
  // One row per setting: what it is called and how a rank's value reads.
  using Show = std::function<std::string(const AgreedSettings&)>;
  const std::pair<const char*, Show> settings[] = {
      {"the kolo version (every rank must run the same kolo build)",
       [](const AgreedSettings& s) {
         return std::string(s.version, strnlen(s.version, sizeof(s.version)));
       }},
      {"KOLO_FUSION_THRESHOLD",
       [](const AgreedSettings& s) {
         return absl::StrCat(s.fusion_threshold_bytes);
       }},
      {"KOLO_SHM_SLOT_BYTES",
       [](const AgreedSettings& s) { return absl::StrCat(s.shm_slot_bytes); }},
      {"KOLO_SHM_SINGLE_COPY_BYTES",
       [](const AgreedSettings& s) {
         return absl::StrCat(s.shm_single_copy_bytes);
       }},
      {"KOLO_CACHE_CAPACITY",
       [](const AgreedSettings& s) { return absl::StrCat(s.cache_capacity); }},
      {"KOLO_PEER_TIMEOUT_SECONDS",
       [](const AgreedSettings& s) {
         return absl::StrCat(s.peer_timeout_seconds);
       }},
      {"KOLO_CPU_OPERATIONS",
       [](const AgreedSettings& s) {
         return std::string(
             CpuOperationsName(static_cast<CpuOperations>(s.cpu_operations)));
       }},
      {"KOLO_GPU_OPERATIONS",
       [](const AgreedSettings& s) {
         return std::string(
             GpuOperationsName(static_cast<GpuOperations>(s.gpu_operations)));
       }},
      {"KOLO_RING_TRANSPORT",
       [](const AgreedSettings& s) {
         return std::string(
             RingTransportName(static_cast<RingTransport>(s.ring_transport)));
       }},
      {"KOLO_FAST_LANE",
       [](const AgreedSettings& s) {
         return std::string(s.fast_lane ? "1" : "0");
       }},
      {"KOLO_AUTOTUNE",
       [](const AgreedSettings& s) {
         return std::string(s.autotune ? "1" : "0");
       }},
      {"NCCL support (every rank must run a kolo built with the same CUDA "
       "options)",
       [](const AgreedSettings& s) {
         return std::string(s.nccl_built ? "built with NCCL" : "no NCCL");
       }},
  };
  for (const auto& [name, show] : settings) {
    const std::string reference = show(all.front());
    for (size_t rank = 1; rank < all.size(); ++rank) {
      const std::string value = show(all[rank]);
      if (value != reference) {
        return absl::InvalidArgumentError(absl::StrCat(
            "ranks disagree on ", name, ": rank 0 has ", reference,
            " but rank ", rank, " has ", value,
            "; every rank of a job must use the same value (start them with "
            "the same environment, e.g. kolorun or mpirun -x)"));
      }
    }
  }
  return absl::OkStatus();
}

const char* RingTransportName(RingTransport value) {
  for (const auto& [word, choice] : kRingTransports) {
    if (choice == value) return word;
  }
  return "invalid";
}

const char* MemoryAllocatorName(MemoryAllocator value) {
  for (const auto& [word, choice] : kMemoryAllocators) {
    if (choice == value) return word;
  }
  return "invalid";
}

const char* GpuOperationsName(GpuOperations value) {
  for (const auto& [word, choice] : kGpuOperations) {
    if (choice == value) return word;
  }
  return "invalid";
}

}  // namespace kolo
