// The batched copy kernel. The element type is a run-time switch rather than
// a template parameter: the kernel is memory-bound, the switch is uniform
// across a warp, and one instantiation keeps nvcc's work (and CI time)
// small.
//
// Grid: blockIdx.y picks the task, blockIdx.x and threadIdx.x stride over
// its elements.
#include "runtime/backend/nccl/copy_kernel.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>

namespace kolo {
namespace nccl {
namespace {

constexpr int kThreads = 256;
// Elements each thread handles per grid-stride step, roughly; bounds the
// grid for large tensors.
constexpr int64_t kElementsPerThread = 8;
constexpr int64_t kMaxBlocksPerTask = 1024;

__device__ int ElementSize(int dtype) {
  switch (static_cast<DataType>(dtype)) {
    case DataType::kUint8:
    case DataType::kInt8:
    case DataType::kBool:
      return 1;
    case DataType::kFloat16:
    case DataType::kBfloat16:
      return 2;
    case DataType::kInt32:
    case DataType::kFloat32:
      return 4;
    case DataType::kInt64:
    case DataType::kFloat64:
      return 8;
  }
  return 1;
}

__device__ bool IsInteger(int dtype) {
  switch (static_cast<DataType>(dtype)) {
    case DataType::kUint8:
    case DataType::kInt8:
    case DataType::kInt32:
    case DataType::kInt64:
    case DataType::kBool:
      return true;
    default:
      return false;
  }
}

__device__ double LoadDouble(const void* p, int dtype, int64_t i) {
  switch (static_cast<DataType>(dtype)) {
    case DataType::kUint8:
    case DataType::kBool:
      return static_cast<const uint8_t*>(p)[i];
    case DataType::kInt8:
      return static_cast<const int8_t*>(p)[i];
    case DataType::kInt32:
      return static_cast<const int32_t*>(p)[i];
    case DataType::kInt64:
      return static_cast<double>(static_cast<const int64_t*>(p)[i]);
    case DataType::kFloat16:
      return __half2float(static_cast<const __half*>(p)[i]);
    case DataType::kBfloat16:
      return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
    case DataType::kFloat32:
      return static_cast<const float*>(p)[i];
    case DataType::kFloat64:
      return static_cast<const double*>(p)[i];
  }
  return 0;
}

__device__ int64_t LoadInt(const void* p, int dtype, int64_t i) {
  switch (static_cast<DataType>(dtype)) {
    case DataType::kUint8:
    case DataType::kBool:
      return static_cast<const uint8_t*>(p)[i];
    case DataType::kInt8:
      return static_cast<const int8_t*>(p)[i];
    case DataType::kInt32:
      return static_cast<const int32_t*>(p)[i];
    case DataType::kInt64:
      return static_cast<const int64_t*>(p)[i];
    default:
      return 0;
  }
}

// Integers: static_cast truncates toward zero, as the CPU kernels do.
__device__ void StoreDouble(void* p, int dtype, int64_t i, double v) {
  switch (static_cast<DataType>(dtype)) {
    case DataType::kUint8:
    case DataType::kBool:
      static_cast<uint8_t*>(p)[i] = static_cast<uint8_t>(v);
      return;
    case DataType::kInt8:
      static_cast<int8_t*>(p)[i] = static_cast<int8_t>(v);
      return;
    case DataType::kInt32:
      static_cast<int32_t*>(p)[i] = static_cast<int32_t>(v);
      return;
    case DataType::kInt64:
      static_cast<int64_t*>(p)[i] = static_cast<int64_t>(v);
      return;
    case DataType::kFloat16:
      static_cast<__half*>(p)[i] = __float2half_rn(static_cast<float>(v));
      return;
    case DataType::kBfloat16:
      static_cast<__nv_bfloat16*>(p)[i] =
          __float2bfloat16_rn(static_cast<float>(v));
      return;
    case DataType::kFloat32:
      static_cast<float*>(p)[i] = static_cast<float>(v);
      return;
    case DataType::kFloat64:
      static_cast<double*>(p)[i] = v;
      return;
  }
}

__device__ void StoreInt(void* p, int dtype, int64_t i, int64_t v) {
  switch (static_cast<DataType>(dtype)) {
    case DataType::kUint8:
    case DataType::kBool:
      static_cast<uint8_t*>(p)[i] = static_cast<uint8_t>(v);
      return;
    case DataType::kInt8:
      static_cast<int8_t*>(p)[i] = static_cast<int8_t>(v);
      return;
    case DataType::kInt32:
      static_cast<int32_t*>(p)[i] = static_cast<int32_t>(v);
      return;
    case DataType::kInt64:
      static_cast<int64_t*>(p)[i] = v;
      return;
    default:
      return;
  }
}

// Rounds v to the arithmetic dtype (float32 or float64) after a step.
__device__ double RoundTo(int dtype, double v) {
  return static_cast<DataType>(dtype) == DataType::kFloat32
             ? static_cast<double>(static_cast<float>(v))
             : v;
}

__device__ void CopyBytes(const CopyTask& task, int64_t bytes, int64_t first,
                          int64_t stride) {
  const auto src = reinterpret_cast<uintptr_t>(task.src);
  const auto dst = reinterpret_cast<uintptr_t>(task.dst);
  if (((src | dst) & 15) == 0) {
    const int64_t vectors = bytes / 16;
    const auto* s = static_cast<const uint4*>(task.src);
    auto* d = static_cast<uint4*>(task.dst);
    for (int64_t i = first; i < vectors; i += stride) d[i] = s[i];
    const int64_t tail = vectors * 16;
    for (int64_t i = tail + first; i < bytes; i += stride) {
      static_cast<uint8_t*>(task.dst)[i] =
          static_cast<const uint8_t*>(task.src)[i];
    }
    return;
  }
  if (((src | dst) & 3) == 0) {
    const int64_t words = bytes / 4;
    const auto* s = static_cast<const uint32_t*>(task.src);
    auto* d = static_cast<uint32_t*>(task.dst);
    for (int64_t i = first; i < words; i += stride) d[i] = s[i];
    for (int64_t i = words * 4 + first; i < bytes; i += stride) {
      static_cast<uint8_t*>(task.dst)[i] =
          static_cast<const uint8_t*>(task.src)[i];
    }
    return;
  }
  for (int64_t i = first; i < bytes; i += stride) {
    static_cast<uint8_t*>(task.dst)[i] =
        static_cast<const uint8_t*>(task.src)[i];
  }
}

// __grid_constant__: the batch is read in place from the parameter block
// (indexed by blockIdx.y) instead of being copied to local memory.
__global__ void BatchedCopyKernel(const __grid_constant__ CopyBatch batch) {
  const CopyTask& task = batch.tasks[blockIdx.y];
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x +
                        threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int src = batch.src_dtype;
  const int dst = batch.dst_dtype;
  if (src == dst && batch.scale == 1.0 && batch.divisor == 1) {
    CopyBytes(task, task.count * ElementSize(src), first, stride);
    return;
  }
  // The arithmetic dtype: whichever side is not 16-bit floating point.
  const bool src_half = static_cast<DataType>(src) == DataType::kFloat16 ||
                        static_cast<DataType>(src) == DataType::kBfloat16;
  const int arithmetic = src_half ? dst : src;
  if (IsInteger(arithmetic)) {
    for (int64_t i = first; i < task.count; i += stride) {
      int64_t v = LoadInt(task.src, src, i);
      if (batch.divisor != 1) v /= batch.divisor;
      if (batch.scale != 1.0) {
        StoreDouble(task.dst, dst, i, static_cast<double>(v) * batch.scale);
      } else {
        StoreInt(task.dst, dst, i, v);
      }
    }
    return;
  }
  const double divisor = static_cast<double>(batch.divisor);
  for (int64_t i = first; i < task.count; i += stride) {
    double v = LoadDouble(task.src, src, i);
    if (batch.divisor != 1) v = RoundTo(arithmetic, v / divisor);
    if (batch.scale != 1.0) v = RoundTo(arithmetic, v * batch.scale);
    StoreDouble(task.dst, dst, i, v);
  }
}

}  // namespace

cudaError_t LaunchCopyBatch(const CopyBatch& batch, cudaStream_t stream) {
  if (batch.num_tasks == 0 || batch.max_count == 0) return cudaSuccess;
  // Byte copies move up to 16 bytes per thread and step; either way the
  // grid is sized for the largest task and smaller ones finish early.
  const int64_t per_block = kThreads * kElementsPerThread;
  const int64_t blocks = std::min<int64_t>(
      (batch.max_count + per_block - 1) / per_block, kMaxBlocksPerTask);
  const dim3 grid(static_cast<unsigned>(std::max<int64_t>(blocks, 1)),
                  static_cast<unsigned>(batch.num_tasks));
  BatchedCopyKernel<<<grid, kThreads, 0, stream>>>(batch);
  return cudaGetLastError();
}

}  // namespace nccl
}  // namespace kolo
