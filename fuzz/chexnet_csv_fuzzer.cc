// Fuzzes the ChestX-ray14 metadata parser (examples/chexnet/data/
// data_entry.h): any file contents must give either an InvalidArgument error
// or entries that keep DataEntry's promises, never a crash.
//
// Input: the contents of a Data_Entry_2017.csv or Data_Entry_2017_v2020.csv.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>

#include "absl/strings/string_view.h"
#include "examples/chexnet/data/data_entry.h"

namespace {

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "chexnet_csv_fuzzer: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using kolo::chexnet::DataEntry;
  const absl::string_view contents(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<std::vector<DataEntry>> entries =
      kolo::chexnet::ParseDataEntryCsv(contents, "Data_Entry_2017.csv");
  if (!entries.ok()) {
    if (entries.status().code() != absl::StatusCode::kInvalidArgument) {
      Fail("a malformed file is not InvalidArgument");
    }
    return 0;
  }
  std::set<std::string> images;
  for (const DataEntry& entry : *entries) {
    if (entry.image_index.empty()) Fail("accepted an empty image index");
    if (!kolo::chexnet::CheckImageFileName(entry.image_index).ok()) {
      Fail("accepted an image index that is not a plain file name");
    }
    if (!images.insert(entry.image_index).second) {
      Fail("accepted a duplicated image index");
    }
    for (float label : entry.labels) {
      if (label != 0.0f && label != 1.0f) Fail("a label is neither 0 nor 1");
    }
    // The labels survive formatting and parsing again.
    absl::StatusOr<kolo::chexnet::LabelVector> labels =
        kolo::chexnet::ParseFindingLabels(
            kolo::chexnet::FormatFindingLabels(entry.labels));
    if (!labels.ok() || *labels != entry.labels) {
      Fail("labels changed in a format/parse round trip");
    }
  }
  return 0;
}
