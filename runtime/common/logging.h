// kolo's log: spdlog, one logger per process, prefixed with the rank.
// KOLO_LOG_LEVEL picks the threshold (default warning).
#ifndef KOLO_RUNTIME_COMMON_LOGGING_H_
#define KOLO_RUNTIME_COMMON_LOGGING_H_

#include <spdlog/spdlog.h>

#include "kolo/options.h"

namespace kolo {

// The process-wide logger; usable before Init() (prefix "kolo").
spdlog::logger& Log();
// Sets the threshold and, once the rank is known, the "[kolo rank N]" prefix.
void ConfigureLogging(LogLevel level, int rank);

}  // namespace kolo

#endif  // KOLO_RUNTIME_COMMON_LOGGING_H_
