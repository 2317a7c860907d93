// ShmSegment: one POSIX shared-memory segment, created by one rank with mode
// 0600 and mapped by its peers on the same host.
//
// Names are "/kolo-<creator pid>-<job token>-<local rank>". The creator's
// pid in the name lets a later job find segments left by a crashed one:
// RemoveStaleSegments() unlinks those whose creator no longer exists. kolo
// unlinks each segment as soon as every peer has mapped it, so a clean or
// crashed job leaves nothing behind once initialisation is over.
#ifndef KOLO_RUNTIME_BACKEND_SHM_SHM_SEGMENT_H_
#define KOLO_RUNTIME_BACKEND_SHM_SHM_SEGMENT_H_

#include <cstdint>
#include <string>
#include <vector>

#include <mpi.h>

#include "kolo/status.h"

namespace kolo {

class ShmSegment {
 public:
  ShmSegment() = default;
  ~ShmSegment();
  ShmSegment(ShmSegment&& other) noexcept;
  ShmSegment& operator=(ShmSegment&& other) noexcept;

  // Creates and maps a new segment of `bytes` (zero-filled).
  static StatusOr<ShmSegment> Create(const std::string& name, int64_t bytes);
  // Maps an existing segment created by a peer.
  static StatusOr<ShmSegment> Open(const std::string& name, int64_t bytes);

  // Removes the name; the mapping stays valid.
  void Unlink();

  char* data() const { return data_; }
  int64_t size() const { return size_; }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  char* data_ = nullptr;
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

// Collective over local_comm: every rank creates a zero-filled segment of
// `bytes` and maps its peers'; the names are unlinked once all are mapped.
// Local rank 0 first removes stale segments of crashed jobs.
StatusOr<HostSegments> MapHostSegments(MPI_Comm local_comm, int64_t bytes);

// Unlinks kolo segments in /dev/shm whose creating process is gone. Returns
// how many it removed.
int RemoveStaleSegments();

}  // namespace kolo

#endif  // KOLO_RUNTIME_BACKEND_SHM_SHM_SEGMENT_H_
