// Implementation of the MPI error conversion.
#include "runtime/common/mpi_status.h"

#include "absl/strings/str_cat.h"

namespace kolo {

Status MpiError(const char* call, int code) {
  char text[MPI_MAX_ERROR_STRING] = {};
  int length = 0;
  MPI_Error_string(code, text, &length);
  return absl::InternalError(absl::StrCat(call, " failed: ", text));
}

}  // namespace kolo
