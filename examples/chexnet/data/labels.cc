// The CheXNet label order.
#include "examples/chexnet/data/labels.h"

namespace kolo::chexnet {

const std::array<absl::string_view, kNumLabels> kLabelNames = {
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia"};

std::optional<int> LabelIndex(absl::string_view name) {
  for (int i = 0; i < kNumLabels; ++i) {
    if (kLabelNames[i] == name) return i;
  }
  return std::nullopt;
}

}  // namespace kolo::chexnet
