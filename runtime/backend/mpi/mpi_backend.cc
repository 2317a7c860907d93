// Implementation of the MPI backend.
#include "runtime/backend/mpi/mpi_backend.h"

#include <algorithm>
#include <climits>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "runtime/backend/mpi/mpi_datatype.h"
#include "runtime/common/logging.h"
#include "runtime/common/mpi_status.h"

namespace kolo {
namespace {

// MPI counts are ints: large buffers go in pieces of at most this many
// elements.
constexpr int64_t kMaxChunk = int64_t{1} << 30;

MPI_Op MpiOp(DataType dtype, ReduceOp op) {
  if (dtype == DataType::kBool) {
    return (op == ReduceOp::kMin || op == ReduceOp::kProduct) ? MPI_LAND
                                                              : MPI_LOR;
  }
  switch (op) {
    case ReduceOp::kMin:
      return MPI_MIN;
    case ReduceOp::kMax:
      return MPI_MAX;
    case ReduceOp::kProduct:
      return MPI_PROD;
    case ReduceOp::kSum:
    case ReduceOp::kAverage:
    case ReduceOp::kAdasum:  // never reaches a backend: core/adasum.h
      return MPI_SUM;
  }
  return MPI_SUM;
}

Status CheckIntRange(const std::vector<int64_t>& values, const char* what) {
  int64_t total = 0;
  for (int64_t v : values) total += v;
  if (total > INT_MAX) {
    return absl::UnimplementedError(
        absl::StrCat("mpi backend: ", what, " of ", total,
                     " bytes exceeds MPI's 2 GiB limit for one call"));
  }
  return absl::OkStatus();
}

std::vector<int> ToInts(const std::vector<int64_t>& values) {
  return std::vector<int>(values.begin(), values.end());
}

std::vector<int> Displacements(const std::vector<int>& counts) {
  std::vector<int> displacements(counts.size(), 0);
  for (size_t i = 1; i < counts.size(); ++i) {
    displacements[i] = displacements[i - 1] + counts[i - 1];
  }
  return displacements;
}

}  // namespace

MpiBackend::MpiBackend(MPI_Comm comm) : comm_(comm) {
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
}

Status MpiBackend::Allreduce(void* buffer, int64_t count,
                             const ReductionSpec& spec) {
  DataType dtype = spec.dtype;
  void* data = buffer;
  if (IsHalfType(spec.dtype)) {
    wide_.resize(count);
    WidenToFloat(buffer, wide_.data(), count, spec.dtype);
    data = wide_.data();
    dtype = DataType::kFloat32;
  }
  const StatusOr<MPI_Datatype> type = MpiDatatype(dtype);
  if (!type.ok()) return type.status();
  ScaleBuffer(data, count, dtype, spec.prescale);
  const MPI_Op op = MpiOp(spec.dtype, spec.op);
  const int64_t element = DataTypeSize(dtype);
  for (int64_t start = 0; start < count; start += kMaxChunk) {
    const int n = static_cast<int>(std::min(kMaxChunk, count - start));
    KOLO_MPI_RETURN_IF_ERROR(
        MPI_Allreduce(MPI_IN_PLACE, static_cast<char*>(data) + start * element,
                      n, *type, op, comm_));
  }
  FinishReduction(data, count, dtype, spec.divisor, spec.postscale);
  if (IsHalfType(spec.dtype)) {
    NarrowFromFloat(wide_.data(), buffer, count, spec.dtype);
  }
  return absl::OkStatus();
}

Status MpiBackend::Allgatherv(const void* input, void* output,
                              const std::vector<int64_t>& bytes_per_rank) {
  if (Status s = CheckIntRange(bytes_per_rank, "allgather"); !s.ok()) return s;
  const std::vector<int> counts = ToInts(bytes_per_rank);
  const std::vector<int> displacements = Displacements(counts);
  KOLO_MPI_RETURN_IF_ERROR(
      MPI_Allgatherv(input, counts[rank_], MPI_BYTE, output, counts.data(),
                     displacements.data(), MPI_BYTE, comm_));
  return absl::OkStatus();
}

Status MpiBackend::Broadcast(void* buffer, int64_t bytes, int root) {
  for (int64_t start = 0; start < bytes; start += kMaxChunk) {
    const int n = static_cast<int>(std::min(kMaxChunk, bytes - start));
    KOLO_MPI_RETURN_IF_ERROR(MPI_Bcast(static_cast<char*>(buffer) + start, n,
                                       MPI_BYTE, root, comm_));
  }
  return absl::OkStatus();
}

Status MpiBackend::Alltoallv(const void* input,
                             const std::vector<int64_t>& send_bytes,
                             void* output,
                             const std::vector<int64_t>& recv_bytes) {
  if (Status s = CheckIntRange(send_bytes, "alltoall send"); !s.ok()) return s;
  if (Status s = CheckIntRange(recv_bytes, "alltoall receive"); !s.ok()) {
    return s;
  }
  const std::vector<int> send_counts = ToInts(send_bytes);
  const std::vector<int> recv_counts = ToInts(recv_bytes);
  const std::vector<int> send_displacements = Displacements(send_counts);
  const std::vector<int> recv_displacements = Displacements(recv_counts);
  KOLO_MPI_RETURN_IF_ERROR(MPI_Alltoallv(
      input, send_counts.data(), send_displacements.data(), MPI_BYTE, output,
      recv_counts.data(), recv_displacements.data(), MPI_BYTE, comm_));
  return absl::OkStatus();
}

Status MpiBackend::ReduceScatter(const void* input, void* output,
                                 const std::vector<int64_t>& counts,
                                 const ReductionSpec& spec) {
  if (Status s = CheckIntRange(counts, "reducescatter"); !s.ok()) return s;
  int64_t total = 0;
  for (int64_t c : counts) total += c;
  const int64_t mine = counts[rank_];
  DataType dtype = spec.dtype;
  const void* send = input;
  void* receive = output;
  if (IsHalfType(spec.dtype)) {
    wide_.resize(total);
    wide_out_.resize(mine);
    WidenToFloat(input, wide_.data(), total, spec.dtype);
    dtype = DataType::kFloat32;
    ScaleBuffer(wide_.data(), total, dtype, spec.prescale);
    send = wide_.data();
    receive = wide_out_.data();
  } else if (spec.has_prescale()) {
    scratch_.resize(total * DataTypeSize(dtype));
    std::memcpy(scratch_.data(), input, scratch_.size());
    ScaleBuffer(scratch_.data(), total, dtype, spec.prescale);
    send = scratch_.data();
  }
  const StatusOr<MPI_Datatype> type = MpiDatatype(dtype);
  if (!type.ok()) return type.status();
  const std::vector<int> recv_counts = ToInts(counts);
  KOLO_MPI_RETURN_IF_ERROR(MPI_Reduce_scatter(send, receive, recv_counts.data(),
                                              *type, MpiOp(spec.dtype, spec.op),
                                              comm_));
  FinishReduction(receive, mine, dtype, spec.divisor, spec.postscale);
  if (IsHalfType(spec.dtype)) {
    NarrowFromFloat(wide_out_.data(), output, mine, spec.dtype);
  }
  return absl::OkStatus();
}

Status MpiBackend::Barrier() {
  KOLO_MPI_RETURN_IF_ERROR(MPI_Barrier(comm_));
  return absl::OkStatus();
}

void MpiBackend::Abandon(absl::string_view reason, bool local_failure) {
  if (!local_failure) return;
  Log().critical(
      "{}; ending the job with MPI_Abort, since peers may be waiting inside "
      "Open MPI's collectives, which cannot be interrupted",
      std::string(reason));
  MPI_Abort(comm_, 1);
}

}  // namespace kolo
