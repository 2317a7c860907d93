// The per-image metadata of NIH ChestX-ray14: Data_Entry_2017.csv and its
// corrected re-release Data_Entry_2017_v2020.csv.
//
// Both files start with the same columns:
//   Image Index, Finding Labels, Follow-up #, Patient ID, Patient Age,
//   Patient Gender, View Position, OriginalImage[Width, Height],
//   OriginalImagePixelSpacing[x, y]
// (the bracketed names contain an unquoted comma, so each spans two header
// fields). The 2017 file ends its header and its rows with a comma, i.e. an
// empty twelfth column; the 2020 file does not. Columns are found by name, so
// either variant, a "Patient Sex" spelling, extra columns and quoted fields
// are accepted.
#ifndef KOLO_EXAMPLES_CHEXNET_DATA_DATA_ENTRY_H_
#define KOLO_EXAMPLES_CHEXNET_DATA_DATA_ENTRY_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "examples/chexnet/data/labels.h"

namespace kolo::chexnet {

inline constexpr char kDataEntry2017[] = "Data_Entry_2017.csv";
inline constexpr char kDataEntry2020[] = "Data_Entry_2017_v2020.csv";

// One row of the metadata file.
struct DataEntry {
  std::string image_index;     // File name in images/, e.g. "00000001_000.png".
  LabelVector labels{};        // Multi-hot, kLabelNames order; all zero for
                               // "No Finding".
  int follow_up = 0;           // "Follow-up #"; 0 when the column is absent.
  int64_t patient_id = 0;      // "Patient ID".
  int patient_age = -1;        // Years; -1 when the column is absent.
  std::string patient_gender;  // "M" or "F" as in the file; may be empty.
  std::string view_position;   // "PA" or "AP" as in the file; may be empty.
};

// Parses a "Finding Labels" value: names from kLabelNames joined by '|'
// (spaces around names are ignored), or exactly "No Finding". Returns
// InvalidArgument naming an unknown or empty label, or "No Finding" combined
// with a finding.
absl::StatusOr<LabelVector> ParseFindingLabels(absl::string_view value);

// Inverse of ParseFindingLabels: "No Finding" or the present names joined by
// '|' in kLabelNames order.
std::string FormatFindingLabels(const LabelVector& labels);

// OK when `name` is a plain file name, as an "Image Index" must be: it names
// a file inside the images folder, never a path. Otherwise InvalidArgument
// saying why: empty, "." or "..", an absolute path, a path separator ('/' or
// '\\'), or a control character (NUL included).
absl::Status CheckImageFileName(absl::string_view name);

// Parses the contents of a metadata file. `file_name` only labels errors,
// which read "<file_name>:<line>: <what>" (lines are 1-based; the header is
// line 1). Blank lines are skipped; a UTF-8 byte order mark and CRLF line
// ends are accepted. Errors (InvalidArgument): a header without "Image
// Index", "Finding Labels" or "Patient ID"; a row with fewer fields than the
// header's named columns or with text in a column the header leaves unnamed;
// an unknown label; a non-numeric patient ID, follow-up number or age; an
// empty or duplicated image index, or one that is not a plain file name
// (CheckImageFileName).
absl::StatusOr<std::vector<DataEntry>> ParseDataEntryCsv(
    absl::string_view contents, absl::string_view file_name);

// Reads and parses the file at `path` (errors name `path`).
absl::StatusOr<std::vector<DataEntry>> ReadDataEntryCsv(
    const std::string& path);

}  // namespace kolo::chexnet

#endif  // KOLO_EXAMPLES_CHEXNET_DATA_DATA_ENTRY_H_
