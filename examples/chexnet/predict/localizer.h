// The localization evaluation of chexnet_localize and chexnet_train's test
// report: Grad-CAM maps of every image that has ground-truth boxes, scored
// against them (localization.h).
#ifndef KOLO_EXAMPLES_CHEXNET_PREDICT_LOCALIZER_H_
#define KOLO_EXAMPLES_CHEXNET_PREDICT_LOCALIZER_H_

#include <torch/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "examples/chexnet/data/bbox_list.h"
#include "examples/chexnet/metrics/localization.h"
#include "examples/chexnet/models/chexnet_model.h"

namespace kolo::chexnet {

struct LocalizeOptions {
  double box_threshold = kDefaultBoxThreshold;
  // When not empty, overlays (with the boxes and the peak marked) and raw
  // maps of the first `max_heatmap_images` images go here.
  std::string heatmap_dir;
  int max_heatmap_images = 0;  // 0: every image.
};

// Scores the maps of every (image, finding) pair of `boxes` (image_index
// names a file in `image_dir`). The model must be in eval mode and on
// `device`. Errors name the image file.
absl::StatusOr<LocalizationMetrics> LocalizeBoxes(
    ChexnetModel& model, int image_size, ::torch::Device device,
    const std::string& image_dir, const std::vector<FindingBox>& boxes,
    const LocalizeOptions& options);

}  // namespace kolo::chexnet

#endif  // KOLO_EXAMPLES_CHEXNET_PREDICT_LOCALIZER_H_
