// Implementation of POSIX shared-memory segments.
#include "runtime/backend/shm/shm_segment.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace kolo {
namespace {

constexpr uint64_t kMagic = 0x6b6f6c6f73686d31;  // "koloshm1"
// A segment without a header this long after its creation is garbage.
constexpr int64_t kHeaderlessAgeSeconds = 60;

// The first ShmSegment::kHeaderBytes of every segment.
struct SegmentHeader {
  std::atomic<uint64_t> magic;  // written once the mutex is held
  pthread_mutex_t creator;      // robust, process-shared
};
static_assert(sizeof(SegmentHeader) <= ShmSegment::kHeaderBytes);

Status Errno(absl::string_view what, const std::string& name) {
  return absl::InternalError(absl::StrCat(what, " of shared-memory segment ",
                                          name,
                                          " failed: ", std::strerror(errno)));
}

StatusOr<char*> Map(int fd, int64_t bytes, const std::string& name) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return Errno("mmap", name);
  return static_cast<char*>(p);
}

SegmentHeader* HeaderAt(char* map) {
  return reinterpret_cast<SegmentHeader*>(map);
}

// Room in /dev/shm, for the message when a segment does not fit.
std::string ShmSpace() {
  struct statvfs fs {};
  if (statvfs("/dev/shm", &fs) != 0) return "";
  const auto mib = [](uint64_t bytes) { return bytes >> 20; };
  return absl::StrCat(
      " (/dev/shm has ", mib(static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize),
      " MiB free of ", mib(static_cast<uint64_t>(fs.f_blocks) * fs.f_frsize),
      " MiB)");
}

}  // namespace

std::string ShmSegmentName(int64_t pid, uint64_t token, int local_rank) {
  return absl::StrFormat("/kolo-%d-%016x-%d", pid, token, local_rank);
}

ShmSegment::~ShmSegment() {
  Unlink();
  if (map_ != nullptr) munmap(map_, kHeaderBytes + size_);
}

ShmSegment::ShmSegment(ShmSegment&& other) noexcept {
  *this = std::move(other);
}

ShmSegment& ShmSegment::operator=(ShmSegment&& other) noexcept {
  if (this != &other) {
    Unlink();
    if (map_ != nullptr) munmap(map_, kHeaderBytes + size_);
    name_ = std::move(other.name_);
    map_ = other.map_;
    size_ = other.size_;
    owner_ = other.owner_;
    linked_ = other.linked_;
    other.map_ = nullptr;
    other.linked_ = false;
  }
  return *this;
}

StatusOr<ShmSegment> ShmSegment::Create(const std::string& name,
                                        int64_t bytes) {
  const int fd =
      shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR | O_NOFOLLOW, 0600);
  if (fd < 0) return Errno("shm_open (create)", name);
  ShmSegment segment;
  segment.name_ = name;
  segment.owner_ = true;
  segment.linked_ = true;
  const int64_t total = kHeaderBytes + bytes;
  // posix_fallocate returns the error instead of setting errno.
  if (const int error = posix_fallocate(fd, 0, total); error != 0) {
    close(fd);
    if (error == ENOSPC) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "shared memory: /dev/shm cannot hold kolo's segment of ", total,
          " bytes", ShmSpace(),
          "; every rank on a host needs one of this size (about 2 x "
          "KOLO_SHM_SLOT_BYTES + 4 KiB). Give the host or container more "
          "shared memory (docker run --shm-size=1g; mount -o remount,size=1G "
          "/dev/shm) or lower KOLO_SHM_SLOT_BYTES"));
    }
    errno = error;
    return Errno("posix_fallocate", name);
  }
  StatusOr<char*> map = Map(fd, total, name);
  close(fd);
  if (!map.ok()) return map.status();
  segment.map_ = *map;
  segment.size_ = bytes;
  SegmentHeader* header = HeaderAt(segment.map_);
  pthread_mutexattr_t attributes;
  pthread_mutexattr_init(&attributes);
  pthread_mutexattr_setpshared(&attributes, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&attributes, PTHREAD_MUTEX_ROBUST);
  pthread_mutex_init(&header->creator, &attributes);
  pthread_mutexattr_destroy(&attributes);
  pthread_mutex_lock(&header->creator);
  header->magic.store(kMagic, std::memory_order_release);
  return segment;
}

StatusOr<ShmSegment> ShmSegment::Open(const std::string& name, int64_t bytes) {
  const int fd = shm_open(name.c_str(), O_RDWR | O_NOFOLLOW, 0600);
  if (fd < 0) return Errno("shm_open", name);
  const int64_t total = kHeaderBytes + bytes;
  struct stat info {};
  if (fstat(fd, &info) != 0) {
    const Status status = Errno("fstat", name);
    close(fd);
    return status;
  }
  if (info.st_uid != geteuid() || (info.st_mode & 0777) != 0600 ||
      info.st_size != total) {
    close(fd);
    return absl::FailedPreconditionError(absl::StrFormat(
        "shared-memory segment %s is not the one a peer created: owner %d, "
        "mode %o, %d bytes (expected owner %d, mode 600, %d bytes)",
        name, info.st_uid, info.st_mode & 0777, info.st_size, geteuid(),
        total));
  }
  StatusOr<char*> map = Map(fd, total, name);
  close(fd);
  if (!map.ok()) return map.status();
  ShmSegment segment;
  segment.name_ = name;
  segment.map_ = *map;
  segment.size_ = bytes;
  return segment;
}

void ShmSegment::Unlink() {
  if (!linked_ || !owner_) return;
  shm_unlink(name_.c_str());
  linked_ = false;
  // Unlinked, the segment is out of RemoveStaleSegments()' sight.
  if (map_ != nullptr) pthread_mutex_unlock(&HeaderAt(map_)->creator);
}

StatusOr<HostSegments> MapHostSegments(Bootstrap* bootstrap, int64_t bytes) {
  const int rank = bootstrap->rank();
  const int size = bootstrap->size();
  uint64_t token = 0;
  if (rank == 0) {
    RemoveStaleSegments();
    std::random_device random;
    token = (uint64_t{random()} << 32) ^ random();
  }
  if (Status s = bootstrap->Broadcast(&token, sizeof(token), 0); !s.ok()) {
    return s;
  }
  HostSegments host;
  host.pids.resize(size);
  int64_t pid = getpid();
  if (Status s = bootstrap->Allgather(&pid, host.pids.data(), sizeof(pid));
      !s.ok()) {
    return s;
  }
  host.segments.resize(size);
  StatusOr<ShmSegment> own =
      ShmSegment::Create(ShmSegmentName(pid, token, rank), bytes);
  // Every rank learns whether every rank could create its segment.
  StatusOr<bool> all_created = bootstrap->AllTrue(own.ok());
  if (!all_created.ok()) return all_created.status();
  if (!own.ok()) return own.status();
  if (!*all_created) {
    return absl::InternalError(
        "a peer on this host could not create its shared memory (its log "
        "says why)");
  }
  host.segments[rank] = *std::move(own);
  Status opened;
  for (int peer = 0; peer < size && opened.ok(); ++peer) {
    if (peer == rank) continue;
    StatusOr<ShmSegment> segment =
        ShmSegment::Open(ShmSegmentName(host.pids[peer], token, peer), bytes);
    if (segment.ok()) {
      host.segments[peer] = *std::move(segment);
    } else {
      opened = segment.status();
    }
  }
  StatusOr<bool> all_ok = bootstrap->AllTrue(opened.ok());
  if (!all_ok.ok()) return all_ok.status();
  // Everyone has mapped everything (or given up): the names can go.
  host.segments[rank].Unlink();
  if (!opened.ok()) return opened;
  if (!*all_ok) {
    return absl::InternalError("a peer could not map shared memory");
  }
  return host;
}

int RemoveStaleSegments() {
  DIR* dir = opendir("/dev/shm");
  if (dir == nullptr) return 0;
  int removed = 0;
  while (dirent* entry = readdir(dir)) {
    const absl::string_view file = entry->d_name;
    if (!absl::StartsWith(file, "kolo-")) continue;
    const std::string name = absl::StrCat("/", file);
    const int fd = shm_open(name.c_str(), O_RDWR | O_NOFOLLOW, 0);
    if (fd < 0) continue;
    struct stat info {};
    bool stale = false;
    if (fstat(fd, &info) == 0 && S_ISREG(info.st_mode) &&
        info.st_uid == geteuid()) {
      const bool old = time(nullptr) - info.st_ctime > kHeaderlessAgeSeconds;
      void* p = info.st_size >= ShmSegment::kHeaderBytes
                    ? mmap(nullptr, ShmSegment::kHeaderBytes,
                           PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
                    : MAP_FAILED;
      if (p == MAP_FAILED) {
        stale = old;
      } else {
        SegmentHeader* header = HeaderAt(static_cast<char*>(p));
        if (header->magic.load(std::memory_order_acquire) != kMagic) {
          stale = old;
        } else {
          switch (pthread_mutex_trylock(&header->creator)) {
            case EOWNERDEAD:  // its creator died during initialisation
              pthread_mutex_unlock(&header->creator);
              stale = true;
              break;
            case ENOTRECOVERABLE:
              stale = true;
              break;
            case 0:  // nobody holds it: cannot happen while linked
              pthread_mutex_unlock(&header->creator);
              stale = old;
              break;
            default:  // EBUSY: a job that is still starting
              break;
          }
        }
        munmap(p, ShmSegment::kHeaderBytes);
      }
    }
    close(fd);
    if (stale && shm_unlink(name.c_str()) == 0) ++removed;
  }
  closedir(dir);
  return removed;
}

}  // namespace kolo
