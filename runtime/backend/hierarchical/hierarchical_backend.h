// HierarchicalBackend: for jobs on several hosts with the same number of
// ranks on each. Allreduce runs in three stages: a shared-memory
// reduce-scatter inside each host (local rank l ends with block l reduced
// over its host), a ring allreduce of block l across hosts among the ranks
// with local rank l (so every host link carries 1/local_size of the data per
// rank, all local ranks in parallel), and a shared-memory allgather of the
// blocks inside each host. Broadcast goes across hosts among the root's
// local-rank peers, then through shared memory. Allgather, alltoall,
// reducescatter and barrier go to the fallback backend over every rank (in
// production Open MPI's collectives, which are topology-aware).
#ifndef KOLO_RUNTIME_BACKEND_HIERARCHICAL_HIERARCHICAL_BACKEND_H_
#define KOLO_RUNTIME_BACKEND_HIERARCHICAL_HIERARCHICAL_BACKEND_H_

#include <memory>
#include <vector>

#include "runtime/backend/backend.h"
#include "runtime/backend/ring/ring_comm.h"
#include "runtime/backend/shm/shm_comm.h"

namespace kolo {

class HierarchicalBackend : public Backend {
 public:
  // local_rank_of[r] and cross_rank_of[r] map every world rank r;
  // fallback spans every rank.
  HierarchicalBackend(std::unique_ptr<ShmComm> local,
                      std::unique_ptr<RingComm> cross,
                      std::unique_ptr<Backend> fallback,
                      std::vector<int> local_rank_of,
                      std::vector<int> cross_rank_of);

  using Backend::Allreduce;
  const char* name() const override { return "hierarchical"; }
  Status Allreduce(void* buffer, int64_t count,
                   const ReductionSpec& spec) override;
  Status Broadcast(void* buffer, int64_t bytes, int root) override;
  Status Allgatherv(const void* input, void* output,
                    const std::vector<int64_t>& bytes_per_rank) override {
    return fallback_->Allgatherv(input, output, bytes_per_rank);
  }
  Status Alltoallv(const void* input, const std::vector<int64_t>& send_bytes,
                   void* output,
                   const std::vector<int64_t>& recv_bytes) override {
    return fallback_->Alltoallv(input, send_bytes, output, recv_bytes);
  }
  Status ReduceScatter(const void* input, void* output,
                       const std::vector<int64_t>& counts,
                       const ReductionSpec& spec) override {
    return fallback_->ReduceScatter(input, output, counts, spec);
  }
  Status Barrier() override { return fallback_->Barrier(); }
  // Releases the peers in shared memory, on the ring and in the fallback
  // (which, for MPI after a local failure, ends the job: peers may be
  // inside its collectives).
  void Abandon(absl::string_view reason, bool local_failure) override {
    local_->Abandon(reason);
    cross_->Abandon();
    fallback_->Abandon(reason, local_failure);
  }

 private:
  std::unique_ptr<ShmComm> local_;
  std::unique_ptr<RingComm> cross_;
  std::unique_ptr<Backend> fallback_;
  std::vector<int> local_rank_of_;
  std::vector<int> cross_rank_of_;
  std::vector<float> wide_;
};

}  // namespace kolo

#endif  // KOLO_RUNTIME_BACKEND_HIERARCHICAL_HIERARCHICAL_BACKEND_H_
