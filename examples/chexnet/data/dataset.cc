// ChestXrayDataset.
#include "examples/chexnet/data/dataset.h"

#include <filesystem>
#include <utility>

namespace kolo::chexnet {

ChestXrayDataset::ChestXrayDataset(std::string image_dir,
                                   std::vector<DataEntry> entries,
                                   ImageOptions options)
    : image_dir_(std::move(image_dir)),
      entries_(std::move(entries)),
      options_(options) {}

std::string ChestXrayDataset::ImagePath(int64_t index) const {
  return (std::filesystem::path(image_dir_) / entries_[index].image_index)
      .string();
}

absl::StatusOr<Image> ChestXrayDataset::LoadImage(int64_t index,
                                                  bool flip) const {
  // Entries need not come from ParseDataEntryCsv, which checks this too.
  if (absl::Status status = CheckImageFileName(entries_[index].image_index);
      !status.ok()) {
    return status;
  }
  absl::StatusOr<Image> image = LoadModelInput(ImagePath(index), options_);
  if (image.ok() && flip) FlipHorizontal(&*image);
  return image;
}

LabelVector ChestXrayDataset::PositiveFraction() const {
  LabelVector fraction{};
  if (entries_.empty()) return fraction;
  for (const DataEntry& entry : entries_) {
    for (int c = 0; c < kNumLabels; ++c) fraction[c] += entry.labels[c];
  }
  for (float& f : fraction) f /= static_cast<float>(entries_.size());
  return fraction;
}

}  // namespace kolo::chexnet
