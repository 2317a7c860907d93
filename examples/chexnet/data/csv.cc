// CSV record splitting.
#include "examples/chexnet/data/csv.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace kolo::chexnet {

absl::StatusOr<std::vector<std::string>> SplitCsvLine(absl::string_view line) {
  std::vector<std::string> fields;
  std::string field;
  size_t i = 0;
  while (true) {
    field.clear();
    if (i < line.size() && line[i] == '"') {
      const size_t open = i;
      ++i;
      bool closed = false;
      while (i < line.size()) {
        if (line[i] == '"') {
          if (i + 1 < line.size() && line[i + 1] == '"') {
            field.push_back('"');
            i += 2;
            continue;
          }
          closed = true;
          ++i;
          break;
        }
        field.push_back(line[i++]);
      }
      if (!closed) {
        return absl::InvalidArgumentError(absl::StrCat(
            "unterminated quoted field starting at column ", open + 1));
      }
      if (i < line.size() && line[i] != ',') {
        return absl::InvalidArgumentError(absl::StrCat(
            "unexpected character after closing quote at column ", i + 1));
      }
    } else {
      while (i < line.size() && line[i] != ',') {
        if (line[i] == '"') {
          return absl::InvalidArgumentError(
              absl::StrCat("quote inside an unquoted field at column ", i + 1));
        }
        field.push_back(line[i++]);
      }
    }
    fields.push_back(field);
    if (i >= line.size()) break;
    ++i;  // The comma.
  }
  return fields;
}

std::string QuoteCsvField(absl::string_view field) {
  if (field.find_first_of(",\"\r\n") == absl::string_view::npos) {
    return std::string(field);
  }
  std::string quoted = "\"";
  for (char c : field) {
    if (c == '"') quoted.push_back('"');
    quoted.push_back(c);
  }
  quoted.push_back('"');
  return quoted;
}

}  // namespace kolo::chexnet
