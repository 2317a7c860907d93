// DICOM input through DCMTK (see dicom_io.h): dcmdata parses the file and
// decodes compressed pixel data with the JPEG, JPEG-LS and RLE codecs,
// dcmimgle applies the modality and VOI transformations and the MONOCHROME1
// inversion.
#include <cstdint>
#include <memory>
#include <mutex>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "dcmtk/config/osconfig.h"  // Must come before any other DCMTK header.
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcistrmb.h"
#include "dcmtk/dcmdata/dcrledrg.h"
#include "dcmtk/dcmdata/dcxfer.h"
#include "dcmtk/dcmimgle/dcmimage.h"
#include "dcmtk/dcmjpeg/djdecode.h"
#include "dcmtk/dcmjpls/djdecode.h"
#include "dcmtk/oflog/oflog.h"
#include "examples/chexnet/data/dicom_io.h"

namespace kolo::chexnet {
namespace {

// The largest side and pixel count accepted, as for PNG (png_io.cc): a few
// bytes of header must not make the decoder allocate gigabytes.
constexpr long kMaxSide = 16384;
constexpr long kMaxPixels = 1L << 26;

// The codecs are process-wide registrations; DCMTK's own warnings would
// otherwise go to stderr for every quirk of every file, while every failure
// that matters reaches the caller as a Status.
void InitializeDcmtkOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    OFLog::configure(OFLogger::FATAL_LOG_LEVEL);
    DJDecoderRegistration::registerCodecs();
    DJLSDecoderRegistration::registerCodecs();
    DcmRLEDecoderRegistration::registerCodecs();
  });
}

absl::Status Invalid(absl::string_view file_name, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(file_name, ": ", what));
}

std::string TransferSyntaxName(E_TransferSyntax xfer) {
  const DcmXfer info(xfer);
  return absl::StrCat(info.getXferName(), " (", info.getXferID(), ")");
}

}  // namespace

bool DicomSupported() { return true; }

bool HasDicomMagic(absl::string_view bytes) {
  return bytes.size() >= 132 && bytes.substr(128, 4) == "DICM";
}

absl::StatusOr<Image> DecodeDicom(absl::string_view bytes,
                                  absl::string_view file_name) {
  InitializeDcmtkOnce();
  DcmInputBufferStream stream;
  stream.setBuffer(bytes.data(), static_cast<offile_off_t>(bytes.size()));
  stream.setEos();
  DcmFileFormat file;
  file.transferInit();
  const OFCondition read =
      file.read(stream, EXS_Unknown, EGL_noChange, DCM_MaxReadLength);
  file.transferEnd();
  if (read.bad()) {
    return Invalid(file_name,
                   absl::StrCat("not a readable DICOM file: ", read.text()));
  }
  DcmDataset* dataset = file.getDataset();
  if (!dataset->tagExistsWithValue(DCM_PixelData)) {
    return Invalid(file_name, "DICOM file without pixel data (7FE0,0010)");
  }
  Sint32 frames = 1;
  if (dataset->findAndGetSint32(DCM_NumberOfFrames, frames).good() &&
      frames > 1) {
    return absl::UnimplementedError(absl::StrCat(
        file_name, ": multi-frame DICOM (", frames,
        " frames) is not read: a chest X-ray is one frame; split the object "
        "into one file per frame"));
  }
  OFString photometric;
  dataset->findAndGetOFString(DCM_PhotometricInterpretation, photometric);
  if (photometric != "MONOCHROME1" && photometric != "MONOCHROME2") {
    return absl::UnimplementedError(absl::StrCat(
        file_name, ": photometric interpretation \"", photometric.c_str(),
        "\" is not read: only grayscale (MONOCHROME1, MONOCHROME2) images"));
  }
  Uint16 rows = 0, columns = 0;
  dataset->findAndGetUint16(DCM_Rows, rows);
  dataset->findAndGetUint16(DCM_Columns, columns);
  if (rows == 0 || columns == 0 || rows > kMaxSide || columns > kMaxSide ||
      static_cast<long>(rows) * columns > kMaxPixels) {
    return Invalid(file_name,
                   absl::StrCat(columns, "x", rows,
                                " pixels is not a size a chest X-ray image "
                                "may have (a corrupt header?)"));
  }
  // Decompress first, so that a transfer syntax the codecs cannot handle is
  // named in the error instead of surfacing as a generic image status.
  const E_TransferSyntax xfer = dataset->getOriginalXfer();
  if (DcmXfer(xfer).isEncapsulated() &&
      (dataset->chooseRepresentation(EXS_LittleEndianExplicit, nullptr).bad() ||
       !dataset->canWriteXfer(EXS_LittleEndianExplicit))) {
    return absl::UnimplementedError(absl::StrCat(
        file_name, ": pixel data compressed as ", TransferSyntaxName(xfer),
        ", which DCMTK's decoders in this build cannot decode (readable: "
        "uncompressed, JPEG baseline/extended/lossless, JPEG-LS, RLE)"));
  }
  DicomImage image(&file, dataset->getCurrentXfer(), CIF_MayDetachPixelData);
  if (image.getStatus() != EIS_Normal) {
    return Invalid(file_name,
                   absl::StrCat("cannot decode DICOM pixel data: ",
                                DicomImage::getString(image.getStatus())));
  }
  // pydicom's apply_voi_lut prefers the VOI LUT Sequence over a window too.
  const bool voi =
      image.getVoiLutCount() > 0
          ? image.setVoiLut(0) != 0
          : (image.getWindowCount() > 0 ? image.setWindow(0) != 0
                                        : image.setMinMaxWindow(0) != 0);
  if (!voi) {
    return Invalid(file_name, "cannot apply the VOI transformation");
  }
  const int width = static_cast<int>(image.getWidth());
  const int height = static_cast<int>(image.getHeight());
  const auto* samples =
      static_cast<const Uint16*>(image.getOutputData(/*bits=*/16));
  if (samples == nullptr) {
    return Invalid(file_name,
                   absl::StrCat("cannot render DICOM pixel data: ",
                                DicomImage::getString(image.getStatus())));
  }
  Image out(3, height, width);
  const size_t plane = static_cast<size_t>(width) * height;
  for (size_t i = 0; i < plane; ++i) {
    const float value = samples[i] / 65535.0f;
    out.pixels[i] = value;
    out.pixels[plane + i] = value;
    out.pixels[2 * plane + i] = value;
  }
  return out;
}

}  // namespace kolo::chexnet
