// Typed test buffers and an independent reference arithmetic for kolo's
// collective tests. Values are small integers (or halves) so that sums and
// products are exact in every dtype; conversions to float16 use the
// compiler's _Float16 and bfloat16 is rounded here by direct comparison, so
// the reference shares no code with kolo's kernels.
#ifndef KOLO_TESTS_RUNTIME_TEST_VALUES_H_
#define KOLO_TESTS_RUNTIME_TEST_VALUES_H_

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "kolo/types.h"

namespace kolo::testing {

inline const std::vector<DataType>& AllDataTypes() {
  static const std::vector<DataType> types = {
      DataType::kUint8,   DataType::kInt8,    DataType::kInt32,
      DataType::kInt64,   DataType::kFloat16, DataType::kBfloat16,
      DataType::kFloat32, DataType::kFloat64, DataType::kBool};
  return types;
}

inline const std::vector<ReduceOp>& AllReduceOps() {
  static const std::vector<ReduceOp> ops = {ReduceOp::kSum, ReduceOp::kAverage,
                                            ReduceOp::kMin, ReduceOp::kMax,
                                            ReduceOp::kProduct};
  return ops;
}

inline bool IsSigned(DataType t) {
  return t != DataType::kUint8 && t != DataType::kBool;
}

inline bool IsInteger(DataType t) {
  return t == DataType::kUint8 || t == DataType::kInt8 ||
         t == DataType::kInt32 || t == DataType::kInt64 ||
         t == DataType::kBool;
}

// Nearest bfloat16 (ties to even) of a float, by comparing the two
// neighbours in double precision.
inline uint16_t ReferenceBfloat16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  const uint32_t low = bits & 0xffff0000u;
  const uint32_t high = low + 0x10000u;
  float lo;
  float hi;
  std::memcpy(&lo, &low, 4);
  std::memcpy(&hi, &high, 4);
  // Past the largest finite value the upper neighbour is infinity; it
  // stands at 2^128 for the comparison, as IEEE rounding prescribes.
  const double hi_value =
      std::isinf(hi) ? std::copysign(std::ldexp(1.0, 128), value) : hi;
  const double dl = std::fabs(static_cast<double>(value) - lo);
  const double dh = std::fabs(hi_value - value);
  if (dl < dh) return static_cast<uint16_t>(low >> 16);
  if (dh < dl) return static_cast<uint16_t>(high >> 16);
  return static_cast<uint16_t>(((low >> 16) & 1) ? high >> 16 : low >> 16);
}

// A typed, contiguous buffer.
class Buffer {
 public:
  Buffer(DataType dtype, int64_t count)
      : dtype_(dtype), count_(count), bytes_(count * DataTypeSize(dtype) + 1) {}

  DataType dtype() const { return dtype_; }
  int64_t count() const { return count_; }
  void* data() { return bytes_.data(); }
  const void* data() const { return bytes_.data(); }
  Tensor tensor() {
    Tensor t;
    t.data = data();
    t.dtype = dtype_;
    t.shape = {count_};
    return t;
  }

  // Stores value converted to the dtype (round to nearest for floats,
  // truncation toward zero for integers).
  void Set(int64_t i, double value) {
    char* p = bytes_.data() + i * DataTypeSize(dtype_);
    switch (dtype_) {
      case DataType::kUint8: { uint8_t v = static_cast<uint8_t>(static_cast<int64_t>(value)); std::memcpy(p, &v, 1); break; }
      case DataType::kInt8: { int8_t v = static_cast<int8_t>(static_cast<int64_t>(value)); std::memcpy(p, &v, 1); break; }
      case DataType::kInt32: { int32_t v = static_cast<int32_t>(value); std::memcpy(p, &v, 4); break; }
      case DataType::kInt64: { int64_t v = static_cast<int64_t>(value); std::memcpy(p, &v, 8); break; }
      case DataType::kFloat16: { _Float16 v = static_cast<_Float16>(static_cast<float>(value)); std::memcpy(p, &v, 2); break; }
      case DataType::kBfloat16: { uint16_t v = ReferenceBfloat16(static_cast<float>(value)); std::memcpy(p, &v, 2); break; }
      case DataType::kFloat32: { float v = static_cast<float>(value); std::memcpy(p, &v, 4); break; }
      case DataType::kFloat64: std::memcpy(p, &value, 8); break;
      case DataType::kBool: { uint8_t v = value != 0; std::memcpy(p, &v, 1); break; }
    }
  }

  double Get(int64_t i) const {
    const char* p = bytes_.data() + i * DataTypeSize(dtype_);
    switch (dtype_) {
      case DataType::kUint8: { uint8_t v; std::memcpy(&v, p, 1); return v; }
      case DataType::kInt8: { int8_t v; std::memcpy(&v, p, 1); return v; }
      case DataType::kInt32: { int32_t v; std::memcpy(&v, p, 4); return v; }
      case DataType::kInt64: { int64_t v; std::memcpy(&v, p, 8); return static_cast<double>(v); }
      case DataType::kFloat16: { _Float16 v; std::memcpy(&v, p, 2); return static_cast<float>(v); }
      case DataType::kBfloat16: { uint16_t v; std::memcpy(&v, p, 2); uint32_t b = uint32_t{v} << 16; float f; std::memcpy(&f, &b, 4); return f; }
      case DataType::kFloat32: { float v; std::memcpy(&v, p, 4); return v; }
      case DataType::kFloat64: { double v; std::memcpy(&v, p, 8); return v; }
      case DataType::kBool: { uint8_t v; std::memcpy(&v, p, 1); return v; }
    }
    return 0;
  }

 private:
  DataType dtype_;
  int64_t count_;
  std::vector<char> bytes_;
};

// The input value of element i on `rank` for a tensor with this salt. Exact
// in every dtype; products stay small.
inline double InputValue(DataType dtype, ReduceOp op, int rank, int64_t i,
                         int salt) {
  const int64_t k = rank * 7 + i * 3 + salt;
  if (dtype == DataType::kBool) return (k % 3) == 0 ? 1 : 0;
  if (op == ReduceOp::kProduct) {
    const double v = static_cast<double>(k % 2 + 1);  // 1 or 2
    return IsSigned(dtype) && (k % 5 == 0) ? -v : v;
  }
  const double v = static_cast<double>(k % 5 + 1);  // 1..5
  return IsSigned(dtype) ? v - 3 : v;               // -2..2 when signed
}

// The value an allreduce over `ranks` (contributing) of InputValue must
// produce, converted as kolo's semantics say. divisor: ranks averaged over.
inline double ReferenceReduce(DataType dtype, ReduceOp op,
                              const std::vector<double>& values,
                              int64_t divisor) {
  if (dtype == DataType::kBool) {
    bool any = false;
    bool all = true;
    for (double v : values) {
      any = any || v != 0;
      all = all && v != 0;
    }
    return (op == ReduceOp::kMin || op == ReduceOp::kProduct) ? all : any;
  }
  double r = values.empty() ? 0 : values[0];
  for (size_t i = 1; i < values.size(); ++i) {
    switch (op) {
      case ReduceOp::kSum:
      case ReduceOp::kAverage: r += values[i]; break;
      case ReduceOp::kMin: r = std::min(r, values[i]); break;
      case ReduceOp::kMax: r = std::max(r, values[i]); break;
      case ReduceOp::kProduct: r *= values[i]; break;
    }
  }
  if (values.empty()) r = 0;
  if (op == ReduceOp::kAverage) {
    if (IsInteger(dtype)) {
      r = static_cast<double>(static_cast<int64_t>(r) / divisor);
    } else if (dtype == DataType::kFloat64) {
      r = r / static_cast<double>(divisor);
    } else {
      // float32 and the half types (reduced in float32) round the quotient
      // to float first.
      r = static_cast<float>(r / static_cast<double>(divisor));
    }
  }
  return r;
}

inline std::string Describe(DataType dtype, ReduceOp op, int64_t count,
                            bool in_place) {
  return std::string(DataTypeName(dtype)) + "/" + ReduceOpName(op) + "/n=" +
         std::to_string(count) + (in_place ? "/in-place" : "/out-of-place");
}

}  // namespace kolo::testing

#endif  // KOLO_TESTS_RUNTIME_TEST_VALUES_H_
