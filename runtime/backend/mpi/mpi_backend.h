// MpiBackend: collectives through Open MPI's own implementations on kolo's
// data communicator. The reference data plane and the fallback for every
// topology. float16/bfloat16 travel as float32 (widened once, reduced and
// scaled in float32, narrowed once); bool reduces with logical OR/AND.
#ifndef KOLO_RUNTIME_BACKEND_MPI_MPI_BACKEND_H_
#define KOLO_RUNTIME_BACKEND_MPI_MPI_BACKEND_H_

#include <mpi.h>

#include <vector>

#include "runtime/backend/backend.h"

namespace kolo {

class MpiBackend : public Backend {
 public:
  explicit MpiBackend(MPI_Comm comm);

  using Backend::Allreduce;
  const char* name() const override { return "mpi"; }
  Status Allreduce(void* buffer, int64_t count,
                   const ReductionSpec& spec) override;
  Status Allgatherv(const void* input, void* output,
                    const std::vector<int64_t>& bytes_per_rank) override;
  Status Broadcast(void* buffer, int64_t bytes, int root) override;
  Status Alltoallv(const void* input, const std::vector<int64_t>& send_bytes,
                   void* output,
                   const std::vector<int64_t>& recv_bytes) override;
  Status ReduceScatter(const void* input, void* output,
                       const std::vector<int64_t>& counts,
                       const ReductionSpec& spec) override;
  Status Barrier() override;
  // Open MPI's collectives cannot be interrupted: after a local failure,
  // logs `reason` and ends the job with MPI_Abort (mpirun then stops every
  // rank). A peer's death needs nothing: mpirun ends such a job itself.
  void Abandon(absl::string_view reason, bool local_failure) override;

 private:
  MPI_Comm comm_;
  int rank_ = 0;
  int size_ = 1;
  // Reused between calls: widened half-precision data and scaled copies.
  std::vector<float> wide_;
  std::vector<float> wide_out_;
  std::vector<char> scratch_;
};

}  // namespace kolo

#endif  // KOLO_RUNTIME_BACKEND_MPI_MPI_BACKEND_H_
