// Which memory allocator the ranks' programs run with (kolorun
// --memory-allocator, exported to the ranks as KOLO_MEMORY_ALLOCATOR).
//
// Why kolorun cares: CPU training allocates and frees activation buffers of
// several MiB every step. glibc's malloc serves those with mmap and gives
// them back with munmap, so every step page-faults its whole working set in
// again (DenseNet-121, 64 px, batch 16: most of a step). tcmalloc and
// jemalloc keep the memory; glibc does too once told (a fixed mmap threshold
// above the buffer sizes, no trimming, a top pad). The choices:
//   auto      tcmalloc when its library is installed on the host, else
//             glibc (the default)
//   tcmalloc  LD_PRELOAD Debian's libtcmalloc-minimal4
//   jemalloc  LD_PRELOAD Debian's libjemalloc2
//   glibc     glibc's malloc with MALLOC_MMAP_THRESHOLD_,
//             MALLOC_TRIM_THRESHOLD_ and MALLOC_TOP_PAD_ set
//   system    nothing changed
// The rank monitor applies the choice on each host before it starts the
// rank's program (the library is looked up on that host); with
// --no-rank-monitor kolorun resolves it where it runs and exports the result.
#ifndef KOLO_LAUNCHER_MEMORY_ALLOCATOR_H_
#define KOLO_LAUNCHER_MEMORY_ALLOCATOR_H_

#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kolo {
namespace launcher {

inline constexpr char kMemoryAllocatorVariable[] = "KOLO_MEMORY_ALLOCATOR";

// The names --memory-allocator and KOLO_MEMORY_ALLOCATOR accept.
const std::vector<std::string>& MemoryAllocatorNames();

// glibc's tunables for training, as environment variables (name, value).
const std::vector<std::pair<std::string, std::string>>& GlibcTrainingTunables();

// What applying a choice does to a rank's environment.
struct AllocatorSetup {
  std::string name;  // the allocator in effect: tcmalloc, jemalloc, glibc,
                     // system, or "glibc (user's MALLOC_* settings)"
  std::map<std::string, std::string> set_env;  // variables to set
};

// Whether a file exists and is a regular file (injected by tests).
using FileExists = std::function<bool(const std::string& path)>;

// The directories searched for the allocator libraries: LD_LIBRARY_PATH's
// entries, then the system's library directories.
std::vector<std::string> LibrarySearchPath(
    const std::map<std::string, std::string>& env);

// Turns `choice` (one of MemoryAllocatorNames(); empty means auto) into the
// environment a rank needs, given the current environment `env`. Leaves a
// user's own LD_PRELOAD entries in place (the allocator goes first) and
// never overrides MALLOC_* variables the user set. Fails, naming the host's
// missing Debian package, when tcmalloc or jemalloc is asked for and not
// installed; and for an unknown name.
absl::StatusOr<AllocatorSetup> PlanMemoryAllocator(
    absl::string_view choice, const std::map<std::string, std::string>& env,
    const FileExists& exists);

// The real file check.
bool RegularFileExists(const std::string& path);

}  // namespace launcher
}  // namespace kolo

#endif  // KOLO_LAUNCHER_MEMORY_ALLOCATOR_H_
