// kolo/status.h: kolo reports every failure as an absl::Status.
//
// The codes carry meaning across ranks (see docs/design.md):
//   InvalidArgument    bad input on this rank (duplicate pending name, ...)
//   FailedPrecondition a cross-rank mismatch (shape, dtype, op, root, ...)
//   DeadlineExceeded   a stalled operation (submitted by some ranks only)
//   Aborted            a peer failed; the runtime cannot continue
//   Cancelled          the runtime was shut down
//   Internal           a transport or backend failure
// The message names the tensor, the ranks and the values at fault.
#ifndef KOLO_STATUS_H_
#define KOLO_STATUS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kolo {

using Status = absl::Status;
template <typename T>
using StatusOr = absl::StatusOr<T>;

}  // namespace kolo

#endif  // KOLO_STATUS_H_
