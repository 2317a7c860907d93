// Implementation of the helpers every Bootstrap shares.
#include "runtime/common/bootstrap.h"

#include <vector>

namespace kolo {

StatusOr<bool> Bootstrap::AllTrue(bool mine) {
  const uint8_t flag = mine ? 1 : 0;
  std::vector<uint8_t> flags(size());
  if (Status s = Allgather(&flag, flags.data(), 1); !s.ok()) return s;
  for (uint8_t f : flags) {
    if (f == 0) return false;
  }
  return true;
}

}  // namespace kolo
