// Official split lists and the patient-level validation split.
#include "examples/chexnet/data/splits.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <unordered_map>
#include <unordered_set>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "examples/chexnet/data/file_util.h"
#include "examples/chexnet/data/random.h"

namespace kolo::chexnet {

PatientSplit SplitByPatient(std::vector<DataEntry> entries,
                            double validation_fraction, uint64_t seed) {
  std::vector<int64_t> patients;
  for (const DataEntry& entry : entries) patients.push_back(entry.patient_id);
  std::sort(patients.begin(), patients.end());
  patients.erase(std::unique(patients.begin(), patients.end()), patients.end());

  const int64_t num_patients = static_cast<int64_t>(patients.size());
  int64_t num_validation =
      std::llround(validation_fraction * static_cast<double>(num_patients));
  if (num_patients >= 2 && validation_fraction > 0.0 &&
      validation_fraction < 1.0) {
    num_validation = std::clamp<int64_t>(num_validation, 1, num_patients - 1);
  }

  Rng rng(HashCombine(seed, 0x7661'6c69'6461'7465ULL));  // "validate"
  Shuffle(patients, rng);
  const std::unordered_set<int64_t> validation_patients(
      patients.begin(), patients.begin() + num_validation);

  PatientSplit split;
  for (DataEntry& entry : entries) {
    if (validation_patients.count(entry.patient_id) != 0) {
      split.validation.push_back(std::move(entry));
    } else {
      split.train.push_back(std::move(entry));
    }
  }
  return split;
}

absl::StatusOr<NihSplits> LoadNihSplits(const std::string& data_dir,
                                        const SplitOptions& options) {
  namespace fs = std::filesystem;
  NihSplits splits;
  splits.metadata_csv = options.metadata_csv;
  if (splits.metadata_csv.empty()) {
    const fs::path v2020 = fs::path(data_dir) / kDataEntry2020;
    splits.metadata_csv = fs::exists(v2020)
                              ? v2020.string()
                              : (fs::path(data_dir) / kDataEntry2017).string();
  }
  absl::StatusOr<std::vector<DataEntry>> entries =
      ReadDataEntryCsv(splits.metadata_csv);
  if (!entries.ok()) return entries.status();
  std::unordered_map<std::string, size_t> entry_of_image;
  for (size_t i = 0; i < entries->size(); ++i) {
    entry_of_image.emplace((*entries)[i].image_index, i);
  }

  // Which list claimed each entry, to reject an image listed twice.
  std::vector<const char*> claimed_by(entries->size(), nullptr);
  auto select = [&](const char* list_name,
                    std::vector<DataEntry>* out) -> absl::Status {
    const std::string path = (fs::path(data_dir) / list_name).string();
    absl::StatusOr<std::string> contents = ReadFileToString(path);
    if (!contents.ok()) return contents.status();
    int line_number = 0;
    for (absl::string_view line : absl::StrSplit(*contents, '\n')) {
      ++line_number;
      line = absl::StripAsciiWhitespace(line);
      if (line.empty()) continue;
      auto it = entry_of_image.find(std::string(line));
      if (it == entry_of_image.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ":", line_number, ": image \"", line,
                         "\" is not in ", splits.metadata_csv));
      }
      if (claimed_by[it->second] != nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ":", line_number, ": image \"", line,
                         "\" is also listed in ", claimed_by[it->second]));
      }
      claimed_by[it->second] = list_name;
      out->push_back((*entries)[it->second]);
    }
    return absl::OkStatus();
  };
  std::vector<DataEntry> train_val;
  if (absl::Status status = select(kTrainValList, &train_val); !status.ok()) {
    return status;
  }
  if (absl::Status status = select(kTestList, &splits.test); !status.ok()) {
    return status;
  }
  PatientSplit split = SplitByPatient(
      std::move(train_val), options.validation_fraction, options.seed);
  splits.train = std::move(split.train);
  splits.validation = std::move(split.validation);
  return splits;
}

}  // namespace kolo::chexnet
