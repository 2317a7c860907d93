// The NCCL datatype of each kolo dtype: the one table that the NCCL executor
// and kolo_bench's NCCL baseline share. Header-only, so that kolo_bench needs
// nothing from libkolo beyond its public API.
#ifndef KOLO_RUNTIME_BACKEND_NCCL_NCCL_DATATYPE_H_
#define KOLO_RUNTIME_BACKEND_NCCL_NCCL_DATATYPE_H_

#include <nccl.h>

#include <string>

#include "kolo/status.h"
#include "kolo/types.h"
#include "runtime/common/dtype_dispatch.h"

namespace kolo {
namespace nccl {

// The NCCL datatype of one storage type of dtype_dispatch.h. NCCL has a type
// for every dtype, so a storage type without an entry does not compile.
template <typename T>
ncclDataType_t NcclDatatypeOf() = delete;
template <>
inline ncclDataType_t NcclDatatypeOf<uint8_t>() {
  return ncclUint8;
}
template <>
inline ncclDataType_t NcclDatatypeOf<int8_t>() {
  return ncclInt8;
}
template <>
inline ncclDataType_t NcclDatatypeOf<int32_t>() {
  return ncclInt32;
}
template <>
inline ncclDataType_t NcclDatatypeOf<int64_t>() {
  return ncclInt64;
}
template <>
inline ncclDataType_t NcclDatatypeOf<Float16>() {
  return ncclFloat16;
}
template <>
inline ncclDataType_t NcclDatatypeOf<Bfloat16>() {
  return ncclBfloat16;
}
template <>
inline ncclDataType_t NcclDatatypeOf<float>() {
  return ncclFloat32;
}
template <>
inline ncclDataType_t NcclDatatypeOf<double>() {
  return ncclFloat64;
}
// NCCL has no boolean type. kolo's bool is one byte, zero or not: ncclUint8
// moves it unchanged, and ncclMax / ncclMin on it are logical OR / AND (the
// ops a bool reduction must use; ncclSum and ncclProd would not stay 0 or 1).
template <>
inline ncclDataType_t NcclDatatypeOf<BoolByte>() {
  return ncclUint8;
}

// The NCCL datatype of dtype's elements; InvalidArgument for a value that is
// not a dtype.
inline StatusOr<ncclDataType_t> NcclDatatype(DataType dtype) {
  if (!IsValidDataType(static_cast<int>(dtype))) {
    return absl::InvalidArgumentError("invalid dtype " +
                                      std::to_string(static_cast<int>(dtype)));
  }
  return DispatchDtype(dtype, [](auto tag) {
    return NcclDatatypeOf<typename decltype(tag)::Type>();
  });
}

}  // namespace nccl
}  // namespace kolo

#endif  // KOLO_RUNTIME_BACKEND_NCCL_NCCL_DATATYPE_H_
