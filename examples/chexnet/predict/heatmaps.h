// Grad-CAM heat maps of image files, for chexnet_predict --heatmap, the
// localization evaluation and chexnet_train's test report: the model input is
// prepared exactly as for prediction (LoadModelInput), the maps (grad_cam.h)
// are upsampled bilinearly to the file's own pixel grid, and each is written
// as an overlay PNG (heatmap_png.h) and a raw float32 .npy of that grid.
//
// For an image of W x H pixels resized to the model's S x S input, the map
// covers the whole image: a non-square image is stretched to the square
// input, and the map is stretched back.
#ifndef KOLO_EXAMPLES_CHEXNET_PREDICT_HEATMAPS_H_
#define KOLO_EXAMPLES_CHEXNET_PREDICT_HEATMAPS_H_

#include <torch/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "examples/chexnet/data/bbox_list.h"
#include "examples/chexnet/data/image.h"
#include "examples/chexnet/metrics/localization.h"
#include "examples/chexnet/models/chexnet_model.h"

namespace kolo::chexnet {

// Finding names as in kLabelNames (or NIH's "Infiltrate"), to kLabelNames
// indices in the order given. InvalidArgument names an unknown value and
// lists the known ones.
absl::StatusOr<std::vector<int>> ParseFindingNames(
    const std::vector<std::string>& names);

// The heat maps of one image file.
struct ImageHeatmaps {
  Image image;                    // As read, before any resizing.
  ::torch::Tensor probabilities;  // [num_classes], float32, CPU.
  std::vector<int> findings;      // What `maps` holds, in order.
  ::torch::Tensor maps;  // [findings.size(), image.height, image.width]
  // Per map, in image pixels: the centre of its strongest cell at the
  // feature maps' resolution (see localization.h).
  std::vector<HeatMapPeak> peaks;
};

// Reads `path` (PNG or DICOM), runs the model on its S x S input and
// returns the Grad-CAM maps of `findings` at the file's resolution, or of the
// `top` most probable findings when `findings` is empty. The model must be
// in eval mode and on `device`. Errors name the file.
absl::StatusOr<ImageHeatmaps> ComputeImageHeatmaps(
    ChexnetModel& model, int image_size, ::torch::Device device,
    const std::string& path, const std::vector<int>& findings, int top);

struct WrittenHeatmap {
  int finding = 0;
  float probability = 0;
  std::string png;  // Overlay.
  std::string npy;  // Raw map, float32 (height, width).
  HeatMapPeak peak;
};

// Writes <out_dir>/<file stem>_<Finding>.png and .npy for each map of
// `heatmaps`; `caption` goes under the title; `boxes` (by finding) are
// outlined on the overlays of their finding. Errors name the file.
absl::StatusOr<std::vector<WrittenHeatmap>> WriteHeatmaps(
    const ImageHeatmaps& heatmaps, const std::string& image_path,
    const std::string& out_dir, const std::string& caption,
    const std::vector<FindingBox>& boxes = {});

// "GRAD-CAM, DENSENET121 LAST DENSE BLOCK" or "GRAD-CAM, VGG16 LAST CONV".
std::string HeatmapCaption(const ChexnetModel& model);

}  // namespace kolo::chexnet

#endif  // KOLO_EXAMPLES_CHEXNET_PREDICT_HEATMAPS_H_
