// The deployable side of CheXNet: per-finding probabilities for chest X-ray
// PNGs from a chexnet_train checkpoint or a torch.save state_dict, and their
// presentation as a table or JSON Lines.
//
// Images go through the training pipeline's preprocessing (LoadModelInput):
// three channels, resized to the model's square input unless the image
// already has exactly that size (then its pixels are used as decoded), and
// ImageNet normalisation.
//
// The model runs on the device given at construction (CPU by default, or a
// GPU); images are decoded on the CPU and probabilities returned there.
//
// A Predictor is not safe for concurrent use.
#ifndef KOLO_EXAMPLES_CHEXNET_PREDICT_PREDICTOR_H_
#define KOLO_EXAMPLES_CHEXNET_PREDICT_PREDICTOR_H_

#include <array>
#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

#include "absl/status/statusor.h"
#include "examples/chexnet/data/labels.h"
#include "examples/chexnet/models/chexnet_model.h"

namespace kolo::chexnet {

struct Prediction {
  std::string image;  // The path as given.
  int width = 0;      // Of the file.
  int height = 0;
  int input_size = 0;      // Side it is resized to: the model input's, or with
                           // ten-crop the side the crops are taken from.
  bool resampled = false;  // False when the file already had that size.
  bool ten_crop = false;   // Averaged over ten crops (ten_crop.h).
  std::array<float, kNumLabels> probabilities{};  // kLabelNames order.
};

class Predictor {
 public:
  // From a chexnet_train checkpoint (arch and input size stored in it);
  // image_size > 0 overrides the stored size.
  static absl::StatusOr<std::unique_ptr<Predictor>> FromCheckpoint(
      const std::string& path, int image_size,
      ::torch::Device device = ::torch::kCPU);
  // From a torch.save state_dict (see load_weights.h) for `arch`.
  static absl::StatusOr<std::unique_ptr<Predictor>> FromWeights(
      const std::string& path, const std::string& arch, int image_size,
      ::torch::Device device = ::torch::kCPU);
  // From a model in memory (it is switched to eval mode and moved to
  // `device`).
  Predictor(std::shared_ptr<ChexnetModel> model, int image_size,
            ::torch::Device device = ::torch::kCPU);

  // One prediction per path, in order, computed in batches of `batch_size`.
  // The first image that cannot be read fails the call with an error that
  // names its file.
  absl::StatusOr<std::vector<Prediction>> Predict(
      const std::vector<std::string>& paths, int batch_size = 16);

  // Test-time augmentation: with ten_crop, Predict resizes each image to
  // TenCropResizeSide(image_size()) and averages the probabilities of ten
  // image_size() crops (see ten_crop.h). Off by default.
  void set_ten_crop(bool ten_crop) { ten_crop_ = ten_crop; }
  bool ten_crop() const { return ten_crop_; }

  const ChexnetModel& model() const { return *model_; }
  // For Grad-CAM (heatmaps.h), which runs the model's halves itself.
  ChexnetModel& mutable_model() { return *model_; }
  int image_size() const { return image_size_; }
  ::torch::Device device() const { return device_; }

 private:
  std::shared_ptr<ChexnetModel> model_;
  int image_size_;
  ::torch::Device device_;
  bool ten_crop_ = false;
};

// Findings as rows, images as columns (a block of up to four images at a
// time), probabilities with four decimals; a line above the rows gives each
// file's size and whether it was resampled.
std::string FormatPredictionTable(const std::vector<Prediction>& predictions);

// One JSON object per line:
// {"image":..., "width":..., "height":..., "input_size":..., "resampled":...,
//  "tta": "none" or "ten-crop", "probabilities": {"Atelectasis": p, ...}}
// (kLabelNames order).
std::string FormatPredictionJsonLine(const Prediction& prediction);

}  // namespace kolo::chexnet

#endif  // KOLO_EXAMPLES_CHEXNET_PREDICT_PREDICTOR_H_
