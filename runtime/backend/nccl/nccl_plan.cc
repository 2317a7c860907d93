// Implementation of the NCCL backend's host-side plans.
#include "runtime/backend/nccl/nccl_plan.h"

#include <algorithm>

#include "runtime/common/reduce.h"
#include "runtime/op/operation.h"

namespace kolo {
namespace nccl {

const char* NcclOpName(NcclOp op) {
  switch (op) {
    case NcclOp::kSum:
      return "ncclSum";
    case NcclOp::kProd:
      return "ncclProd";
    case NcclOp::kMax:
      return "ncclMax";
    case NcclOp::kMin:
      return "ncclMin";
    case NcclOp::kAvg:
      return "ncclAvg";
  }
  return "invalid";
}

ReductionPlan PlanReduction(DataType dtype, ReduceOp op, double prescale,
                            double postscale, int contributors, int size,
                            bool avg_allowed) {
  ReductionPlan plan;
  plan.prescale = prescale;
  plan.postscale = postscale;
  plan.wire_dtype = IsHalfType(dtype)          ? DataType::kFloat32
                    : dtype == DataType::kBool ? DataType::kUint8
                                               : dtype;
  const bool floating = plan.wire_dtype == DataType::kFloat32 ||
                        plan.wire_dtype == DataType::kFloat64;
  switch (op) {
    case ReduceOp::kSum:
    case ReduceOp::kAdasum:  // refused for CUDA tensors at submission
      plan.op = dtype == DataType::kBool ? NcclOp::kMax : NcclOp::kSum;
      break;
    case ReduceOp::kMax:
      plan.op = NcclOp::kMax;
      break;
    case ReduceOp::kMin:
      plan.op = NcclOp::kMin;
      break;
    case ReduceOp::kProduct:
      plan.op = dtype == DataType::kBool ? NcclOp::kMin : NcclOp::kProd;
      break;
    case ReduceOp::kAverage:
      // ncclAvg multiplies by 1/size inside NCCL: right only when all ranks
      // contribute and NCCL's reduction is the whole reduction. Integer
      // averages must divide the exact sum, truncating toward zero. For
      // floating point NCCL multiplies every input by (rounded) 1/size
      // before summing (ncclDevPreMulSum), which equals dividing the sum
      // (docs/design.md, Semantics) only when 1/size is a power of two;
      // otherwise the sum is divided by the unpack copy.
      const bool power_of_two = size > 0 && (size & (size - 1)) == 0;
      if (floating && avg_allowed && contributors == size && power_of_two) {
        plan.op = NcclOp::kAvg;
      } else {
        plan.op = NcclOp::kSum;
        plan.divisor = std::max(contributors, 1);
      }
      break;
  }
  plan.direct = !IsHalfType(dtype) && !plan.has_pack_scaling() &&
                !plan.has_unpack_scaling();
  return plan;
}

std::vector<CopyBatch> BuildCopyBatches(const std::vector<CopyTask>& tasks,
                                        DataType src_dtype, DataType dst_dtype,
                                        double scale, int64_t divisor) {
  std::vector<CopyBatch> batches;
  for (const CopyTask& task : tasks) {
    if (task.count <= 0) continue;
    if (batches.empty() || batches.back().num_tasks == kMaxCopyTasks) {
      CopyBatch& batch = batches.emplace_back();
      batch.src_dtype = static_cast<int32_t>(src_dtype);
      batch.dst_dtype = static_cast<int32_t>(dst_dtype);
      batch.scale = scale;
      batch.divisor = divisor;
    }
    CopyBatch& batch = batches.back();
    batch.tasks[batch.num_tasks++] = task;
    batch.max_count = std::max(batch.max_count, task.count);
  }
  return batches;
}

std::vector<int64_t> PackOffsets(const std::vector<int64_t>& counts) {
  std::vector<int64_t> offsets(counts.size() + 1, 0);
  for (size_t i = 0; i < counts.size(); ++i) {
    offsets[i + 1] = offsets[i] + counts[i];
  }
  return offsets;
}

int64_t PaddedCount(int64_t count, int parts) {
  return parts <= 1 ? count : (count + parts - 1) / parts * parts;
}

namespace {

RankLayout LayoutOf(std::vector<int64_t> sizes) {
  RankLayout layout;
  layout.offsets.resize(sizes.size());
  for (size_t r = 0; r < sizes.size(); ++r) {
    layout.offsets[r] = layout.total;
    layout.total += sizes[r];
    layout.equal = layout.equal && sizes[r] == sizes.front();
  }
  layout.sizes = std::move(sizes);
  return layout;
}

}  // namespace

RankLayout AllgatherLayout(const std::vector<int64_t>& first_dims,
                           int64_t row_bytes) {
  std::vector<int64_t> bytes;
  for (int64_t rows : first_dims) bytes.push_back(rows * row_bytes);
  return LayoutOf(std::move(bytes));
}

AlltoallLayout PlanAlltoall(const std::vector<int64_t>& splits, int size,
                            int rank, int64_t row_bytes) {
  AlltoallLayout layout;
  std::vector<int64_t> send(size);
  std::vector<int64_t> recv(size);
  layout.received_rows.resize(size);
  for (int r = 0; r < size; ++r) {
    send[r] = splits[rank * size + r] * row_bytes;
    layout.received_rows[r] = splits[r * size + rank];
    recv[r] = layout.received_rows[r] * row_bytes;
    layout.output_rows += layout.received_rows[r];
  }
  layout.send = LayoutOf(std::move(send));
  layout.recv = LayoutOf(std::move(recv));
  return layout;
}

RankLayout ReducescatterLayout(int64_t rows, int64_t row_elements, int size) {
  std::vector<int64_t> counts(size);
  for (int r = 0; r < size; ++r) {
    counts[r] = ReducescatterRows(rows, size, r) * row_elements;
  }
  return LayoutOf(std::move(counts));
}

}  // namespace nccl
}  // namespace kolo
