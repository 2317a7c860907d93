// Parsing of the KOLO_* environment. Each variable is declared once, in the
// table in OptionsFromLookup, with the field it sets.
#include "runtime/core/config.h"

#include <cmath>
#include <cstdlib>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace kolo {
namespace {

Status Malformed(const char* name, absl::string_view value,
                 absl::string_view expected) {
  return absl::InvalidArgumentError(absl::StrCat(
      "environment variable ", name, "='", value, "' is malformed: expected ",
      expected));
}

Status ParseNonNegativeInt(const char* name, absl::string_view value,
                           int64_t* out) {
  int64_t parsed;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(value), &parsed) ||
      parsed < 0) {
    return Malformed(name, value, "a non-negative integer");
  }
  *out = parsed;
  return absl::OkStatus();
}

Status ParseNonNegativeDouble(const char* name, absl::string_view value,
                              double* out) {
  double parsed;
  if (!absl::SimpleAtod(absl::StripAsciiWhitespace(value), &parsed) ||
      !std::isfinite(parsed) || parsed < 0) {
    return Malformed(name, value, "a non-negative number");
  }
  *out = parsed;
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
  return Malformed(name, value, absl::StrCat("one of ", absl::StrJoin(words, ", ")));
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

constexpr std::pair<const char*, LogLevel> kLogLevels[] = {
    {"trace", LogLevel::kTrace},     {"debug", LogLevel::kDebug},
    {"info", LogLevel::kInfo},       {"warning", LogLevel::kWarning},
    {"warn", LogLevel::kWarning},    {"error", LogLevel::kError},
};

}  // namespace

StatusOr<Options> OptionsFromLookup(const EnvironmentLookup& lookup) {
  Options options;
  // One entry per variable: name and how it sets its field.
  const std::pair<const char*, std::function<Status(const char*, const char*)>>
      parsers[] = {
          {"KOLO_FUSION_THRESHOLD",
           [&](const char* n, const char* v) {
             return ParseNonNegativeInt(n, v, &options.fusion_threshold_bytes);
           }},
          {"KOLO_CYCLE_TIME_MS",
           [&](const char* n, const char* v) {
             return ParseNonNegativeDouble(n, v, &options.cycle_time_ms);
           }},
          {"KOLO_CACHE_CAPACITY",
           [&](const char* n, const char* v) {
             return ParseNonNegativeInt(n, v, &options.cache_capacity);
           }},
          {"KOLO_TIMELINE",
           [&](const char*, const char* v) {
             options.timeline_path = v;
             return absl::OkStatus();
           }},
          {"KOLO_TIMELINE_MARK_CYCLES",
           [&](const char* n, const char* v) {
             return ParseBool(n, v, &options.timeline_mark_cycles);
           }},
          {"KOLO_STALL_CHECK_TIME_SECONDS",
           [&](const char* n, const char* v) {
             return ParseNonNegativeDouble(n, v, &options.stall_check_seconds);
           }},
          {"KOLO_STALL_SHUTDOWN_TIME_SECONDS",
           [&](const char* n, const char* v) {
             return ParseNonNegativeDouble(n, v,
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
             return ParseNonNegativeInt(n, v, &options.shm_slot_bytes);
           }},
          {"KOLO_PEER_TIMEOUT_SECONDS",
           [&](const char* n, const char* v) {
             return ParseNonNegativeDouble(n, v, &options.peer_timeout_seconds);
           }},
          {"KOLO_GPU_OPERATIONS",
           [&](const char* n, const char* v) {
             return ParseChoice(n, v, kGpuOperations, &options.gpu_operations);
           }},
      };
  for (const auto& [name, parse] : parsers) {
    const char* value = lookup(name);
    if (value == nullptr) continue;
    if (Status status = parse(name, value); !status.ok()) return status;
  }
  if (options.cache_capacity > (int64_t{1} << 20)) {
    return Malformed("KOLO_CACHE_CAPACITY",
                     std::to_string(options.cache_capacity),
                     "at most 1048576 entries");
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

const char* GpuOperationsName(GpuOperations value) {
  for (const auto& [word, choice] : kGpuOperations) {
    if (choice == value) return word;
  }
  return "invalid";
}

}  // namespace kolo
