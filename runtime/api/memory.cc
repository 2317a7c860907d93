#include "kolo/memory.h"

#include <dlfcn.h>
#include <malloc.h>

#include <climits>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "kolo/options.h"

namespace kolo {
namespace {

bool EnvSet(const char* name) { return std::getenv(name) != nullptr; }

std::string Decide() {
  StatusOr<Options> options = OptionsFromEnvironment();
  // A malformed KOLO_* variable fails Init() with the error naming it; until
  // then malloc is left alone.
  if (!options.ok()) {
    return "system (" + std::string(options.status().message()) + ")";
  }
  if (options->memory_allocator == MemoryAllocator::kSystem) return "system";
  // A preloaded allocator interposes malloc; its own entry points say which.
  if (dlsym(RTLD_DEFAULT, "tc_malloc") != nullptr) return "tcmalloc";
  if (dlsym(RTLD_DEFAULT, "mallctl") != nullptr) return "jemalloc";
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  if (EnvSet("MALLOC_MMAP_THRESHOLD_") || EnvSet("MALLOC_TRIM_THRESHOLD_") ||
      EnvSet("MALLOC_TOP_PAD_") ||
      (tunables != nullptr &&
       std::strstr(tunables, "glibc.malloc.") != nullptr)) {
    return "glibc (environment)";
  }
#ifdef __GLIBC__
  // The values kolorun's glibc choice exports (launcher/memory_allocator.cc);
  // mallopt takes an int, so "never trim" is INT_MAX here.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, INT_MAX);
  mallopt(M_TOP_PAD, 512 << 20);
  return "glibc (tuned)";
#else
  return "system";
#endif
}

}  // namespace

std::string TuneMemoryAllocator() {
  static std::once_flag once;
  static std::string result;
  std::call_once(once, [] { result = Decide(); });
  return result;
}

}  // namespace kolo
