// DICOM input in a build without DCMTK: every DICOM file is refused with a
// message that says why (see dicom_io.h).
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "examples/chexnet/data/dicom_io.h"

namespace kolo::chexnet {

bool DicomSupported() { return false; }

bool HasDicomMagic(absl::string_view bytes) {
  return bytes.size() >= 132 && bytes.substr(128, 4) == "DICM";
}

absl::StatusOr<Image> DecodeDicom(absl::string_view /*bytes*/,
                                  absl::string_view file_name) {
  return absl::UnimplementedError(absl::StrCat(
      file_name,
      ": this build has no DICOM support (DCMTK was not found when kolo was "
      "configured; install libdcmtk-dev and configure again)"));
}

}  // namespace kolo::chexnet
