// The 14 ChestX-ray14 pathologies in the CheXNet paper's order, which is the
// order of every label vector, model output and metrics table in the example.
#ifndef KOLO_EXAMPLES_CHEXNET_DATA_LABELS_H_
#define KOLO_EXAMPLES_CHEXNET_DATA_LABELS_H_

#include <array>
#include <optional>

#include "absl/strings/string_view.h"

namespace kolo::chexnet {

inline constexpr int kNumLabels = 14;

// Atelectasis, Cardiomegaly, Effusion, Infiltration, Mass, Nodule, Pneumonia,
// Pneumothorax, Consolidation, Edema, Emphysema, Fibrosis, Pleural_Thickening,
// Hernia: spelled as in Data_Entry_2017.csv.
extern const std::array<absl::string_view, kNumLabels> kLabelNames;

// The "Finding Labels" value of an image with none of the 14 findings.
inline constexpr absl::string_view kNoFinding = "No Finding";

// Multi-hot vector: 1.0 where the finding is present, 0.0 elsewhere.
using LabelVector = std::array<float, kNumLabels>;

// Position of `name` in kLabelNames (exact, case-sensitive match), or nullopt.
std::optional<int> LabelIndex(absl::string_view name);

}  // namespace kolo::chexnet

#endif  // KOLO_EXAMPLES_CHEXNET_DATA_LABELS_H_
