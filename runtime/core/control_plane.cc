// The control plane's shared logic.
#include "runtime/core/control_plane.h"

#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"

namespace kolo {

Status ControlPlane::FlushSends(absl::Duration timeout,
                                std::vector<int>* delivered) {
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    if (Status s = Pump(delivered); !s.ok()) return s;
    if (!sending()) return absl::OkStatus();
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("negotiation messages were not delivered within ",
                       absl::FormatDuration(timeout)));
    }
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

}  // namespace kolo
