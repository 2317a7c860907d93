// kolo/types.h: element types, reduction operations and the framework-neutral
// tensor description that every kolo operation takes.
//
// A Tensor does not own its memory: the caller keeps it alive and unchanged
// until the operation's handle completes.
#ifndef KOLO_TYPES_H_
#define KOLO_TYPES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "kolo/c_api.h"

namespace kolo {

// Values equal the C API's kolo_dtype.
enum class DataType : int {
  kUint8 = KOLO_UINT8,
  kInt8 = KOLO_INT8,
  kInt32 = KOLO_INT32,
  kInt64 = KOLO_INT64,
  kFloat16 = KOLO_FLOAT16,
  kBfloat16 = KOLO_BFLOAT16,
  kFloat32 = KOLO_FLOAT32,
  kFloat64 = KOLO_FLOAT64,
  kBool = KOLO_BOOL,
};
inline constexpr int kNumDataTypes = 9;

// Values equal the C API's kolo_reduce_op.
enum class ReduceOp : int {
  kSum = KOLO_SUM,
  kAverage = KOLO_AVERAGE,
  kMin = KOLO_MIN,
  kMax = KOLO_MAX,
  kProduct = KOLO_PRODUCT,
  // Adaptive summation (Maleki et al., "Scaling Distributed Training with
  // Adaptive Summation"), as Horovod's Adasum: two ranks' vectors a and b
  // combine to (1 - a.b / 2|a|^2) a + (1 - a.b / 2|b|^2) b (b alone when
  // a is zero, and vice versa), pairwise up a binary tree of the ranks
  // ((0,1), (2,3), ... then those pairs' results, ...). The coefficients
  // belong to each tensor, also in a fused batch. Allreduce only, of
  // float32/float64 (float16/bfloat16 computed in float32) tensors on the
  // CPU, with a power-of-two number of ranks; anything else fails with
  // InvalidArgument when submitted. Scale factors apply before and after.
  kAdasum = KOLO_ADASUM,
};
inline constexpr int kNumReduceOps = 6;

// Where a tensor's memory lives. CUDA tensors need a build with NCCL.
struct Device {
  enum Kind : int { kCpu = 0, kCuda = 1 };
  Kind kind = kCpu;
  int index = 0;  // CUDA device ordinal; 0 for the CPU.
  bool operator==(const Device& other) const {
    return kind == other.kind && index == other.index;
  }
};

// Size of one element in bytes; 0 for an invalid value.
int64_t DataTypeSize(DataType dtype);
// "float32", "int8", ...
const char* DataTypeName(DataType dtype);
// "sum", "average", ...
const char* ReduceOpName(ReduceOp op);
// True when dtype is one of the nine values above.
bool IsValidDataType(int dtype);
// True when op is one of the kNumReduceOps values above.
bool IsValidReduceOp(int op);

// A dense, contiguous, row-major tensor that kolo reads or writes in place.
struct Tensor {
  void* data = nullptr;
  DataType dtype = DataType::kFloat32;
  std::vector<int64_t> shape;  // empty = scalar (one element)
  Device device;
  // CUDA tensors only: the cudaStream_t (as void*) whose queued work produces
  // the input (and will read the output); null means the legacy default
  // stream. kolo records an event on it when the operation is submitted and
  // makes its own stream wait for that event, so the caller need not
  // synchronise before submitting. When the handle completes, the results are
  // in device memory (kolo waited for its stream), so any stream may read
  // them.
  void* cuda_stream = nullptr;

  int64_t num_elements() const;
  int64_t size_bytes() const { return num_elements() * DataTypeSize(dtype); }
};

}  // namespace kolo

#endif  // KOLO_TYPES_H_
