// DICOM input for chest X-rays: one grayscale frame, rendered to the float
// Image every other reader yields (three equal channels in [0, 1]).
//
// The pixels go through the DICOM grayscale pipeline as PS3.3 C.11 defines
// it, in this order:
//   1. stored values (8 to 16 bits, signed or unsigned; compressed transfer
//      syntaxes that the library decodes: JPEG baseline/extended/lossless,
//      JPEG-LS and RLE);
//   2. the modality transformation (Rescale Slope and Intercept, or a
//      Modality LUT);
//   3. the VOI transformation: the first VOI LUT of the VOI LUT Sequence when
//      present, else the first Window Center/Width pair (with its VOI LUT
//      Function, LINEAR or SIGMOID), else a window spanning the image's own
//      minimum and maximum;
//   4. MONOCHROME1 images are inverted, so that 1 is always the brightest
//      (densest) pixel, as in a MONOCHROME2 image or a PNG export.
// The result is quantised to 16 bits (steps of 1/65535) before scaling to
// [0, 1]. Multi-frame objects and colour images are refused.
//
// DICOM support is compiled in when DCMTK is found at configure time
// (dicom_dcmtk.cc); otherwise dicom_unavailable.cc makes DecodeDicom fail
// with a message that says so. Functions are thread-safe.
#ifndef KOLO_EXAMPLES_CHEXNET_DATA_DICOM_IO_H_
#define KOLO_EXAMPLES_CHEXNET_DATA_DICOM_IO_H_

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "examples/chexnet/data/image.h"

namespace kolo::chexnet {

// Whether this build reads DICOM files.
bool DicomSupported();

// Whether `bytes` is a DICOM Part 10 file: "DICM" after the 128-byte preamble.
bool HasDicomMagic(absl::string_view bytes);

// Decodes a DICOM file's bytes. Errors (InvalidArgument, or Unimplemented
// for what is valid DICOM but not read here: several frames, colour, a
// transfer syntax the library cannot decode, a build without DICOM support)
// name `file_name` and the reason.
absl::StatusOr<Image> DecodeDicom(absl::string_view bytes,
                                  absl::string_view file_name);

}  // namespace kolo::chexnet

#endif  // KOLO_EXAMPLES_CHEXNET_DATA_DICOM_IO_H_
