// The official ChestX-ray14 split (train_val_list.txt, test_list.txt) and a
// seeded patient-level validation split carved out of train_val.
//
// Images of one patient are strongly correlated, so a split by image would
// leak patients between training and evaluation; every split here keeps all
// images of a patient on the same side.
#ifndef KOLO_EXAMPLES_CHEXNET_DATA_SPLITS_H_
#define KOLO_EXAMPLES_CHEXNET_DATA_SPLITS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "examples/chexnet/data/data_entry.h"

namespace kolo::chexnet {

inline constexpr char kTrainValList[] = "train_val_list.txt";
inline constexpr char kTestList[] = "test_list.txt";
inline constexpr char kImagesDir[] = "images";

struct PatientSplit {
  std::vector<DataEntry> train;
  std::vector<DataEntry> validation;
};

// Moves the images of round(validation_fraction * number of patients)
// patients, chosen by a shuffle seeded with `seed`, to `validation`; the rest
// stay in `train`. Both keep the input order. With at least two patients and
// 0 < validation_fraction < 1, each side receives at least one patient. The
// result depends only on the entries, the fraction and the seed.
// REQUIRES: 0 <= validation_fraction <= 1.
PatientSplit SplitByPatient(std::vector<DataEntry> entries,
                            double validation_fraction, uint64_t seed);

struct SplitOptions {
  // Fraction of the train_val patients held out for validation (CheXNet used
  // 70/10/20 train/validation/test by patient; 0.125 of train_val is close).
  double validation_fraction = 0.125;
  // Seed of the validation split. Every rank must use the same one.
  uint64_t seed = 0;
  // Metadata file; empty picks Data_Entry_2017_v2020.csv in the data
  // directory when present, otherwise Data_Entry_2017.csv.
  std::string metadata_csv;
};

struct NihSplits {
  std::string metadata_csv;  // The file that was read.
  std::vector<DataEntry> train;
  std::vector<DataEntry> validation;
  std::vector<DataEntry> test;
};

// Reads the metadata and both lists from `data_dir` (the NIH layout) and
// splits train_val by patient. Errors name the file and line: a listed image
// missing from the metadata, an image listed twice (in one list or both), or
// any parse error of the metadata.
// Images listed nowhere are ignored.
absl::StatusOr<NihSplits> LoadNihSplits(const std::string& data_dir,
                                        const SplitOptions& options);

}  // namespace kolo::chexnet

#endif  // KOLO_EXAMPLES_CHEXNET_DATA_SPLITS_H_
