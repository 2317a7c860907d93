// Whole-file reads and writes whose errors name the file and the reason.
#ifndef KOLO_EXAMPLES_CHEXNET_DATA_FILE_UTIL_H_
#define KOLO_EXAMPLES_CHEXNET_DATA_FILE_UTIL_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kolo::chexnet {

// NotFound when the file does not exist, otherwise Internal on I/O errors.
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

// Writes `contents` to `path` through a temporary file in the same directory
// and a rename, so readers never see a partial file.
absl::Status WriteStringToFile(const std::string& path,
                               absl::string_view contents);

}  // namespace kolo::chexnet

#endif  // KOLO_EXAMPLES_CHEXNET_DATA_FILE_UTIL_H_
