// Bootstrap: the few collectives a data plane needs while it sets itself up
// (publishing addresses and segment names, agreeing that every rank
// succeeded) among the ranks of one group. The planes (ShmComm,
// MapHostSegments, TcpTransport) take a Bootstrap instead of an MPI
// communicator, so that they can also run as N threads of one process:
// production passes MpiBootstrap (mpi_bootstrap.h); the in-process tests
// pass tests/runtime/planes/in_process_bootstrap.h.
//
// Every rank of the group makes the same calls in the same order with the
// same sizes. Not thread-safe: each rank's Bootstrap is used by one thread
// at a time.
#ifndef KOLO_RUNTIME_COMMON_BOOTSTRAP_H_
#define KOLO_RUNTIME_COMMON_BOOTSTRAP_H_

#include <cstdint>

#include "kolo/status.h"

namespace kolo {

class Bootstrap {
 public:
  virtual ~Bootstrap() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;

  // all (size() * bytes bytes) = every rank's `bytes` bytes at `mine`, in
  // rank order.
  virtual Status Allgather(const void* mine, void* all, int64_t bytes) = 0;
  // root's `bytes` bytes at `buffer` to every rank's `buffer`.
  virtual Status Broadcast(void* buffer, int64_t bytes, int root) = 0;
  virtual Status Barrier() = 0;

  // True on every rank when `mine` is true on every rank, so that a rank
  // that failed and its peers give up together.
  StatusOr<bool> AllTrue(bool mine);
};

}  // namespace kolo

#endif  // KOLO_RUNTIME_COMMON_BOOTSTRAP_H_
