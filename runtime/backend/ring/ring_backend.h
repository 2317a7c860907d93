// RingBackend: every collective over one RingComm spanning all ranks, on the
// TCP transport (KOLO_RING_TRANSPORT=tcp, the default) or MPI
// point-to-point (KOLO_RING_TRANSPORT=mpi).
#ifndef KOLO_RUNTIME_BACKEND_RING_RING_BACKEND_H_
#define KOLO_RUNTIME_BACKEND_RING_RING_BACKEND_H_

#include <memory>

#include "runtime/backend/backend.h"
#include "runtime/backend/ring/ring_comm.h"

namespace kolo {

class RingBackend : public Backend {
 public:
  explicit RingBackend(std::unique_ptr<RingComm> ring)
      : ring_(std::move(ring)) {}

  using Backend::Allreduce;
  const char* name() const override { return "ring"; }
  Status Allreduce(void* buffer, int64_t count,
                   const ReductionSpec& spec) override {
    return ring_->Allreduce(buffer, count, spec);
  }
  Status Allgatherv(const void* input, void* output,
                    const std::vector<int64_t>& bytes_per_rank) override {
    return ring_->Allgatherv(input, output, bytes_per_rank);
  }
  Status Broadcast(void* buffer, int64_t bytes, int root) override {
    return ring_->Broadcast(buffer, bytes, root);
  }
  Status Alltoallv(const void* input, const std::vector<int64_t>& send_bytes,
                   void* output,
                   const std::vector<int64_t>& recv_bytes) override {
    return ring_->Alltoallv(input, send_bytes, output, recv_bytes);
  }
  Status ReduceScatter(const void* input, void* output,
                       const std::vector<int64_t>& counts,
                       const ReductionSpec& spec) override {
    return ring_->ReduceScatter(input, output, counts, spec);
  }
  void Abandon(absl::string_view, bool) override { ring_->Abandon(); }
  Status Barrier() override { return ring_->Barrier(); }

 private:
  std::unique_ptr<RingComm> ring_;
};

}  // namespace kolo

#endif  // KOLO_RUNTIME_BACKEND_RING_RING_BACKEND_H_
