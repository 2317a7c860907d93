// MpiBootstrap: Bootstrap over an MPI communicator (not owned; it must
// outlive this object). MPI errors come back as Status (mpi_status.h).
#ifndef KOLO_RUNTIME_COMMON_MPI_BOOTSTRAP_H_
#define KOLO_RUNTIME_COMMON_MPI_BOOTSTRAP_H_

#include <mpi.h>

#include "runtime/common/bootstrap.h"

namespace kolo {

class MpiBootstrap : public Bootstrap {
 public:
  explicit MpiBootstrap(MPI_Comm comm);

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  Status Allgather(const void* mine, void* all, int64_t bytes) override;
  Status Broadcast(void* buffer, int64_t bytes, int root) override;
  Status Barrier() override;

 private:
  MPI_Comm comm_;
  int rank_ = 0;
  int size_ = 1;
};

}  // namespace kolo

#endif  // KOLO_RUNTIME_COMMON_MPI_BOOTSTRAP_H_
