// A synthetic ChestX-ray14: a small data set in exactly the NIH layout whose
// findings are drawn as visible, learnable patterns, so the whole CheXNet
// pipeline (loading, distributed training, AUROC report) runs in minutes on a
// CPU. The same binaries then train on the real data set unchanged.
//
// Layout written under SyntheticOptions::out_dir:
//   images/00000001_000.png ...   8-bit grayscale, image_size x image_size;
//                                 <patient, 8 digits>_<follow-up, 3 digits>
//   Data_Entry_2017.csv           the 2017 header and rows, trailing commas
//   Data_Entry_2017_v2020.csv     the same rows with the v2020 header
//   train_val_list.txt            ~80% of images, split by patient, sorted
//   test_list.txt                 the other ~20%, sorted
//   BBox_List_2017.csv            NIH's box file (see bbox_list.h): where
//                                 each of the 8 boxed findings was drawn in
//                                 every test image that has it
//
// Every image shows a chest-like background (body, two dark lung fields,
// ribs, spine, heart, diaphragm) with random pose, contrast, low-frequency
// variation and pixel noise. Each finding adds its own shape or texture in
// its own region (see synthetic.cc); Cardiomegaly enlarges the heart.
// Over half the images are "No Finding"; class prevalence follows the real
// set (kRealPrevalence) except that rare classes are raised to
// kMinPrevalence and each class is made positive in at least
// kMinPositivesPerSplit images of each split (when the split has that many),
// so a small test split still defines every class's AUROC.
//
// Output is a deterministic function of the options: same seed, same bytes.
#ifndef KOLO_EXAMPLES_CHEXNET_DATA_SYNTHETIC_H_
#define KOLO_EXAMPLES_CHEXNET_DATA_SYNTHETIC_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "examples/chexnet/data/bbox_list.h"
#include "examples/chexnet/data/labels.h"

namespace kolo::chexnet {

// Per-class prevalence in the real ChestX-ray14 (fraction of all 112,120
// images), kLabelNames order.
extern const std::array<double, kNumLabels> kRealPrevalence;
// Fraction of real images labelled "No Finding".
inline constexpr double kRealNoFindingFraction = 0.538;
// Floor applied to kRealPrevalence (raises Hernia from 0.2%).
inline constexpr double kMinPrevalence = 0.01;
inline constexpr int kMinPositivesPerSplit = 2;

struct SyntheticOptions {
  std::string out_dir;    // Created if missing; existing files replaced.
  int num_images = 1000;  // Total images, >= 1.
  int image_size = 128;   // Side of the square PNGs, 32..1024.
  uint64_t seed = 0;
  double test_fraction = 0.2;  // Of images, assigned whole patients at a time.
};

struct SyntheticSummary {
  int num_images = 0;
  int num_patients = 0;
  int num_train_val = 0;
  int num_test = 0;
  int num_no_finding = 0;
  std::array<int, kNumLabels> positives{};       // Over all images.
  std::array<int, kNumLabels> test_positives{};  // Over test_list.txt.
  int num_boxes = 0;                             // Rows of BBox_List_2017.csv.
};

// Writes the data set. Errors name the file that could not be written, or
// the option that is out of range.
absl::StatusOr<SyntheticSummary> GenerateSyntheticDataset(
    const SyntheticOptions& options);

// Renders one image with the given findings: size*size 8-bit gray pixels,
// row-major. `seed` selects pose, contrast, noise and pattern jitter.
std::vector<uint8_t> RenderSyntheticImage(const LabelVector& labels, int size,
                                          uint64_t seed);

// Intensity change (in [0, 1] gray levels, before noise) above which a pixel
// counts as part of a drawn finding: about 5 of 255 levels.
inline constexpr double kFindingRegionThreshold = 0.02;

// Where RenderSyntheticImage(labels, size, seed) drew each present finding:
// for each finding in `findings` that `labels` has, the bounding box (pixels
// of the size x size image) of the pixels whose intensity the finding
// changed by more than kFindingRegionThreshold. A finding that changed no
// pixel gets no box. Boxes name `image_index` and come in finding order.
std::vector<FindingBox> SyntheticFindingBoxes(const std::string& image_index,
                                              const LabelVector& labels,
                                              const std::vector<int>& findings,
                                              int size, uint64_t seed);

}  // namespace kolo::chexnet

#endif  // KOLO_EXAMPLES_CHEXNET_DATA_SYNTHETIC_H_
