// Portable reduction kernels. Written as simple loops over restrict-free
// typed pointers so the compiler vectorises them.
#include "runtime/common/reduce.h"

#include <algorithm>
#include <cmath>

#include "runtime/common/half.h"

namespace kolo {
namespace {

template <typename T>
void ReduceTyped(T* dst, const T* a, const T* b, int64_t count, ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
    case ReduceOp::kAverage:
      for (int64_t i = 0; i < count; ++i) dst[i] = static_cast<T>(a[i] + b[i]);
      return;
    case ReduceOp::kMin:
      for (int64_t i = 0; i < count; ++i) dst[i] = std::min(a[i], b[i]);
      return;
    case ReduceOp::kMax:
      for (int64_t i = 0; i < count; ++i) dst[i] = std::max(a[i], b[i]);
      return;
    case ReduceOp::kProduct:
      for (int64_t i = 0; i < count; ++i) dst[i] = static_cast<T>(a[i] * b[i]);
      return;
  }
}

void ReduceBool(uint8_t* dst, const uint8_t* a, const uint8_t* b,
                int64_t count, ReduceOp op) {
  const bool logical_or = op == ReduceOp::kSum || op == ReduceOp::kMax ||
                          op == ReduceOp::kAverage;
  if (logical_or) {
    for (int64_t i = 0; i < count; ++i) dst[i] = (a[i] | b[i]) != 0;
  } else {
    for (int64_t i = 0; i < count; ++i) dst[i] = (a[i] != 0) & (b[i] != 0);
  }
}

// Half types: widen a block at a time, reduce in float32, narrow once.
void ReduceHalf(uint16_t* dst, const uint16_t* a, const uint16_t* b,
                int64_t count, DataType dtype, ReduceOp op) {
  constexpr int64_t kBlock = 256;
  float fa[kBlock];
  float fb[kBlock];
  for (int64_t start = 0; start < count; start += kBlock) {
    const int64_t n = std::min(kBlock, count - start);
    WidenToFloat(a + start, fa, n, dtype);
    WidenToFloat(b + start, fb, n, dtype);
    ReduceTyped(fa, fa, fb, n, op);
    NarrowFromFloat(fa, dst + start, n, dtype);
  }
}

template <typename T>
void ScaleTyped(T* data, int64_t count, double factor) {
  for (int64_t i = 0; i < count; ++i) {
    data[i] = static_cast<T>(static_cast<double>(data[i]) * factor);
  }
}

template <typename T>
void FinishTyped(T* data, int64_t count, int64_t divisor, double postscale) {
  if (divisor != 1) {
    if constexpr (std::is_integral_v<T>) {
      // C++ integer division truncates toward zero, as DESIGN.md requires.
      for (int64_t i = 0; i < count; ++i) {
        data[i] = static_cast<T>(static_cast<int64_t>(data[i]) / divisor);
      }
    } else {
      const double d = static_cast<double>(divisor);
      for (int64_t i = 0; i < count; ++i) {
        data[i] = static_cast<T>(static_cast<double>(data[i]) / d);
      }
    }
  }
  if (postscale != 1.0) ScaleTyped(data, count, postscale);
}

template <typename Fn>
void HalfBlocks(void* data, int64_t count, DataType dtype, Fn&& fn) {
  constexpr int64_t kBlock = 256;
  float block[kBlock];
  auto* half = static_cast<uint16_t*>(data);
  for (int64_t start = 0; start < count; start += kBlock) {
    const int64_t n = std::min(kBlock, count - start);
    WidenToFloat(half + start, block, n, dtype);
    fn(block, n);
    NarrowFromFloat(block, half + start, n, dtype);
  }
}

}  // namespace

void Reduce(void* dst, const void* a, const void* b, int64_t count,
            DataType dtype, ReduceOp op) {
  switch (dtype) {
    case DataType::kUint8:
      return ReduceTyped(static_cast<uint8_t*>(dst),
                         static_cast<const uint8_t*>(a),
                         static_cast<const uint8_t*>(b), count, op);
    case DataType::kInt8:
      return ReduceTyped(static_cast<int8_t*>(dst),
                         static_cast<const int8_t*>(a),
                         static_cast<const int8_t*>(b), count, op);
    case DataType::kInt32:
      return ReduceTyped(static_cast<int32_t*>(dst),
                         static_cast<const int32_t*>(a),
                         static_cast<const int32_t*>(b), count, op);
    case DataType::kInt64:
      return ReduceTyped(static_cast<int64_t*>(dst),
                         static_cast<const int64_t*>(a),
                         static_cast<const int64_t*>(b), count, op);
    case DataType::kFloat16:
    case DataType::kBfloat16:
      return ReduceHalf(static_cast<uint16_t*>(dst),
                        static_cast<const uint16_t*>(a),
                        static_cast<const uint16_t*>(b), count, dtype, op);
    case DataType::kFloat32:
      return ReduceTyped(static_cast<float*>(dst),
                         static_cast<const float*>(a),
                         static_cast<const float*>(b), count, op);
    case DataType::kFloat64:
      return ReduceTyped(static_cast<double*>(dst),
                         static_cast<const double*>(a),
                         static_cast<const double*>(b), count, op);
    case DataType::kBool:
      return ReduceBool(static_cast<uint8_t*>(dst),
                        static_cast<const uint8_t*>(a),
                        static_cast<const uint8_t*>(b), count, op);
  }
}

void ReduceInto(void* dst, const void* src, int64_t count, DataType dtype,
                ReduceOp op) {
  Reduce(dst, dst, src, count, dtype, op);
}

void ScaleBuffer(void* data, int64_t count, DataType dtype, double factor) {
  if (factor == 1.0) return;
  switch (dtype) {
    case DataType::kUint8:
      return ScaleTyped(static_cast<uint8_t*>(data), count, factor);
    case DataType::kInt8:
      return ScaleTyped(static_cast<int8_t*>(data), count, factor);
    case DataType::kInt32:
      return ScaleTyped(static_cast<int32_t*>(data), count, factor);
    case DataType::kInt64:
      return ScaleTyped(static_cast<int64_t*>(data), count, factor);
    case DataType::kFloat16:
    case DataType::kBfloat16:
      return HalfBlocks(data, count, dtype, [factor](float* block, int64_t n) {
        ScaleTyped(block, n, factor);
      });
    case DataType::kFloat32:
      return ScaleTyped(static_cast<float*>(data), count, factor);
    case DataType::kFloat64:
      return ScaleTyped(static_cast<double*>(data), count, factor);
    case DataType::kBool:
      return;  // scale factors are rejected for bool at enqueue
  }
}

void FinishReduction(void* data, int64_t count, DataType dtype,
                     int64_t divisor, double postscale) {
  if (divisor == 1 && postscale == 1.0) return;
  switch (dtype) {
    case DataType::kUint8:
      return FinishTyped(static_cast<uint8_t*>(data), count, divisor,
                         postscale);
    case DataType::kInt8:
      return FinishTyped(static_cast<int8_t*>(data), count, divisor,
                         postscale);
    case DataType::kInt32:
      return FinishTyped(static_cast<int32_t*>(data), count, divisor,
                         postscale);
    case DataType::kInt64:
      return FinishTyped(static_cast<int64_t*>(data), count, divisor,
                         postscale);
    case DataType::kFloat16:
    case DataType::kBfloat16:
      return HalfBlocks(data, count, dtype,
                        [divisor, postscale](float* block, int64_t n) {
                          FinishTyped(block, n, divisor, postscale);
                        });
    case DataType::kFloat32:
      return FinishTyped(static_cast<float*>(data), count, divisor,
                         postscale);
    case DataType::kFloat64:
      return FinishTyped(static_cast<double*>(data), count, divisor,
                         postscale);
    case DataType::kBool:
      return;
  }
}

void WidenToFloat(const void* src, float* dst, int64_t count, DataType dtype) {
  const auto* half = static_cast<const uint16_t*>(src);
  if (dtype == DataType::kFloat16) {
    for (int64_t i = 0; i < count; ++i) dst[i] = HalfToFloat(half[i]);
  } else {
    for (int64_t i = 0; i < count; ++i) dst[i] = Bfloat16ToFloat(half[i]);
  }
}

void NarrowFromFloat(const float* src, void* dst, int64_t count,
                     DataType dtype) {
  auto* half = static_cast<uint16_t*>(dst);
  if (dtype == DataType::kFloat16) {
    for (int64_t i = 0; i < count; ++i) half[i] = FloatToHalf(src[i]);
  } else {
    for (int64_t i = 0; i < count; ++i) half[i] = FloatToBfloat16(src[i]);
  }
}

}  // namespace kolo
