// Data_Entry_2017(.csv|_v2020.csv) parsing.
#include "examples/chexnet/data/data_entry.h"

#include <optional>
#include <unordered_map>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "examples/chexnet/data/csv.h"
#include "examples/chexnet/data/file_util.h"

namespace kolo::chexnet {
namespace {

// Column positions found in the header; nullopt for absent optional columns.
struct Columns {
  int image_index = -1;
  int finding_labels = -1;
  int patient_id = -1;
  std::optional<int> follow_up;
  std::optional<int> patient_age;
  std::optional<int> patient_gender;
  std::optional<int> view_position;
  int named = 0;  // Fields up to the last non-empty header name.
};

absl::StatusOr<Columns> FindColumns(const std::vector<std::string>& header) {
  Columns columns;
  for (int i = 0; i < static_cast<int>(header.size()); ++i) {
    const absl::string_view name = absl::StripAsciiWhitespace(header[i]);
    if (!name.empty()) columns.named = i + 1;
    if (name == "Image Index") columns.image_index = i;
    if (name == "Finding Labels") columns.finding_labels = i;
    if (name == "Patient ID") columns.patient_id = i;
    if (name == "Follow-up #") columns.follow_up = i;
    if (name == "Patient Age") columns.patient_age = i;
    if (name == "Patient Gender" || name == "Patient Sex") {
      columns.patient_gender = i;
    }
    if (name == "View Position") columns.view_position = i;
  }
  std::vector<std::string> missing;
  if (columns.image_index < 0) missing.push_back("\"Image Index\"");
  if (columns.finding_labels < 0) missing.push_back("\"Finding Labels\"");
  if (columns.patient_id < 0) missing.push_back("\"Patient ID\"");
  if (!missing.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("header lacks column ", absl::StrJoin(missing, ", "),
                     "; is this a Data_Entry_2017 file?"));
  }
  return columns;
}

// Accepts "58" and the "058Y" spelling of some copies of the 2017 file.
std::optional<int> ParseAge(absl::string_view value) {
  value = absl::StripAsciiWhitespace(value);
  if (!value.empty() && (value.back() == 'Y' || value.back() == 'y')) {
    value.remove_suffix(1);
  }
  int age;
  if (!absl::SimpleAtoi(value, &age) || age < 0) return std::nullopt;
  return age;
}

absl::StatusOr<DataEntry> ParseRow(const std::vector<std::string>& fields,
                                   const Columns& columns) {
  if (static_cast<int>(fields.size()) < columns.named) {
    return absl::InvalidArgumentError(absl::StrCat(
        "expected ", columns.named, " fields, found ", fields.size()));
  }
  for (size_t i = columns.named; i < fields.size(); ++i) {
    if (!absl::StripAsciiWhitespace(fields[i]).empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "expected ", columns.named, " fields, found ", fields.size(),
          " (field ", i + 1, " is \"", fields[i], "\")"));
    }
  }
  DataEntry entry;
  entry.image_index =
      std::string(absl::StripAsciiWhitespace(fields[columns.image_index]));
  if (entry.image_index.empty()) {
    return absl::InvalidArgumentError("empty \"Image Index\"");
  }
  if (absl::Status status = CheckImageFileName(entry.image_index);
      !status.ok()) {
    return status;
  }
  absl::StatusOr<LabelVector> labels =
      ParseFindingLabels(fields[columns.finding_labels]);
  if (!labels.ok()) return labels.status();
  entry.labels = *labels;
  const std::string& patient = fields[columns.patient_id];
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(patient),
                        &entry.patient_id)) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"Patient ID\" is not an integer: \"", patient, "\""));
  }
  if (columns.follow_up) {
    const std::string& value = fields[*columns.follow_up];
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(value),
                          &entry.follow_up)) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"Follow-up #\" is not an integer: \"", value, "\""));
    }
  }
  if (columns.patient_age) {
    const std::string& value = fields[*columns.patient_age];
    std::optional<int> age = ParseAge(value);
    if (!age) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"Patient Age\" is not an age: \"", value, "\""));
    }
    entry.patient_age = *age;
  }
  if (columns.patient_gender) {
    entry.patient_gender = std::string(
        absl::StripAsciiWhitespace(fields[*columns.patient_gender]));
  }
  if (columns.view_position) {
    entry.view_position =
        std::string(absl::StripAsciiWhitespace(fields[*columns.view_position]));
  }
  return entry;
}

}  // namespace

absl::Status CheckImageFileName(absl::string_view name) {
  auto refuse = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"Image Index\" \"", absl::CHexEscape(name), "\" ", why,
                     ": it must be a file name inside the images folder"));
  };
  if (name.empty()) return refuse("is empty");
  if (name == "." || name == "..") return refuse("is a directory");
  if (name.front() == '/') return refuse("is an absolute path");
  if (name.find_first_of("/\\") != absl::string_view::npos) {
    return refuse("contains a path separator");
  }
  for (char c : name) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return refuse("contains a control character");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<LabelVector> ParseFindingLabels(absl::string_view value) {
  LabelVector labels{};
  const absl::string_view trimmed = absl::StripAsciiWhitespace(value);
  if (trimmed == kNoFinding) return labels;
  if (trimmed.empty()) {
    return absl::InvalidArgumentError("empty \"Finding Labels\"");
  }
  for (absl::string_view name : absl::StrSplit(trimmed, '|')) {
    name = absl::StripAsciiWhitespace(name);
    if (name == kNoFinding) {
      return absl::InvalidArgumentError(absl::StrCat(
          "\"No Finding\" combined with findings in \"", trimmed, "\""));
    }
    std::optional<int> index = LabelIndex(name);
    if (!index) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown label \"", name, "\" in \"", trimmed,
                       "\"; expected \"No Finding\" or some of ",
                       absl::StrJoin(kLabelNames, "|")));
    }
    labels[*index] = 1.0f;
  }
  return labels;
}

std::string FormatFindingLabels(const LabelVector& labels) {
  std::vector<absl::string_view> names;
  for (int i = 0; i < kNumLabels; ++i) {
    if (labels[i] != 0.0f) names.push_back(kLabelNames[i]);
  }
  if (names.empty()) return std::string(kNoFinding);
  return absl::StrJoin(names, "|");
}

absl::StatusOr<std::vector<DataEntry>> ParseDataEntryCsv(
    absl::string_view contents, absl::string_view file_name) {
  if (contents.substr(0, 3) == "\xEF\xBB\xBF") contents.remove_prefix(3);
  std::vector<DataEntry> entries;
  std::unordered_map<std::string, int> line_of_image;
  std::optional<Columns> columns;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(contents, '\n')) {
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    auto error = [&](const absl::Status& status) {
      return absl::InvalidArgumentError(
          absl::StrCat(file_name, ":", line_number, ": ", status.message()));
    };
    absl::StatusOr<std::vector<std::string>> fields = SplitCsvLine(line);
    if (!fields.ok()) return error(fields.status());
    if (!columns) {
      absl::StatusOr<Columns> found = FindColumns(*fields);
      if (!found.ok()) return error(found.status());
      columns = *found;
      continue;
    }
    absl::StatusOr<DataEntry> entry = ParseRow(*fields, *columns);
    if (!entry.ok()) return error(entry.status());
    auto [it, inserted] =
        line_of_image.emplace(entry->image_index, line_number);
    if (!inserted) {
      return error(absl::InvalidArgumentError(
          absl::StrCat("image \"", entry->image_index,
                       "\" already listed on line ", it->second)));
    }
    entries.push_back(*std::move(entry));
  }
  if (!columns) {
    return absl::InvalidArgumentError(
        absl::StrCat(file_name, ": empty file, expected a header line"));
  }
  return entries;
}

absl::StatusOr<std::vector<DataEntry>> ReadDataEntryCsv(
    const std::string& path) {
  absl::StatusOr<std::string> contents = ReadFileToString(path);
  if (!contents.ok()) return contents.status();
  return ParseDataEntryCsv(*contents, path);
}

}  // namespace kolo::chexnet
