// The batched copy kernel. The element type is a run-time switch
// (DispatchDtype, runtime/common/dtype_dispatch.h) rather than a template
// parameter of the kernel: the kernel is memory-bound, the switch is uniform
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

#include "runtime/common/dtype_dispatch.h"

namespace kolo {
namespace nccl {
namespace {

constexpr int kThreads = 256;
// Elements each thread handles per grid-stride step, roughly; bounds the
// grid for large tensors.
constexpr int64_t kElementsPerThread = 8;
constexpr int64_t kMaxBlocksPerTask = 1024;

// The CUDA type an element is read and written as: cuda_fp16.h's and
// cuda_bf16.h's for the 16-bit floats, the byte itself for bool (any
// non-zero byte is true, and copies keep it as it is).
template <typename T>
struct CudaElement {
  using Type = T;
};
template <>
struct CudaElement<Float16> {
  using Type = __half;
};
template <>
struct CudaElement<Bfloat16> {
  using Type = __nv_bfloat16;
};
template <>
struct CudaElement<BoolByte> {
  using Type = uint8_t;
};
template <typename Tag>
using CudaType = typename CudaElement<typename Tag::Type>::Type;

template <typename Tag>
constexpr bool kIsInteger =
    Tag::kKind == DtypeKind::kInteger || Tag::kKind == DtypeKind::kLogical;

template <typename T>
__device__ double ToDouble(T v) {
  return static_cast<double>(v);
}
__device__ double ToDouble(__half v) { return __half2float(v); }
__device__ double ToDouble(__nv_bfloat16 v) { return __bfloat162float(v); }

// Integers: static_cast truncates toward zero, as the CPU kernels do.
template <typename T>
__device__ T FromDouble(double v) {
  return static_cast<T>(v);
}
template <>
__device__ __half FromDouble<__half>(double v) {
  return __float2half_rn(static_cast<float>(v));
}
template <>
__device__ __nv_bfloat16 FromDouble<__nv_bfloat16>(double v) {
  return __float2bfloat16_rn(static_cast<float>(v));
}

// Each helper below switches on the dtype per element: the switch is uniform
// across the grid, and the kernel stays one instantiation.
__device__ int ElementSize(int dtype) {
  return DispatchDtype(static_cast<DataType>(dtype), [](auto tag) {
    return static_cast<int>(sizeof(typename decltype(tag)::Type));
  });
}

__device__ bool IsInteger(int dtype) {
  return DispatchDtype(static_cast<DataType>(dtype),
                       [](auto tag) { return kIsInteger<decltype(tag)>; });
}

__device__ double LoadDouble(const void* p, int dtype, int64_t i) {
  return DispatchDtype(static_cast<DataType>(dtype), [&](auto tag) {
    using T = CudaType<decltype(tag)>;
    return ToDouble(static_cast<const T*>(p)[i]);
  });
}

// Integer dtypes only (0 for the others).
__device__ int64_t LoadInt(const void* p, int dtype, int64_t i) {
  return DispatchDtype(static_cast<DataType>(dtype), [&](auto tag) {
    using T = CudaType<decltype(tag)>;
    if constexpr (kIsInteger<decltype(tag)>) {
      return static_cast<int64_t>(static_cast<const T*>(p)[i]);
    } else {
      return int64_t{0};
    }
  });
}

__device__ void StoreDouble(void* p, int dtype, int64_t i, double v) {
  DispatchDtype(static_cast<DataType>(dtype), [&](auto tag) {
    using T = CudaType<decltype(tag)>;
    static_cast<T*>(p)[i] = FromDouble<T>(v);
  });
}

// Integer dtypes only (nothing for the others).
__device__ void StoreInt(void* p, int dtype, int64_t i, int64_t v) {
  DispatchDtype(static_cast<DataType>(dtype), [&](auto tag) {
    using T = CudaType<decltype(tag)>;
    if constexpr (kIsInteger<decltype(tag)>) {
      static_cast<T*>(p)[i] = static_cast<T>(v);
    }
  });
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
  const bool src_half =
      DtypeKindOf(static_cast<DataType>(src)) == DtypeKind::kHalf;
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
