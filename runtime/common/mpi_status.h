// MPI error codes as kolo Status values, for every layer that calls MPI.
#ifndef KOLO_RUNTIME_COMMON_MPI_STATUS_H_
#define KOLO_RUNTIME_COMMON_MPI_STATUS_H_

#include <mpi.h>

#include "kolo/status.h"

namespace kolo {

// Status for an MPI error code, naming the call.
Status MpiError(const char* call, int code);

// Returns MpiError from the enclosing function when an MPI call fails.
#define KOLO_MPI_RETURN_IF_ERROR(call)            \
  do {                                            \
    if (int code = (call); code != MPI_SUCCESS) { \
      return MpiError(#call, code);               \
    }                                             \
  } while (0)

}  // namespace kolo

#endif  // KOLO_RUNTIME_COMMON_MPI_STATUS_H_
