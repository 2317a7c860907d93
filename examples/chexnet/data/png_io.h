// PNG decoding and encoding through libspng.
//
// Decoding accepts every PNG colour type and bit depth (grayscale 1-16 bit,
// RGB, palette, gray+alpha, RGBA, 8 or 16 bit) and always yields a 3-channel
// float Image in [0, 1]: gray is replicated, palettes are expanded, alpha is
// dropped (as PIL's convert("RGB") does; the few RGBA images in ChestX-ray14
// are opaque), 16-bit samples keep their precision. No gamma correction.
// Functions are thread-safe.
#ifndef KOLO_EXAMPLES_CHEXNET_DATA_PNG_IO_H_
#define KOLO_EXAMPLES_CHEXNET_DATA_PNG_IO_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "examples/chexnet/data/image.h"

namespace kolo::chexnet {

// Decodes PNG bytes. Errors (InvalidArgument) name `file_name` and libspng's
// reason: not a PNG, truncated, bad checksum, larger than 16384 pixels a side
// or 64 megapixels in all.
absl::StatusOr<Image> DecodePng(absl::string_view bytes,
                                absl::string_view file_name);

// Reads and decodes the file at `path`; a missing file is NotFound.
absl::StatusOr<Image> ReadPng(const std::string& path);

// Encodes 8-bit pixels, interleaved row by row, as a grayscale (channels 1)
// or RGB (channels 3) PNG. Output is a deterministic function of the input.
// REQUIRES: width > 0, height > 0, pixels holds width * height * channels.
absl::StatusOr<std::string> EncodePng8(const uint8_t* pixels, int width,
                                       int height, int channels);

// EncodePng8, then WriteStringToFile.
absl::Status WritePng8(const std::string& path, const uint8_t* pixels,
                       int width, int height, int channels);

}  // namespace kolo::chexnet

#endif  // KOLO_EXAMPLES_CHEXNET_DATA_PNG_IO_H_
