// Implementation of the hierarchical backend.
#include "runtime/backend/hierarchical/hierarchical_backend.h"

namespace kolo {

HierarchicalBackend::HierarchicalBackend(std::unique_ptr<ShmComm> local,
                                         std::unique_ptr<RingComm> cross,
                                         std::unique_ptr<Backend> fallback,
                                         std::vector<int> local_rank_of,
                                         std::vector<int> cross_rank_of)
    : local_(std::move(local)),
      cross_(std::move(cross)),
      fallback_(std::move(fallback)),
      local_rank_of_(std::move(local_rank_of)),
      cross_rank_of_(std::move(cross_rank_of)) {}

Status HierarchicalBackend::Allreduce(void* buffer, int64_t count,
                                      const ReductionSpec& spec) {
  // Half types are reduced in float32 in all three stages; inside a host
  // they also travel as float32, across hosts as 16 bits where the cross
  // ring is bandwidth-bound (RingComm::AllreduceHalfWire).
  const bool half = IsHalfType(spec.dtype);
  const DataType work = half ? DataType::kFloat32 : spec.dtype;
  char* data = static_cast<char*>(buffer);
  if (half) {
    wide_.resize(count);
    WidenToFloat(buffer, wide_.data(), count, spec.dtype);
    data = reinterpret_cast<char*>(wide_.data());
  }
  if (Status s = local_->ReduceScatterBlocks(data, count, work, spec.op,
                                             spec.prescale);
      !s.ok()) {
    return s;
  }
  const auto [lo, hi] = BlockRange(count, local_->size(), local_->rank());
  ReductionSpec across = spec;
  across.dtype = work;
  across.prescale = 1.0;  // applied inside the host already
  const Status crossed =
      half ? cross_->AllreduceHalfWire(wide_.data() + lo, hi - lo, spec.dtype,
                                       spec.op, spec.divisor, spec.postscale)
           : cross_->Allreduce(data + lo * DataTypeSize(work), hi - lo, across);
  if (!crossed.ok()) return crossed;
  if (Status s = local_->AllgatherBlocks(data, count, work); !s.ok()) return s;
  if (half) NarrowFromFloat(wide_.data(), buffer, count, spec.dtype);
  return absl::OkStatus();
}

Status HierarchicalBackend::Broadcast(void* buffer, int64_t bytes, int root) {
  const int root_local = local_rank_of_[root];
  if (local_->rank() == root_local) {
    if (Status s = cross_->Broadcast(buffer, bytes, cross_rank_of_[root]);
        !s.ok()) {
      return s;
    }
  }
  return local_->Broadcast(buffer, bytes, root_local);
}

}  // namespace kolo
