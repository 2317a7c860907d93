// The .npy format: magic, version, a little-endian header length, a Python
// dict literal padded with spaces to a multiple of 64 bytes and ending in a
// newline, then the raw data.
#include "examples/chexnet/metrics/npy.h"

#include <cstdint>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "examples/chexnet/data/file_util.h"

namespace kolo::chexnet {

std::string EncodeNpyFloat32(const float* values, int rows, int cols) {
  static_assert(sizeof(float) == 4, "float32 data");
  std::string header =
      absl::StrCat("{'descr': '<f4', 'fortran_order': False, 'shape': (", rows,
                   ", ", cols, "), }");
  constexpr size_t kPreamble = 10;  // magic (6), version (2), length (2)
  const size_t total = kPreamble + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header.push_back('\n');
  std::string out("\x93NUMPY\x01\x00", 8);
  const uint16_t length = static_cast<uint16_t>(header.size());
  out.push_back(static_cast<char>(length & 0xff));
  out.push_back(static_cast<char>(length >> 8));
  out += header;
  const size_t count = static_cast<size_t>(rows) * cols;
  // Little-endian hosts only (x86-64, AArch64), as the rest of kolo.
  out.append(reinterpret_cast<const char*>(values), count * sizeof(float));
  return out;
}

absl::Status WriteNpyFloat32(const std::string& path, const float* values,
                             int rows, int cols) {
  return WriteStringToFile(path, EncodeNpyFloat32(values, rows, cols));
}

}  // namespace kolo::chexnet
