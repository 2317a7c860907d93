// Minimal CSV record splitting for the NIH metadata files: comma separated,
// RFC 4180 quoting ("a,b" is one field, "" inside quotes is one quote).
// Records never span lines in these files, so a quote left open at the end
// of a line is an error rather than a continuation.
#ifndef KOLO_EXAMPLES_CHEXNET_DATA_CSV_H_
#define KOLO_EXAMPLES_CHEXNET_DATA_CSV_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kolo::chexnet {

// Splits one line (without its line terminator) into fields. Fields keep
// surrounding spaces; quotes are removed. "a,b," yields three fields, the last
// one empty. Returns InvalidArgument for a quote inside an unquoted field,
// text after a closing quote, or an unterminated quoted field; the message
// gives the column (1-based character position).
absl::StatusOr<std::vector<std::string>> SplitCsvLine(absl::string_view line);

// Quotes `field` if it contains a comma, a quote or a line break.
std::string QuoteCsvField(absl::string_view field);

}  // namespace kolo::chexnet

#endif  // KOLO_EXAMPLES_CHEXNET_DATA_CSV_H_
