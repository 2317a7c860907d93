// Fuzzes the PNG loader (examples/chexnet/data/png_io.h): any bytes must
// give either an InvalidArgument error or a 3-channel image in [0, 1],
// never a crash.
//
// Input: the bytes of a .png file. Images whose header declares more than
// kMaxFuzzPixels pixels are skipped: DecodePng accepts up to 16384 pixels a
// side (gigabytes once decoded), which would only measure the allocator.
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/string_view.h"
#include "examples/chexnet/data/png_io.h"

namespace {

constexpr uint64_t kMaxFuzzPixels = uint64_t{1} << 21;

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "chexnet_png_fuzzer: %s\n", what);
  std::abort();
}

uint32_t BigEndian32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) |
         (uint32_t{p[2]} << 8) | p[3];
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Signature (8 bytes), IHDR length and type (8), width (4), height (4).
  if (size >= 24 &&
      uint64_t{BigEndian32(data + 16)} * BigEndian32(data + 20) >
          kMaxFuzzPixels) {
    return 0;
  }
  absl::StatusOr<kolo::chexnet::Image> image = kolo::chexnet::DecodePng(
      absl::string_view(reinterpret_cast<const char*>(data), size),
      "fuzz.png");
  if (!image.ok()) {
    if (image.status().code() != absl::StatusCode::kInvalidArgument) {
      Fail("a bad PNG is not InvalidArgument");
    }
    return 0;
  }
  if (image->channels != 3 || image->height < 1 || image->width < 1 ||
      image->pixels.size() !=
          size_t{3} * image->height * static_cast<size_t>(image->width)) {
    Fail("decoded image has the wrong shape");
  }
  for (float value : image->pixels) {
    if (!(value >= 0.0f && value <= 1.0f)) Fail("a sample is outside [0, 1]");
  }
  return 0;
}
