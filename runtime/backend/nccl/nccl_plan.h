// The host-side decisions of the NCCL backend, kept free of CUDA and NCCL
// headers so that they are unit-tested on machines without a GPU (and in
// builds without NCCL):
//   - how an allreduce or reducescatter runs: what NCCL reduces (the wire
//     dtype and op), which scaling is fused into the copies, and whether the
//     collective can read and write the caller's tensors directly;
//   - the descriptors of the batched copy kernel that packs tensors into the
//     fusion buffer (prescale fused in) and unpacks them (average divisor and
//     postscale fused in);
//   - byte counts and offsets of allgather, alltoall and reducescatter.
//
// Terms. The "work" buffer is what NCCL reduces: the fusion buffer (or a
// scratch buffer) holding the packed tensors in the wire dtype. "Direct"
// means NCCL reads the input tensor and writes the output tensor itself, in
// or out of place, with no copy.
#ifndef KOLO_RUNTIME_BACKEND_NCCL_NCCL_PLAN_H_
#define KOLO_RUNTIME_BACKEND_NCCL_NCCL_PLAN_H_

#include <cstdint>
#include <vector>

#include "kolo/types.h"

namespace kolo {
namespace nccl {

// NCCL's reduction operations (ncclRedOp_t), mirrored here.
enum class NcclOp : int { kSum, kProd, kMax, kMin, kAvg };

const char* NcclOpName(NcclOp op);

// How one allreduce (or reducescatter) of CUDA tensors runs.
//
// Semantics are those of the CPU data planes (docs/design.md, runtime/common/
// reduce.h): output = postscale * reduce(prescale * input) / divisor.
//   - float16 and bfloat16 are widened to float32 by the pack copy, reduced
//     in float32 and narrowed once by the unpack copy (never summed in
//     16-bit arithmetic; this doubles their bytes on the wire).
//   - Integers are scaled in double precision and truncated toward zero;
//     integer averages divide the integer sum, truncating toward zero.
//   - bool reduces as uint8: SUM and MAX are MAX (logical OR), MIN and
//     PRODUCT are MIN (logical AND). AVERAGE was rejected at submission.
//   - AVERAGE uses ncclAvg when every rank contributes, the wire dtype is a
//     floating-point one, the collective spans all ranks (avg_allowed) and
//     size is a power of two (NCCL premultiplies by 1/size, exact only
//     then); otherwise it is a sum divided by the contributors in the unpack
//     copy (ranks that joined contribute zeros and are not counted).
struct ReductionPlan {
  DataType wire_dtype = DataType::kFloat32;
  NcclOp op = NcclOp::kSum;
  double prescale = 1.0;   // fused into the pack copy
  int64_t divisor = 1;     // fused into the unpack copy
  double postscale = 1.0;  // fused into the unpack copy
  // NCCL can run on the caller's tensors: no widening and no scaling.
  bool direct = false;

  bool has_pack_scaling() const { return prescale != 1.0; }
  bool has_unpack_scaling() const { return divisor != 1 || postscale != 1.0; }
};

// avg_allowed: whether ncclAvg may stand for the average (false when the
// NCCL collective is only one stage of the reduction, as in hierarchical
// allreduce, whose average spans hosts).
ReductionPlan PlanReduction(DataType dtype, ReduceOp op, double prescale,
                            double postscale, int contributors, int size,
                            bool avg_allowed);

// One element-wise copy of the batched copy kernel: count elements from src
// (in the batch's source dtype) to dst (in its destination dtype).
struct CopyTask {
  const void* src = nullptr;
  void* dst = nullptr;
  int64_t count = 0;
};

// At most this many tasks per kernel launch: the batch travels as the
// kernel's parameter block (no descriptor upload, nothing to keep alive),
// which CUDA limits to 4 KiB on every supported architecture.
inline constexpr int kMaxCopyTasks = 128;

// One launch of the batched copy kernel. For every task and element i:
//   dst[i] = convert(src[i]), where convert widens/narrows between the
//   source and destination dtypes and, in the arithmetic dtype (the one of
//   the two that is not float16/bfloat16), first divides by `divisor`
//   (integers truncating toward zero) and then multiplies by `scale`
//   (integers in double precision, truncated toward zero), rounding to the
//   arithmetic dtype after each step exactly as runtime/common does.
// Without conversion or scaling the kernel copies bytes.
struct CopyBatch {
  CopyTask tasks[kMaxCopyTasks];
  int32_t num_tasks = 0;
  int32_t src_dtype = 0;  // DataType values
  int32_t dst_dtype = 0;
  double scale = 1.0;
  int64_t divisor = 1;
  int64_t max_count = 0;  // the largest task, for the launch shape
};
static_assert(sizeof(CopyBatch) <= 4000,
              "CopyBatch must fit CUDA's 4 KiB kernel parameter limit");

// Splits `tasks` into launches of at most kMaxCopyTasks (empty tasks are
// dropped, so no launch may be needed at all).
std::vector<CopyBatch> BuildCopyBatches(const std::vector<CopyTask>& tasks,
                                        DataType src_dtype, DataType dst_dtype,
                                        double scale, int64_t divisor);

// Element offsets of consecutive tensors of `counts` elements packed into
// one buffer; the last entry is the total.
std::vector<int64_t> PackOffsets(const std::vector<int64_t>& counts);

// `count` rounded up to a multiple of `parts` (hierarchical allreduce pads
// the buffer so that the intra-host reduce-scatter divides it evenly).
int64_t PaddedCount(int64_t count, int parts);

// Per-rank sizes and offsets of a concatenation in rank order.
struct RankLayout {
  std::vector<int64_t> sizes;  // bytes, or elements where stated
  std::vector<int64_t> offsets;
  int64_t total = 0;
  bool equal = true;  // every rank has the same count
};

// Allgather: rank r contributes first_dims[r] rows of row_bytes bytes.
RankLayout AllgatherLayout(const std::vector<int64_t>& first_dims,
                           int64_t row_bytes);

// Alltoall from `splits`, the size x size matrix of rows (row = sender).
struct AlltoallLayout {
  RankLayout send;
  RankLayout recv;
  std::vector<int64_t> received_rows;  // rows from each rank
  int64_t output_rows = 0;
};
AlltoallLayout PlanAlltoall(const std::vector<int64_t>& splits, int size,
                            int rank, int64_t row_bytes);

// Reducescatter of `rows` rows of row_elements elements: counts and offsets
// (in elements) of each rank's share; equal when ncclReduceScatter can
// deliver the shares directly (rows divide by size).
RankLayout ReducescatterLayout(int64_t rows, int64_t row_elements, int size);

}  // namespace nccl
}  // namespace kolo

#endif  // KOLO_RUNTIME_BACKEND_NCCL_NCCL_PLAN_H_
