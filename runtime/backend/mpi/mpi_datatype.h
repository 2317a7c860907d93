// The MPI datatype of each kolo dtype: the one table that the MPI backend and
// kolo_bench's MPI baseline share. Header-only, so that kolo_bench needs
// nothing from libkolo beyond its public API.
#ifndef KOLO_RUNTIME_BACKEND_MPI_MPI_DATATYPE_H_
#define KOLO_RUNTIME_BACKEND_MPI_MPI_DATATYPE_H_

#include <mpi.h>

#include <string>

#include "kolo/status.h"
#include "kolo/types.h"
#include "runtime/common/dtype_dispatch.h"

namespace kolo {

// The MPI datatype of one storage type of dtype_dispatch.h; MPI_DATATYPE_NULL
// for the 16-bit floats, which MPI has no type for (the MPI backend reduces
// them widened to float32).
template <typename T>
MPI_Datatype MpiDatatypeOf() {
  return MPI_DATATYPE_NULL;
}
template <>
inline MPI_Datatype MpiDatatypeOf<uint8_t>() {
  return MPI_UINT8_T;
}
template <>
inline MPI_Datatype MpiDatatypeOf<int8_t>() {
  return MPI_INT8_T;
}
template <>
inline MPI_Datatype MpiDatatypeOf<int32_t>() {
  return MPI_INT32_T;
}
template <>
inline MPI_Datatype MpiDatatypeOf<int64_t>() {
  return MPI_INT64_T;
}
template <>
inline MPI_Datatype MpiDatatypeOf<float>() {
  return MPI_FLOAT;
}
template <>
inline MPI_Datatype MpiDatatypeOf<double>() {
  return MPI_DOUBLE;
}
// Not MPI_C_BOOL: a C _Bool must hold 0 or 1, kolo's bool byte may hold any
// value. MPI_LOR and MPI_LAND are defined on unsigned char and treat every
// non-zero byte as true, as kolo does.
template <>
inline MPI_Datatype MpiDatatypeOf<BoolByte>() {
  return MPI_UNSIGNED_CHAR;
}

// The MPI datatype of dtype's elements; InvalidArgument naming the dtype
// where MPI has none (float16, bfloat16) or the value is not a dtype.
inline StatusOr<MPI_Datatype> MpiDatatype(DataType dtype) {
  if (!IsValidDataType(static_cast<int>(dtype))) {
    return absl::InvalidArgumentError("invalid dtype " +
                                      std::to_string(static_cast<int>(dtype)));
  }
  const MPI_Datatype type = DispatchDtype(dtype, [](auto tag) {
    return MpiDatatypeOf<typename decltype(tag)::Type>();
  });
  if (type == MPI_DATATYPE_NULL) {
    return absl::InvalidArgumentError(std::string("MPI has no ") +
                                      DataTypeName(dtype) + " datatype");
  }
  return type;
}

}  // namespace kolo

#endif  // KOLO_RUNTIME_BACKEND_MPI_MPI_DATATYPE_H_
