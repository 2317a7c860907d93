// A ChestX-ray14 dataset: metadata entries plus the directory that holds
// their PNGs. Indices 0..size()-1 address entries in the order given, which
// is what a DistributedSampler shards.
#ifndef KOLO_EXAMPLES_CHEXNET_DATA_DATASET_H_
#define KOLO_EXAMPLES_CHEXNET_DATA_DATASET_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "examples/chexnet/data/data_entry.h"
#include "examples/chexnet/data/image.h"
#include "examples/chexnet/data/labels.h"

namespace kolo::chexnet {

// Immutable after construction, so any number of threads may call its const
// methods concurrently.
class ChestXrayDataset {
 public:
  // `image_dir` is the NIH images/ directory (entries' image_index values are
  // file names inside it).
  ChestXrayDataset(std::string image_dir, std::vector<DataEntry> entries,
                   ImageOptions options);

  int64_t size() const { return static_cast<int64_t>(entries_.size()); }
  // REQUIRES: 0 <= index < size() (as for every index below).
  const DataEntry& entry(int64_t index) const { return entries_[index]; }
  const std::vector<DataEntry>& entries() const { return entries_; }
  const ImageOptions& options() const { return options_; }
  const std::string& image_dir() const { return image_dir_; }

  std::string ImagePath(int64_t index) const;

  // The preprocessed model input of image `index` (LoadModelInput), mirrored
  // left-right when `flip`. Errors name the image file.
  absl::StatusOr<Image> LoadImage(int64_t index, bool flip) const;

  // Fraction of entries positive for each class; all zero when empty. Useful
  // for class-weighted binary cross-entropy.
  LabelVector PositiveFraction() const;

 private:
  std::string image_dir_;
  std::vector<DataEntry> entries_;
  ImageOptions options_;
};

}  // namespace kolo::chexnet

#endif  // KOLO_EXAMPLES_CHEXNET_DATA_DATASET_H_
