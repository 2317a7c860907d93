// The one table from kolo's DataType to the C++ type that stores its
// elements, and DispatchDtype, which turns a run-time dtype into that
// compile-time type. Everything that handles elements by type goes through
// here: the CPU reduction kernels, the CUDA copy kernel, the MPI and NCCL
// datatype tables (backend/mpi/mpi_datatype.h, backend/nccl/nccl_datatype.h)
// and kolo_bench's reference, so a dtype added to kolo/types.h fails to
// compile until every one of them says what to do with it.
//
// Host and device code include it (nvcc, C++17): it needs only kolo/types.h,
// half.h and the standard <cstdint>, <type_traits> and <utility>.
#ifndef KOLO_RUNTIME_COMMON_DTYPE_DISPATCH_H_
#define KOLO_RUNTIME_COMMON_DTYPE_DISPATCH_H_

#include <cstdint>
#include <type_traits>
#include <utility>

#include "kolo/types.h"
#include "runtime/common/half.h"

#ifdef __CUDACC__
#define KOLO_HOST_DEVICE __host__ __device__
#else
#define KOLO_HOST_DEVICE
#endif

namespace kolo {

// Storage of one bool element: a byte, zero for false and anything else for
// true (C API callers may pass any non-zero byte, so kolo never reads it as a
// C++ bool, for which only 0 and 1 are defined).
struct BoolByte {
  uint8_t value;
};

// How kolo computes with a dtype.
enum class DtypeKind {
  kInteger,   // C++ integer arithmetic; divisions truncate toward zero
  kFloating,  // C++ float or double arithmetic
  kHalf,      // 16-bit floating point, computed in float32 (half.h)
  kLogical,   // bool: sum and max are OR, min and product are AND
};

// DtypeTraits<D>, one per DataType:
//   kDtype  D itself (a generic lambda reads it back from its argument)
//   Type    the storage of one element; sizeof(Type) == DataTypeSize(D),
//           and no two dtypes share a Type
//   kKind   how kolo computes with it
//   kName   DataTypeName(D)
template <DataType D>
struct DtypeTraits;

template <>
struct DtypeTraits<DataType::kUint8> {
  static constexpr DataType kDtype = DataType::kUint8;
  using Type = uint8_t;
  static constexpr DtypeKind kKind = DtypeKind::kInteger;
  static constexpr const char* kName = "uint8";
};
template <>
struct DtypeTraits<DataType::kInt8> {
  static constexpr DataType kDtype = DataType::kInt8;
  using Type = int8_t;
  static constexpr DtypeKind kKind = DtypeKind::kInteger;
  static constexpr const char* kName = "int8";
};
template <>
struct DtypeTraits<DataType::kInt32> {
  static constexpr DataType kDtype = DataType::kInt32;
  using Type = int32_t;
  static constexpr DtypeKind kKind = DtypeKind::kInteger;
  static constexpr const char* kName = "int32";
};
template <>
struct DtypeTraits<DataType::kInt64> {
  static constexpr DataType kDtype = DataType::kInt64;
  using Type = int64_t;
  static constexpr DtypeKind kKind = DtypeKind::kInteger;
  static constexpr const char* kName = "int64";
};
template <>
struct DtypeTraits<DataType::kFloat16> {
  static constexpr DataType kDtype = DataType::kFloat16;
  using Type = Float16;
  static constexpr DtypeKind kKind = DtypeKind::kHalf;
  static constexpr const char* kName = "float16";
};
template <>
struct DtypeTraits<DataType::kBfloat16> {
  static constexpr DataType kDtype = DataType::kBfloat16;
  using Type = Bfloat16;
  static constexpr DtypeKind kKind = DtypeKind::kHalf;
  static constexpr const char* kName = "bfloat16";
};
template <>
struct DtypeTraits<DataType::kFloat32> {
  static constexpr DataType kDtype = DataType::kFloat32;
  using Type = float;
  static constexpr DtypeKind kKind = DtypeKind::kFloating;
  static constexpr const char* kName = "float32";
};
template <>
struct DtypeTraits<DataType::kFloat64> {
  static constexpr DataType kDtype = DataType::kFloat64;
  using Type = double;
  static constexpr DtypeKind kKind = DtypeKind::kFloating;
  static constexpr const char* kName = "float64";
};
template <>
struct DtypeTraits<DataType::kBool> {
  static constexpr DataType kDtype = DataType::kBool;
  using Type = BoolByte;
  static constexpr DtypeKind kKind = DtypeKind::kLogical;
  static constexpr const char* kName = "bool";
};

// Calls f(DtypeTraits<dtype>{}) and returns its result; f is usually a
// generic lambda, `[&](auto tag) { using T = typename decltype(tag)::Type;
// ... }`, whose instantiations must all return the same type. The switch
// runs once per call, so a loop inside f is compiled for one type.
//
// REQUIRES: IsValidDataType(dtype) — callers check values that come from
// outside (the API does, at submission). For any other value f is not called
// and the result is value-initialised (0, nullptr, nothing).
//
// nvcc: callable from device code with a lambda defined there (hence the
// pragma: a __host__ __device__ template may call a __device__-only f).
#ifdef __CUDACC__
#pragma nv_exec_check_disable
#endif
template <typename F>
KOLO_HOST_DEVICE constexpr auto DispatchDtype(DataType dtype, F&& f)
    -> decltype(f(DtypeTraits<DataType::kFloat32>{})) {
  switch (dtype) {
    case DataType::kUint8:
      return f(DtypeTraits<DataType::kUint8>{});
    case DataType::kInt8:
      return f(DtypeTraits<DataType::kInt8>{});
    case DataType::kInt32:
      return f(DtypeTraits<DataType::kInt32>{});
    case DataType::kInt64:
      return f(DtypeTraits<DataType::kInt64>{});
    case DataType::kFloat16:
      return f(DtypeTraits<DataType::kFloat16>{});
    case DataType::kBfloat16:
      return f(DtypeTraits<DataType::kBfloat16>{});
    case DataType::kFloat32:
      return f(DtypeTraits<DataType::kFloat32>{});
    case DataType::kFloat64:
      return f(DtypeTraits<DataType::kFloat64>{});
    case DataType::kBool:
      return f(DtypeTraits<DataType::kBool>{});
  }
  return decltype(f(DtypeTraits<DataType::kFloat32>{}))();
}

// The kind of a valid dtype (kInteger for any other value).
KOLO_HOST_DEVICE constexpr DtypeKind DtypeKindOf(DataType dtype) {
  return DispatchDtype(dtype, [](auto tag) { return decltype(tag)::kKind; });
}

namespace dtype_internal {

template <int kValue>
constexpr bool HasOwnEntry() {
  using Traits = DtypeTraits<static_cast<DataType>(kValue)>;
  return Traits::kDtype == static_cast<DataType>(kValue) &&
         std::is_trivially_copyable_v<typename Traits::Type>;
}

template <int... kValues>
constexpr bool CoversEveryDataType(std::integer_sequence<int, kValues...>) {
  return (HasOwnEntry<kValues>() && ...);
}

}  // namespace dtype_internal

// Every value below kNumDataTypes has its entry (a missing one does not
// compile), the entry is its own, and its elements may be copied as bytes.
static_assert(dtype_internal::CoversEveryDataType(
                  std::make_integer_sequence<int, kNumDataTypes>()),
              "DtypeTraits must have an entry for every DataType");

}  // namespace kolo

#endif  // KOLO_RUNTIME_COMMON_DTYPE_DISPATCH_H_
