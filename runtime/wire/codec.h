// Converts negotiation messages to and from bytes
// (runtime/wire/messages.proto). Decoding treats the bytes as untrusted:
// anything malformed or out of range for this job (ranks, dtypes, ops, cache
// slots, shapes) is an InvalidArgument error, never a crash.
#ifndef KOLO_RUNTIME_WIRE_CODEC_H_
#define KOLO_RUNTIME_WIRE_CODEC_H_

#include <string>

#include "absl/strings/string_view.h"
#include "kolo/status.h"
#include "runtime/wire/message.h"

namespace kolo {

// The longest tensor name and the most dimensions a message may carry; the
// API refuses larger ones at submission.
inline constexpr size_t kMaxNameBytes = 1 << 16;
inline constexpr int kMaxDims = 64;

// What a decoded message must fit.
struct WireLimits {
  int world_size = 1;
  int64_t cache_capacity = 0;
};

std::string EncodeRequestList(const RequestList& list);
StatusOr<RequestList> DecodeRequestList(absl::string_view bytes,
                                        const WireLimits& limits);

std::string EncodeResponseList(const ResponseList& list);
StatusOr<ResponseList> DecodeResponseList(absl::string_view bytes,
                                          const WireLimits& limits);

}  // namespace kolo

#endif  // KOLO_RUNTIME_WIRE_CODEC_H_
