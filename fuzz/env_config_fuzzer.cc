// Fuzzes the KOLO_* environment parser (runtime/core/config.h): any
// environment must give either an InvalidArgument error that names the
// variable at fault, or options within their documented ranges.
//
// Input: an environment as text, one NAME=VALUE per line (the last
// definition of a name wins; lines without '=' are ignored), so that seeds
// read like the settings users write. fuzz/env_config.dict holds every
// variable name and choice word.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "runtime/core/config.h"

namespace {

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "env_config_fuzzer: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // std::string values stay NUL-terminated; a NUL inside a value ends it,
  // as it would in a real environment.
  std::map<std::string, std::string, std::less<>> environment;
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    const size_t equals = line.find('=');
    if (equals == absl::string_view::npos) continue;
    environment[std::string(line.substr(0, equals))] =
        std::string(line.substr(equals + 1));
  }

  absl::StatusOr<kolo::Options> options =
      kolo::OptionsFromLookup([&](const char* name) -> const char* {
        auto it = environment.find(absl::string_view(name));
        return it == environment.end() ? nullptr : it->second.c_str();
      });
  if (!options.ok()) {
    if (options.status().code() != absl::StatusCode::kInvalidArgument) {
      Fail("a malformed environment is not InvalidArgument");
    }
    if (!absl::StrContains(options.status().message(), "KOLO_")) {
      Fail("the error does not name the variable");
    }
    return 0;
  }
  if (options->fusion_threshold_bytes < 0) Fail("negative fusion threshold");
  if (!std::isfinite(options->cycle_time_ms) || options->cycle_time_ms < 0) {
    Fail("cycle time not a non-negative number");
  }
  if (options->cache_capacity < 0 || options->cache_capacity > (1 << 20)) {
    Fail("cache capacity out of range");
  }
  if (!std::isfinite(options->stall_check_seconds) ||
      options->stall_check_seconds < 0 ||
      !std::isfinite(options->stall_shutdown_seconds) ||
      options->stall_shutdown_seconds < 0) {
    Fail("stall time not a non-negative number");
  }
  return 0;
}
