// Fuzzes the negotiation codec (runtime/wire/codec.h) with bytes as a peer
// could send them: decoding must never crash, and whatever decodes must
// encode and decode again to the same message. "The same" is judged on the
// encodings (protobuf writes a message's fields deterministically), so every
// field the codec carries is compared, new ones included, and NaN scales
// compare equal to themselves.
//
// Input: one header byte, then the message bytes.
//   bit 0      0: a RequestList (what rank 0 receives), 1: a ResponseList
//              (what every rank receives from rank 0)
//   bits 1-3   world size - 1 (1 to 8 ranks)
//   bits 4-7   response-cache capacity / 16 (0 to 240 slots)
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "runtime/wire/codec.h"

namespace kolo {
namespace {

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "wire_codec_fuzzer: %s\n", what);
  std::abort();
}

void FuzzRequestList(absl::string_view bytes, const WireLimits& limits) {
  StatusOr<RequestList> decoded = DecodeRequestList(bytes, limits);
  if (!decoded.ok()) {
    if (decoded.status().code() != absl::StatusCode::kInvalidArgument) {
      Fail("a malformed request list is not InvalidArgument");
    }
    return;
  }
  const std::string encoded = EncodeRequestList(*decoded);
  StatusOr<RequestList> again = DecodeRequestList(encoded, limits);
  if (!again.ok()) Fail("a decoded request list does not re-encode validly");
  if (EncodeRequestList(*again) != encoded) {
    Fail("a request list changed in an encode/decode round trip");
  }
}

void FuzzResponseList(absl::string_view bytes, const WireLimits& limits) {
  StatusOr<ResponseList> decoded = DecodeResponseList(bytes, limits);
  if (!decoded.ok()) {
    if (decoded.status().code() != absl::StatusCode::kInvalidArgument) {
      Fail("a malformed response list is not InvalidArgument");
    }
    return;
  }
  const std::string encoded = EncodeResponseList(*decoded);
  StatusOr<ResponseList> again = DecodeResponseList(encoded, limits);
  if (!again.ok()) Fail("a decoded response list does not re-encode validly");
  if (EncodeResponseList(*again) != encoded) {
    Fail("a response list changed in an encode/decode round trip");
  }
}

}  // namespace
}  // namespace kolo

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t header = data[0];
  kolo::WireLimits limits;
  limits.world_size = 1 + ((header >> 1) & 7);
  limits.cache_capacity = (header >> 4) * 16;
  const absl::string_view bytes(reinterpret_cast<const char*>(data + 1),
                                size - 1);
  if (header & 1) {
    kolo::FuzzResponseList(bytes, limits);
  } else {
    kolo::FuzzRequestList(bytes, limits);
  }
  return 0;
}
