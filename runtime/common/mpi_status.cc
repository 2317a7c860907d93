// Implementation of the MPI error conversion.
#include "runtime/common/mpi_status.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace kolo {

Status MpiError(const char* call, int code) {
  char text[MPI_MAX_ERROR_STRING] = {};
  int length = 0;
  MPI_Error_string(code, text, &length);
  // MPICH's strings are error stacks, one line per level with the detail
  // last ("Invalid rank, error stack:\n...\n...: Invalid rank has value 6
  // but must be ..."); Open MPI's are one line. One line keeps log lines
  // and kolo_last_error() whole.
  std::vector<absl::string_view> lines = absl::StrSplit(
      absl::string_view(text, static_cast<size_t>(std::max(length, 0))), '\n',
      absl::SkipWhitespace());
  return absl::InternalError(
      absl::StrCat(call, " failed: ", absl::StrJoin(lines, "; ")));
}

}  // namespace kolo
