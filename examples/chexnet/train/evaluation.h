// How chexnet_train scores the model: the loss it trains on, and one list of
// images scored by every rank together (exact loss and AUROC over the whole
// list), or the test list's boxes localized by Grad-CAM.
#ifndef KOLO_EXAMPLES_CHEXNET_TRAIN_EVALUATION_H_
#define KOLO_EXAMPLES_CHEXNET_TRAIN_EVALUATION_H_

#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "examples/chexnet/data/batch_loader.h"
#include "examples/chexnet/data/dataset.h"
#include "examples/chexnet/data/splits.h"
#include "examples/chexnet/metrics/auroc.h"
#include "examples/chexnet/metrics/localization.h"
#include "examples/chexnet/models/chexnet_model.h"
#include "examples/chexnet/train/mixed_precision.h"
#include "examples/chexnet/train/train_options.h"

namespace kolo::chexnet {

// Binary cross-entropy with logits, mean over images and classes;
// pos_weight undefined means unweighted.
::torch::Tensor BceWithLogitsLoss(const ::torch::Tensor& logits,
                                  const ::torch::Tensor& labels,
                                  const ::torch::Tensor& pos_weight);

// Scores of one evaluation list, gathered from every rank and ordered by
// dataset index.
struct Evaluation {
  int64_t images = 0;
  double loss = std::nan("");
  ChexnetMetrics metrics;
};

// Collective: rank r scores positions r, r + size, ... of `dataset` in eval
// mode (no flips, no padding) and the scores are allgathered under `name`,
// so every rank returns the same Evaluation. ten_crop > 0: each image is
// scored as the mean probability of its ten crops of that side (the dataset
// holds the resized images). Errors name `name`.
absl::StatusOr<Evaluation> Evaluate(ChexnetModel& model,
                                    const ChestXrayDataset& dataset,
                                    LoaderOptions loader_options,
                                    const ::torch::Tensor& pos_weight,
                                    ::torch::Device device,
                                    const MixedPrecision& precision,
                                    const std::string& name, int ten_crop = 0);

// Grad-CAM against DATA/BBox_List_2017.csv: every box whose image is in the
// test list is scored; a box naming an image the metadata does not know is
// an error. Heat maps of the first --heatmap-images boxed images go to
// OUT/heatmaps.
absl::StatusOr<LocalizationMetrics> LocalizeTest(
    ChexnetModel& model, const TrainOptions& train_options,
    const std::string& image_dir, const std::string& boxes_path,
    const NihSplits& splits, ::torch::Device device);

}  // namespace kolo::chexnet

#endif  // KOLO_EXAMPLES_CHEXNET_TRAIN_EVALUATION_H_
