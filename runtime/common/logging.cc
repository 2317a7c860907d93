// Implementation of kolo's process-wide logger.
#include "runtime/common/logging.h"

#include <memory>
#include <string>

#include <spdlog/sinks/stdout_sinks.h>

namespace kolo {
namespace {

spdlog::level::level_enum ToSpdlog(LogLevel level) {
  switch (level) {
    case LogLevel::kTrace: return spdlog::level::trace;
    case LogLevel::kDebug: return spdlog::level::debug;
    case LogLevel::kInfo: return spdlog::level::info;
    case LogLevel::kWarning: return spdlog::level::warn;
    case LogLevel::kError: return spdlog::level::err;
  }
  return spdlog::level::warn;
}

std::shared_ptr<spdlog::logger> MakeLogger() {
  // stderr, unbuffered, synchronised across threads.
  auto logger = std::make_shared<spdlog::logger>(
      "kolo", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  logger->set_pattern("[kolo] %l: %v");
  logger->set_level(spdlog::level::warn);
  logger->flush_on(spdlog::level::trace);
  return logger;
}

}  // namespace

spdlog::logger& Log() {
  static const std::shared_ptr<spdlog::logger> logger = MakeLogger();
  return *logger;
}

void ConfigureLogging(LogLevel level, int rank) {
  Log().set_level(ToSpdlog(level));
  Log().set_pattern("[kolo rank " + std::to_string(rank) + "] %l: %v");
}

}  // namespace kolo
