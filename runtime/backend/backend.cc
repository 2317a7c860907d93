// Default implementations of the Backend interface.
#include "runtime/backend/backend.h"

#include <cstring>

namespace kolo {

Status Backend::Allreduce(const void* input, void* output, int64_t count,
                          const ReductionSpec& spec) {
  if (input != output && count > 0) {
    std::memcpy(output, input, count * DataTypeSize(spec.dtype));
  }
  return Allreduce(output, count, spec);
}

}  // namespace kolo
