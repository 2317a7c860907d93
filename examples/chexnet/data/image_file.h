// Reading an X-ray image file of any accepted format: PNG (png_io.h) or DICOM
// (dicom_io.h), told apart by their content, not their name.
#ifndef KOLO_EXAMPLES_CHEXNET_DATA_IMAGE_FILE_H_
#define KOLO_EXAMPLES_CHEXNET_DATA_IMAGE_FILE_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "examples/chexnet/data/image.h"

namespace kolo::chexnet {

// Decodes PNG bytes, or DICOM bytes (a Part 10 file with its "DICM" marker,
// or any file named *.dcm / *.dicom). Errors name `file_name`.
absl::StatusOr<Image> DecodeImage(absl::string_view bytes,
                                  absl::string_view file_name);

// Reads and decodes the file at `path`; a missing file is NotFound.
absl::StatusOr<Image> ReadImage(const std::string& path);

// Whether `path` names a file this reader is meant for (*.png, *.dcm,
// *.dicom, any case): used to pick images out of a folder.
bool HasImageExtension(absl::string_view path);

}  // namespace kolo::chexnet

#endif  // KOLO_EXAMPLES_CHEXNET_DATA_IMAGE_FILE_H_
