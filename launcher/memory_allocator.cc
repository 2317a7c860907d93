#include "memory_allocator.h"

#include <sys/stat.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace kolo {
namespace launcher {
namespace {

struct PreloadLibrary {
  const char* name;
  const char* file;     // the soname, as the Debian package installs it
  const char* package;  // the Debian package that provides it
};

constexpr PreloadLibrary kTcmalloc = {"tcmalloc", "libtcmalloc_minimal.so.4",
                                      "libtcmalloc-minimal4"};
constexpr PreloadLibrary kJemalloc = {"jemalloc", "libjemalloc.so.2",
                                      "libjemalloc2"};

std::string Find(const PreloadLibrary& library,
                 const std::map<std::string, std::string>& env,
                 const FileExists& exists) {
  for (const std::string& dir : LibrarySearchPath(env)) {
    std::string path = absl::StrCat(dir, "/", library.file);
    if (exists(path)) return path;
  }
  return "";
}

// LD_PRELOAD with `path` first, keeping whatever the user preloads.
std::string PrependPreload(const std::string& path,
                           const std::map<std::string, std::string>& env) {
  auto it = env.find("LD_PRELOAD");
  if (it == env.end() || it->second.empty()) return path;
  // Already there (a monitor started under a monitor, or the user's own).
  for (absl::string_view entry :
       absl::StrSplit(it->second, absl::ByAnyChar(": "), absl::SkipEmpty())) {
    if (entry == path) return it->second;
  }
  return absl::StrCat(path, ":", it->second);
}

bool UserTunedGlibc(const std::map<std::string, std::string>& env) {
  for (const auto& [name, value] : GlibcTrainingTunables()) {
    if (env.count(name) > 0) return true;
  }
  return env.count("GLIBC_TUNABLES") > 0 &&
         env.at("GLIBC_TUNABLES").find("glibc.malloc.") != std::string::npos;
}

AllocatorSetup Glibc(const std::map<std::string, std::string>& env) {
  AllocatorSetup setup;
  if (UserTunedGlibc(env)) {
    setup.name = "glibc (user's MALLOC_* settings)";
    return setup;
  }
  setup.name = "glibc";
  for (const auto& [name, value] : GlibcTrainingTunables()) {
    setup.set_env[name] = value;
  }
  return setup;
}

AllocatorSetup Preload(const PreloadLibrary& library, const std::string& path,
                       const std::map<std::string, std::string>& env) {
  AllocatorSetup setup;
  setup.name = library.name;
  setup.set_env["LD_PRELOAD"] = PrependPreload(path, env);
  return setup;
}

}  // namespace

const std::vector<std::string>& MemoryAllocatorNames() {
  static const std::vector<std::string> kNames = {
      "auto", "tcmalloc", "jemalloc", "glibc", "system"};
  return kNames;
}

const std::vector<std::pair<std::string, std::string>>&
GlibcTrainingTunables() {
  // 32 MiB is the largest mmap threshold glibc accepts on 64-bit hosts:
  // buffers up to that size come from the heap and are reused. No trimming
  // and a 512 MiB top pad keep freed memory mapped between steps.
  static const std::vector<std::pair<std::string, std::string>> kTunables = {
      {"MALLOC_MMAP_THRESHOLD_", "33554432"},
      {"MALLOC_TRIM_THRESHOLD_", "4294967296"},
      {"MALLOC_TOP_PAD_", "536870912"},
  };
  return kTunables;
}

std::vector<std::string> LibrarySearchPath(
    const std::map<std::string, std::string>& env) {
  std::vector<std::string> dirs;
  auto it = env.find("LD_LIBRARY_PATH");
  if (it != env.end()) {
    for (absl::string_view dir :
         absl::StrSplit(it->second, ':', absl::SkipEmpty())) {
      dirs.emplace_back(dir);
    }
  }
  for (const char* dir :
       {"/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
        "/usr/lib/powerpc64le-linux-gnu", "/usr/lib64", "/usr/lib",
        "/usr/local/lib", "/lib/x86_64-linux-gnu", "/lib64", "/lib"}) {
    dirs.emplace_back(dir);
  }
  return dirs;
}

absl::StatusOr<AllocatorSetup> PlanMemoryAllocator(
    absl::string_view choice, const std::map<std::string, std::string>& env,
    const FileExists& exists) {
  if (choice.empty() || choice == "auto") {
    const std::string path = Find(kTcmalloc, env, exists);
    if (!path.empty()) return Preload(kTcmalloc, path, env);
    return Glibc(env);
  }
  if (choice == "system") return AllocatorSetup{"system", {}};
  if (choice == "glibc") return Glibc(env);
  for (const PreloadLibrary& library : {kTcmalloc, kJemalloc}) {
    if (choice != library.name) continue;
    const std::string path = Find(library, env, exists);
    if (path.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "memory allocator ", library.name, ": ", library.file,
          " is not installed (apt-get install ", library.package, "; searched ",
          absl::StrJoin(LibrarySearchPath(env), ":"), ")"));
    }
    return Preload(library, path, env);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown memory allocator '", choice, "' (",
                   absl::StrJoin(MemoryAllocatorNames(), ", "), ")"));
}

bool RegularFileExists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

}  // namespace launcher
}  // namespace kolo
