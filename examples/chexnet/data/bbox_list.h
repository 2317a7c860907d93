// Radiologist bounding boxes in the layout of ChestX-ray14's
// BBox_List_2017.csv (about 1,000 boxes on 880 images, 8 findings).
//
// The NIH file's quirks, all accepted:
//   - the header is "Image Index,Finding Label,Bbox [x,y,w,h],,," : the
//     bracketed name holds unquoted commas, so it spans four fields, and
//     three empty columns follow;
//   - rows give x, y, w, h (pixels of the 1024 x 1024 PNG, origin at the top
//     left, x to the right) as decimals, with or without trailing empty
//     fields;
//   - Infiltration is spelled "Infiltrate".
// Columns are taken by position, since the header does not name them.
#ifndef KOLO_EXAMPLES_CHEXNET_DATA_BBOX_LIST_H_
#define KOLO_EXAMPLES_CHEXNET_DATA_BBOX_LIST_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "examples/chexnet/data/data_entry.h"

namespace kolo::chexnet {

inline constexpr char kBBoxList[] = "BBox_List_2017.csv";

// The findings NIH drew boxes for: Atelectasis, Cardiomegaly, Effusion,
// Infiltration, Mass, Nodule, Pneumonia, Pneumothorax (kLabelNames 0..7).
inline constexpr int kNumBoxedFindings = 8;

// An axis-aligned box in pixels of the image file.
struct BoundingBox {
  double x = 0;  // Left edge.
  double y = 0;  // Top edge.
  double width = 0;
  double height = 0;

  double area() const { return width * height; }
};

struct FindingBox {
  std::string image_index;  // File name in images/.
  int finding = 0;          // kLabelNames index.
  BoundingBox box;
  int line = 0;  // Line of the file it came from (1-based); 0 if made here.
};

// The finding's name in BBox_List_2017.csv ("Infiltrate" for Infiltration).
std::string BBoxFindingName(int finding);

// Parses the file's contents. `file_name` labels errors, which read
// "<file_name>:<line>: <what>": a header that does not start with
// "Image Index,Finding Label"; a row with fewer than six fields or text after
// the sixth; an unknown finding (both "Infiltrate" and "Infiltration" are
// known, as is every kLabelNames name); a coordinate that is not a finite
// number; a width or height that is not positive; an empty image name.
// A UTF-8 byte order mark, CRLF line ends and blank lines are accepted.
absl::StatusOr<std::vector<FindingBox>> ParseBBoxListCsv(
    absl::string_view contents, absl::string_view file_name);

// Reads and parses the file at `path` (errors name `path`).
absl::StatusOr<std::vector<FindingBox>> ReadBBoxListCsv(
    const std::string& path);

// The file NIH would write: its header, one row per box with "%.10g"
// coordinates, NIH's spelling of the findings.
std::string FormatBBoxListCsv(const std::vector<FindingBox>& boxes);

// InvalidArgument naming the file, the line and the image when a box names
// an image that is not among `entries` (the data set's metadata).
absl::Status CheckBoxImagesKnown(const std::vector<FindingBox>& boxes,
                                 const std::vector<DataEntry>& entries,
                                 absl::string_view file_name);

}  // namespace kolo::chexnet

#endif  // KOLO_EXAMPLES_CHEXNET_DATA_BBOX_LIST_H_
