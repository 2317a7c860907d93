// ShmBackend: the data plane when every rank runs on one host; every
// collective goes through shared memory (ShmComm).
#ifndef KOLO_RUNTIME_BACKEND_SHM_SHM_BACKEND_H_
#define KOLO_RUNTIME_BACKEND_SHM_SHM_BACKEND_H_

#include <memory>

#include "runtime/backend/backend.h"
#include "runtime/backend/shm/shm_comm.h"

namespace kolo {

class ShmBackend : public Backend {
 public:
  explicit ShmBackend(std::unique_ptr<ShmComm> comm) : comm_(std::move(comm)) {}

  const char* name() const override { return "shm"; }
  Status Allreduce(void* buffer, int64_t count,
                   const ReductionSpec& spec) override {
    return comm_->Allreduce(buffer, buffer, count, spec);
  }
  Status Allreduce(const void* input, void* output, int64_t count,
                   const ReductionSpec& spec) override {
    return comm_->Allreduce(input, output, count, spec);
  }
  const char* AllreduceAlgorithm(int64_t count,
                                 DataType dtype) const override {
    return comm_->AllreduceIsDirect(count, dtype) ? "direct"
                                                  : "reduce_scatter_allgather";
  }
  const char* CopyAlgorithm(int64_t bytes) const override {
    return comm_->CopyAlgorithm(bytes);
  }
  Status Allgatherv(const void* input, void* output,
                    const std::vector<int64_t>& bytes_per_rank) override {
    return comm_->Allgatherv(input, output, bytes_per_rank);
  }
  Status Broadcast(void* buffer, int64_t bytes, int root) override {
    return comm_->Broadcast(buffer, bytes, root);
  }
  Status Alltoallv(const void* input, const std::vector<int64_t>& send_bytes,
                   void* output,
                   const std::vector<int64_t>& recv_bytes) override {
    return comm_->Alltoallv(input, send_bytes, output, recv_bytes);
  }
  Status ReduceScatter(const void* input, void* output,
                       const std::vector<int64_t>& counts,
                       const ReductionSpec& spec) override {
    return comm_->ReduceScatter(input, output, counts, spec);
  }
  Status Barrier() override { return comm_->Barrier(); }
  void Abandon(absl::string_view reason, bool) override {
    comm_->Abandon(reason);
  }

 private:
  std::unique_ptr<ShmComm> comm_;
};

}  // namespace kolo

#endif  // KOLO_RUNTIME_BACKEND_SHM_SHM_BACKEND_H_
