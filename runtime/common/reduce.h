// Element-wise reduction kernels shared by every CPU backend.
//
// A reduction in kolo is: output = postscale * (reduce_i(prescale * x_i)) /
// divisor, where reduce is sum, min, max or product (AVERAGE is a sum with
// divisor = contributing ranks). float16 and bfloat16 are never reduced in
// 16-bit arithmetic: backends widen them to float32 (WidenToFloat), reduce
// and scale there, and narrow once at the end (NarrowFromFloat). bool uses
// logical OR for sum/max and logical AND for min/product.
#ifndef KOLO_RUNTIME_COMMON_REDUCE_H_
#define KOLO_RUNTIME_COMMON_REDUCE_H_

#include <cstdint>

#include "kolo/types.h"
#include "runtime/common/dtype_dispatch.h"

namespace kolo {

// What a backend must compute for one allreduce or reducescatter.
struct ReductionSpec {
  DataType dtype = DataType::kFloat32;
  ReduceOp op = ReduceOp::kSum;  // never kAverage (see divisor) nor kAdasum
  double prescale = 1.0;
  double postscale = 1.0;
  int64_t divisor = 1;  // integer types divide exactly, rounding toward zero

  bool has_prescale() const { return prescale != 1.0; }
  bool has_finish() const { return postscale != 1.0 || divisor != 1; }
};

// True for float16 and bfloat16, which backends reduce in float32.
inline bool IsHalfType(DataType dtype) {
  return DtypeKindOf(dtype) == DtypeKind::kHalf;
}

// dst[i] = dst[i] (op) src[i] for count elements. op is kSum, kMin, kMax or
// kProduct. Half types are reduced in float32 and rounded once per call.
void ReduceInto(void* dst, const void* src, int64_t count, DataType dtype,
                ReduceOp op);
// dst[i] = a[i] (op) b[i]; dst may alias a or b.
void Reduce(void* dst, const void* a, const void* b, int64_t count,
            DataType dtype, ReduceOp op);

// data[i] *= factor (integers in double precision, truncated toward zero).
void ScaleBuffer(void* data, int64_t count, DataType dtype, double factor);
// data[i] = postscale * (data[i] / divisor), as ReductionSpec describes.
void FinishReduction(void* data, int64_t count, DataType dtype,
                     int64_t divisor, double postscale);

// "avx2" or "generic": the kernels this CPU runs.
const char* ReductionKernelIsa();

// float16/bfloat16 <-> float32.
void WidenToFloat(const void* src, float* dst, int64_t count, DataType dtype);
void NarrowFromFloat(const float* src, void* dst, int64_t count,
                     DataType dtype);

}  // namespace kolo

#endif  // KOLO_RUNTIME_COMMON_REDUCE_H_
