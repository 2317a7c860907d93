// The job's shared secret and the message authentication built on it.
//
// Rank 0 draws 32 random bytes at init and hands them to every rank through
// MPI (the control plane every rank already trusts). Connections between
// ranks that MPI does not carry (the TCP transport) prove knowledge of the
// secret by challenge and response, and the networked doorbells tag their
// datagrams with a value derived from it. The secret itself never travels
// on those sockets and is never logged.
#ifndef KOLO_RUNTIME_COMMON_JOB_SECRET_H_
#define KOLO_RUNTIME_COMMON_JOB_SECRET_H_

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "kolo/status.h"

namespace kolo {

inline constexpr int kJobSecretBytes = 32;
inline constexpr int kMacBytes = 32;

// `bytes` cryptographically random bytes.
StatusOr<std::string> RandomBytes(int bytes);

// HMAC-SHA-256 of `message` under `key` (kMacBytes bytes).
std::string Mac(absl::string_view key, absl::string_view message);

// Compares in time independent of where the inputs differ.
bool MacEquals(absl::string_view a, absl::string_view b);

}  // namespace kolo

#endif  // KOLO_RUNTIME_COMMON_JOB_SECRET_H_
