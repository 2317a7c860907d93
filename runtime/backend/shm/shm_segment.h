// ShmSegment: one POSIX shared-memory segment, created by one rank with mode
// 0600 and mapped by its peers on the same host.
//
// Names are "/kolo-<creator pid>-<job token>-<local rank>". kolo unlinks
// each segment as soon as every peer has mapped it, so a clean or crashed
// job leaves nothing behind once initialisation is over; a process that
// dies during initialisation can leave one. Each segment starts with a small
// header holding a robust, process-shared mutex that the creating thread
// holds until the segment is unlinked: RemoveStaleSegments() removes only
// segments whose creator died holding it (the kernel marks such a mutex),
// never one of a job that is still starting, and does not look at PIDs,
// which mean nothing across PID namespaces that share /dev/shm.
//
// Memory is reserved when a segment is created (posix_fallocate), so a
// /dev/shm too small for the job fails init with a message saying how much
// is needed, instead of a SIGBUS in the middle of a collective. A segment
// that is opened must belong to this user, have mode 0600 and the expected
// size.
#ifndef KOLO_RUNTIME_BACKEND_SHM_SHM_SEGMENT_H_
#define KOLO_RUNTIME_BACKEND_SHM_SHM_SEGMENT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "kolo/status.h"
#include "runtime/common/bootstrap.h"

namespace kolo {

class ShmSegment {
 public:
  ShmSegment() = default;
  ~ShmSegment();
  ShmSegment(ShmSegment&& other) noexcept;
  ShmSegment& operator=(ShmSegment&& other) noexcept;

  // Creates and maps a new segment of `bytes` usable bytes (zero-filled),
  // held by the calling thread until Unlink().
  static StatusOr<ShmSegment> Create(const std::string& name, int64_t bytes);
  // Maps an existing segment created by a peer.
  static StatusOr<ShmSegment> Open(const std::string& name, int64_t bytes);

  // Removes the name; the mapping stays valid. REQUIRES: the thread that
  // created the segment.
  void Unlink();

  // The usable bytes (after the header).
  char* data() const { return map_ == nullptr ? nullptr : map_ + kHeaderBytes; }
  int64_t size() const { return size_; }
  const std::string& name() const { return name_; }

  // Bytes in front of data(): the segment header.
  static constexpr int64_t kHeaderBytes = 128;

 private:
  std::string name_;
  char* map_ = nullptr;
  int64_t size_ = 0;
  bool owner_ = false;
  bool linked_ = false;
};

// The segment name for `local_rank` of the job identified by `token`,
// created by process `pid`.
std::string ShmSegmentName(int64_t pid, uint64_t token, int local_rank);

// One segment per rank of a host, each mapped by every rank of it.
struct HostSegments {
  std::vector<ShmSegment> segments;  // index = local rank
  std::vector<int64_t> pids;         // each local rank's process
};

// Collective over `bootstrap` (the ranks of one host): every rank creates a
// zero-filled segment of `bytes` and maps its peers'; the names are
// unlinked once all are mapped. Local rank 0 first removes stale segments
// of crashed jobs.
StatusOr<HostSegments> MapHostSegments(Bootstrap* bootstrap, int64_t bytes);

// Unlinks this user's kolo segments in /dev/shm whose creator died during
// initialisation (or that never got a header and are over a minute old).
// Returns how many it removed.
int RemoveStaleSegments();

}  // namespace kolo

#endif  // KOLO_RUNTIME_BACKEND_SHM_SHM_SEGMENT_H_
