// BBox_List_2017.csv reading and writing.
#include "examples/chexnet/data/bbox_list.h"

#include <cmath>
#include <unordered_set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "examples/chexnet/data/csv.h"
#include "examples/chexnet/data/file_util.h"
#include "examples/chexnet/data/labels.h"

namespace kolo::chexnet {
namespace {

constexpr int kInfiltration = 3;
constexpr absl::string_view kHeader =
    "Image Index,Finding Label,Bbox [x,y,w,h],,,";

std::optional<int> ParseBBoxFinding(absl::string_view name) {
  if (name == "Infiltrate") return kInfiltration;
  return LabelIndex(name);
}

}  // namespace

std::string BBoxFindingName(int finding) {
  if (finding == kInfiltration) return "Infiltrate";
  return std::string(kLabelNames[finding]);
}

absl::StatusOr<std::vector<FindingBox>> ParseBBoxListCsv(
    absl::string_view contents, absl::string_view file_name) {
  absl::ConsumePrefix(&contents, "\xEF\xBB\xBF");
  std::vector<FindingBox> boxes;
  bool header_seen = false;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(contents, '\n')) {
    ++line_number;
    absl::ConsumeSuffix(&line, "\r");
    if (line.empty()) continue;
    auto error = [&](absl::string_view what) {
      return absl::InvalidArgumentError(
          absl::StrCat(file_name, ":", line_number, ": ", what));
    };
    absl::StatusOr<std::vector<std::string>> fields = SplitCsvLine(line);
    if (!fields.ok()) return error(fields.status().message());
    if (!header_seen) {
      if (fields->size() < 2 || (*fields)[0] != "Image Index" ||
          (*fields)[1] != "Finding Label") {
        return error(absl::StrCat("expected the header \"", kHeader,
                                  "\", got \"", line, "\""));
      }
      header_seen = true;
      continue;
    }
    if (fields->size() < 6) {
      return error(absl::StrCat("expected image, finding, x, y, w, h; got ",
                                fields->size(), " field",
                                fields->size() == 1 ? "" : "s"));
    }
    for (size_t i = 6; i < fields->size(); ++i) {
      if (!absl::StripAsciiWhitespace((*fields)[i]).empty()) {
        return error(absl::StrCat("unexpected text \"", (*fields)[i],
                                  "\" in field ", i + 1,
                                  " (a box has six fields)"));
      }
    }
    FindingBox box;
    box.line = line_number;
    box.image_index = std::string(absl::StripAsciiWhitespace((*fields)[0]));
    if (box.image_index.empty()) return error("empty image name");
    const absl::string_view finding_name =
        absl::StripAsciiWhitespace((*fields)[1]);
    const std::optional<int> finding = ParseBBoxFinding(finding_name);
    if (!finding.has_value()) {
      return error(absl::StrCat("unknown finding \"", finding_name, "\""));
    }
    box.finding = *finding;
    double* coordinates[] = {&box.box.x, &box.box.y, &box.box.width,
                             &box.box.height};
    static constexpr const char* kNames[] = {"x", "y", "w", "h"};
    for (int i = 0; i < 4; ++i) {
      const absl::string_view text =
          absl::StripAsciiWhitespace((*fields)[2 + i]);
      if (!absl::SimpleAtod(text, coordinates[i]) ||
          !std::isfinite(*coordinates[i])) {
        return error(
            absl::StrCat(kNames[i], " \"", text, "\" is not a number"));
      }
    }
    if (box.box.width <= 0 || box.box.height <= 0) {
      return error(absl::StrCat("box ", box.box.width, " x ", box.box.height,
                                " has no area"));
    }
    boxes.push_back(std::move(box));
  }
  if (!header_seen) {
    return absl::InvalidArgumentError(absl::StrCat(
        file_name, ": empty file (expected the header \"", kHeader, "\")"));
  }
  return boxes;
}

absl::StatusOr<std::vector<FindingBox>> ReadBBoxListCsv(
    const std::string& path) {
  absl::StatusOr<std::string> contents = ReadFileToString(path);
  if (!contents.ok()) return contents.status();
  return ParseBBoxListCsv(*contents, path);
}

std::string FormatBBoxListCsv(const std::vector<FindingBox>& boxes) {
  std::string out = absl::StrCat(kHeader, "\n");
  for (const FindingBox& b : boxes) {
    absl::StrAppend(
        &out, absl::StrFormat("%s,%s,%.10g,%.10g,%.10g,%.10g\n", b.image_index,
                              BBoxFindingName(b.finding), b.box.x, b.box.y,
                              b.box.width, b.box.height));
  }
  return out;
}

absl::Status CheckBoxImagesKnown(const std::vector<FindingBox>& boxes,
                                 const std::vector<DataEntry>& entries,
                                 absl::string_view file_name) {
  std::unordered_set<std::string> known;
  for (const DataEntry& entry : entries) known.insert(entry.image_index);
  for (const FindingBox& box : boxes) {
    if (known.count(box.image_index) == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(file_name, ":", box.line, ": image \"", box.image_index,
                       "\" is not in the data set's metadata"));
    }
  }
  return absl::OkStatus();
}

}  // namespace kolo::chexnet
