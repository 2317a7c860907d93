// Format dispatch between the PNG and DICOM readers.
#include "examples/chexnet/data/image_file.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "examples/chexnet/data/dicom_io.h"
#include "examples/chexnet/data/file_util.h"
#include "examples/chexnet/data/png_io.h"

namespace kolo::chexnet {
namespace {

constexpr absl::string_view kPngSignature = "\x89PNG\r\n\x1a\n";

bool HasDicomExtension(absl::string_view path) {
  const std::string lower = absl::AsciiStrToLower(path);
  return absl::EndsWith(lower, ".dcm") || absl::EndsWith(lower, ".dicom");
}

}  // namespace

absl::StatusOr<Image> DecodeImage(absl::string_view bytes,
                                  absl::string_view file_name) {
  if (!absl::StartsWith(bytes, kPngSignature) &&
      (HasDicomMagic(bytes) || HasDicomExtension(file_name))) {
    return DecodeDicom(bytes, file_name);
  }
  return DecodePng(bytes, file_name);
}

absl::StatusOr<Image> ReadImage(const std::string& path) {
  absl::StatusOr<std::string> bytes = ReadFileToString(path);
  if (!bytes.ok()) return bytes.status();
  return DecodeImage(*bytes, path);
}

bool HasImageExtension(absl::string_view path) {
  return HasDicomExtension(path) ||
         absl::EndsWith(absl::AsciiStrToLower(path), ".png");
}

}  // namespace kolo::chexnet
