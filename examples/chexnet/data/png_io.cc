// PNG I/O with libspng.
#include "examples/chexnet/data/png_io.h"

#include <spng.h>

#include <cstdlib>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "examples/chexnet/data/file_util.h"

namespace kolo::chexnet {
namespace {

// The largest real ChestX-ray14 image is 1024x1024 (other chest X-ray sets
// reach about 4000x5000); the limits only stop a corrupt or hostile header,
// a few bytes long, from making the decoder allocate gigabytes.
constexpr uint32_t kMaxSide = 16384;
constexpr uint64_t kMaxPixels = uint64_t{1} << 26;  // 64 megapixels

struct SpngContextDeleter {
  void operator()(spng_ctx* ctx) const { spng_ctx_free(ctx); }
};
using SpngContext = std::unique_ptr<spng_ctx, SpngContextDeleter>;

absl::Status SpngError(absl::string_view file_name, absl::string_view what,
                       int err) {
  return absl::InvalidArgumentError(absl::StrCat(
      file_name, ": ", what, ": ", spng_strerror(err), " (libspng ", err, ")"));
}

}  // namespace

absl::StatusOr<Image> DecodePng(absl::string_view bytes,
                                absl::string_view file_name) {
  SpngContext ctx(spng_ctx_new(0));
  if (ctx == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat(file_name, ": cannot create a PNG decoder"));
  }
  spng_set_image_limits(ctx.get(), kMaxSide, kMaxSide);
  if (int err = spng_set_png_buffer(ctx.get(), bytes.data(), bytes.size())) {
    return SpngError(file_name, "not a readable PNG", err);
  }
  spng_ihdr ihdr;
  if (int err = spng_get_ihdr(ctx.get(), &ihdr)) {
    return SpngError(file_name, "not a readable PNG", err);
  }
  if (static_cast<uint64_t>(ihdr.width) * ihdr.height > kMaxPixels) {
    return absl::InvalidArgumentError(absl::StrCat(
        file_name, ": ", ihdr.width, "x", ihdr.height,
        " pixels is more than the ", kMaxPixels, " pixels a chest X-ray ",
        "image may have (a corrupt header?)"));
  }
  const bool wide = ihdr.bit_depth == 16;
  const int format = wide ? SPNG_FMT_RGBA16 : SPNG_FMT_RGB8;
  size_t size;
  if (int err = spng_decoded_image_size(ctx.get(), format, &size)) {
    return SpngError(file_name, "cannot decode PNG", err);
  }
  std::vector<uint8_t> buffer(size);
  if (int err = spng_decode_image(ctx.get(), buffer.data(), size, format, 0)) {
    return SpngError(file_name, "cannot decode PNG", err);
  }

  const int width = static_cast<int>(ihdr.width);
  const int height = static_cast<int>(ihdr.height);
  Image image(3, height, width);
  const size_t plane = static_cast<size_t>(width) * height;
  if (wide) {
    // RGBA16 in host byte order; alpha is ignored.
    const uint16_t* samples = reinterpret_cast<const uint16_t*>(buffer.data());
    for (size_t i = 0; i < plane; ++i) {
      for (int c = 0; c < 3; ++c) {
        image.pixels[c * plane + i] = samples[4 * i + c] / 65535.0f;
      }
    }
  } else {
    for (size_t i = 0; i < plane; ++i) {
      for (int c = 0; c < 3; ++c) {
        image.pixels[c * plane + i] = buffer[3 * i + c] / 255.0f;
      }
    }
  }
  return image;
}

absl::StatusOr<Image> ReadPng(const std::string& path) {
  absl::StatusOr<std::string> bytes = ReadFileToString(path);
  if (!bytes.ok()) return bytes.status();
  return DecodePng(*bytes, path);
}

absl::StatusOr<std::string> EncodePng8(const uint8_t* pixels, int width,
                                       int height, int channels) {
  if (width <= 0 || height <= 0 || (channels != 1 && channels != 3)) {
    return absl::InvalidArgumentError(
        absl::StrCat("EncodePng8: bad shape ", width, "x", height, "x",
                     channels, " (need positive sizes and 1 or 3 channels)"));
  }
  SpngContext ctx(spng_ctx_new(SPNG_CTX_ENCODER));
  if (ctx == nullptr) {
    return absl::ResourceExhaustedError("cannot create a PNG encoder");
  }
  spng_set_option(ctx.get(), SPNG_ENCODE_TO_BUFFER, 1);
  spng_ihdr ihdr = {};
  ihdr.width = static_cast<uint32_t>(width);
  ihdr.height = static_cast<uint32_t>(height);
  ihdr.bit_depth = 8;
  ihdr.color_type =
      channels == 1 ? SPNG_COLOR_TYPE_GRAYSCALE : SPNG_COLOR_TYPE_TRUECOLOR;
  if (int err = spng_set_ihdr(ctx.get(), &ihdr)) {
    return SpngError("EncodePng8", "bad header", err);
  }
  const size_t size = static_cast<size_t>(width) * height * channels;
  if (int err = spng_encode_image(ctx.get(), pixels, size, SPNG_FMT_PNG,
                                  SPNG_ENCODE_FINALIZE)) {
    return SpngError("EncodePng8", "cannot encode", err);
  }
  size_t length = 0;
  int err = 0;
  void* png = spng_get_png_buffer(ctx.get(), &length, &err);
  if (png == nullptr) return SpngError("EncodePng8", "no output", err);
  std::string encoded(static_cast<const char*>(png), length);
  std::free(png);
  return encoded;
}

absl::Status WritePng8(const std::string& path, const uint8_t* pixels,
                       int width, int height, int channels) {
  absl::StatusOr<std::string> encoded =
      EncodePng8(pixels, width, height, channels);
  if (!encoded.ok()) {
    return absl::Status(encoded.status().code(),
                        absl::StrCat(path, ": ", encoded.status().message()));
  }
  return WriteStringToFile(path, *encoded);
}

}  // namespace kolo::chexnet
