// NumPy .npy files (format version 1.0) of float32 matrices, for raw heat
// maps that numpy.load() reads as they are.
#ifndef KOLO_EXAMPLES_CHEXNET_METRICS_NPY_H_
#define KOLO_EXAMPLES_CHEXNET_METRICS_NPY_H_

#include <string>

#include "absl/status/status.h"

namespace kolo::chexnet {

// The bytes of an .npy file holding `values` (rows * cols, row-major) as a
// little-endian float32 array of shape (rows, cols).
// REQUIRES: rows >= 0, cols >= 0.
std::string EncodeNpyFloat32(const float* values, int rows, int cols);

// EncodeNpyFloat32, written atomically to `path`.
absl::Status WriteNpyFloat32(const std::string& path, const float* values,
                             int rows, int cols);

}  // namespace kolo::chexnet

#endif  // KOLO_EXAMPLES_CHEXNET_METRICS_NPY_H_
