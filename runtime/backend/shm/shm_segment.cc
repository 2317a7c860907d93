// Implementation of POSIX shared-memory segments.
#include "runtime/backend/shm/shm_segment.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <random>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "runtime/core/mpi_context.h"

namespace kolo {
namespace {

Status Errno(absl::string_view what, const std::string& name) {
  return absl::InternalError(
      absl::StrCat(what, " of shared-memory segment ", name, " failed: ",
                   std::strerror(errno)));
}

StatusOr<char*> Map(int fd, int64_t bytes, const std::string& name) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return Errno("mmap", name);
  return static_cast<char*>(p);
}

}  // namespace

std::string ShmSegmentName(int64_t pid, uint64_t token, int local_rank) {
  return absl::StrFormat("/kolo-%d-%016x-%d", pid, token, local_rank);
}

ShmSegment::~ShmSegment() {
  if (linked_ && owner_) shm_unlink(name_.c_str());
  if (data_ != nullptr) munmap(data_, size_);
}

ShmSegment::ShmSegment(ShmSegment&& other) noexcept { *this = std::move(other); }

ShmSegment& ShmSegment::operator=(ShmSegment&& other) noexcept {
  if (this != &other) {
    if (linked_ && owner_) shm_unlink(name_.c_str());
    if (data_ != nullptr) munmap(data_, size_);
    name_ = std::move(other.name_);
    data_ = other.data_;
    size_ = other.size_;
    owner_ = other.owner_;
    linked_ = other.linked_;
    other.data_ = nullptr;
    other.linked_ = false;
  }
  return *this;
}

StatusOr<ShmSegment> ShmSegment::Create(const std::string& name,
                                        int64_t bytes) {
  const int fd = shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  if (fd < 0) return Errno("shm_open (create)", name);
  ShmSegment segment;
  segment.name_ = name;
  segment.owner_ = true;
  segment.linked_ = true;
  if (ftruncate(fd, bytes) != 0) {
    const Status status = Errno("ftruncate", name);
    close(fd);
    return status;
  }
  StatusOr<char*> data = Map(fd, bytes, name);
  close(fd);
  if (!data.ok()) return data.status();
  segment.data_ = *data;
  segment.size_ = bytes;
  return segment;
}

StatusOr<ShmSegment> ShmSegment::Open(const std::string& name, int64_t bytes) {
  const int fd = shm_open(name.c_str(), O_RDWR, 0600);
  if (fd < 0) return Errno("shm_open", name);
  StatusOr<char*> data = Map(fd, bytes, name);
  close(fd);
  if (!data.ok()) return data.status();
  ShmSegment segment;
  segment.name_ = name;
  segment.data_ = *data;
  segment.size_ = bytes;
  return segment;
}

void ShmSegment::Unlink() {
  if (linked_ && owner_) shm_unlink(name_.c_str());
  linked_ = false;
}

StatusOr<HostSegments> MapHostSegments(MPI_Comm local_comm, int64_t bytes) {
  int rank = 0;
  int size = 1;
  MPI_Comm_rank(local_comm, &rank);
  MPI_Comm_size(local_comm, &size);
  uint64_t token = 0;
  if (rank == 0) {
    RemoveStaleSegments();
    std::random_device random;
    token = (uint64_t{random()} << 32) ^ random();
  }
  KOLO_MPI_RETURN_IF_ERROR(MPI_Bcast(&token, 1, MPI_UINT64_T, 0, local_comm));
  HostSegments host;
  host.pids.resize(size);
  int64_t pid = getpid();
  KOLO_MPI_RETURN_IF_ERROR(MPI_Allgather(&pid, 1, MPI_INT64_T, host.pids.data(),
                                         1, MPI_INT64_T, local_comm));
  host.segments.resize(size);
  StatusOr<ShmSegment> own =
      ShmSegment::Create(ShmSegmentName(pid, token, rank), bytes);
  // Every rank learns whether every rank could create its segment.
  int created = own.ok() ? 1 : 0;
  int all_created = 0;
  KOLO_MPI_RETURN_IF_ERROR(MPI_Allreduce(&created, &all_created, 1, MPI_INT,
                                         MPI_MIN, local_comm));
  if (!own.ok()) return own.status();
  if (!all_created) {
    return absl::InternalError("a peer could not create its shared memory");
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
  int ok = opened.ok() ? 1 : 0;
  int all_ok = 0;
  KOLO_MPI_RETURN_IF_ERROR(
      MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, local_comm));
  // Everyone has mapped everything (or given up): the names can go.
  host.segments[rank].Unlink();
  if (!opened.ok()) return opened;
  if (!all_ok) return absl::InternalError("a peer could not map shared memory");
  return host;
}

int RemoveStaleSegments() {
  DIR* dir = opendir("/dev/shm");
  if (dir == nullptr) return 0;
  int removed = 0;
  while (dirent* entry = readdir(dir)) {
    const absl::string_view file = entry->d_name;
    if (!absl::StartsWith(file, "kolo-")) continue;
    const std::vector<absl::string_view> parts = absl::StrSplit(file, '-');
    int64_t pid = 0;
    if (parts.size() != 4 || !absl::SimpleAtoi(parts[1], &pid) || pid <= 0) {
      continue;
    }
    if (kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
      if (shm_unlink(absl::StrCat("/", file).c_str()) == 0) ++removed;
    }
  }
  closedir(dir);
  return removed;
}

}  // namespace kolo
