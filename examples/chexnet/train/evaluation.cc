// chexnet_train's evaluation (see evaluation.h).
#include "examples/chexnet/train/evaluation.h"

#include <torch/nn/functional/loss.h>

#include <filesystem>
#include <optional>
#include <string>
#include <tuple>
#include <unordered_set>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "examples/chexnet/data/bbox_list.h"
#include "examples/chexnet/data/labels.h"
#include "examples/chexnet/predict/localizer.h"
#include "examples/chexnet/predict/ten_crop.h"
#include "kolo/torch.h"

namespace kolo::chexnet {

::torch::Tensor BceWithLogitsLoss(const ::torch::Tensor& logits,
                                  const ::torch::Tensor& labels,
                                  const ::torch::Tensor& pos_weight) {
  namespace F = ::torch::nn::functional;
  auto options = F::BinaryCrossEntropyWithLogitsFuncOptions();
  if (pos_weight.defined()) options.pos_weight(pos_weight);
  return F::binary_cross_entropy_with_logits(logits, labels, options);
}

absl::StatusOr<Evaluation> Evaluate(ChexnetModel& model,
                                    const ChestXrayDataset& dataset,
                                    LoaderOptions loader_options,
                                    const ::torch::Tensor& pos_weight,
                                    ::torch::Device device,
                                    const MixedPrecision& precision,
                                    const std::string& name, int ten_crop) {
  const int rank = kolo::torch::rank();
  const int size = kolo::torch::size();
  // Rank r scores positions r, r + size, ...: no padding, so every image is
  // scored exactly once.
  std::vector<int64_t> shard;
  for (int64_t i = rank; i < dataset.size(); i += size) shard.push_back(i);
  loader_options.random_horizontal_flip = false;
  loader_options.drop_last = false;
  BatchLoader loader(&dataset, loader_options);
  absl::Status status = loader.StartEpoch(shard, 0);
  if (!status.ok()) return status;

  model.eval();
  std::vector<::torch::Tensor> logits_parts;
  std::vector<::torch::Tensor> index_parts;
  {
    ::torch::NoGradGuard no_grad;
    while (true) {
      absl::StatusOr<std::optional<Batch>> next = loader.Next();
      if (!next.ok()) return next.status();
      if (!next->has_value()) break;
      const Batch& batch = **next;
      if (batch.images.size(0) == 0) continue;
      ::torch::Tensor logits;
      {
        CudaAutocast autocast(precision.enabled, precision.dtype);
        const ::torch::Tensor images =
            batch.images.to(device, /*non_blocking=*/true);
        // Ten-crop averages probabilities; their logits stand in for the
        // model's, so that the loss and AUROC below need no special case.
        logits =
            ten_crop > 0
                ? ::torch::logit(TenCropProbabilities(model, images, ten_crop)
                                     .to(::torch::kFloat32),
                                 1e-7)
                : model.forward(images);
      }
      // Scores, loss and AUROC are computed on the CPU in float32.
      logits_parts.push_back(logits.to(::torch::kCPU, ::torch::kFloat32));
      index_parts.push_back(::torch::tensor(batch.indices, ::torch::kInt64));
    }
  }
  ::torch::Tensor local_logits = logits_parts.empty()
                                     ? ::torch::zeros({0, kNumLabels})
                                     : ::torch::cat(logits_parts).contiguous();
  ::torch::Tensor local_indices = index_parts.empty()
                                      ? ::torch::zeros({0}, ::torch::kInt64)
                                      : ::torch::cat(index_parts);
  ::torch::Tensor all_logits =
      kolo::torch::allgather(local_logits, name + ".logits");
  ::torch::Tensor all_indices =
      kolo::torch::allgather(local_indices, name + ".indices");
  ::torch::Tensor order = std::get<1>(all_indices.sort());
  all_logits = all_logits.index_select(0, order).contiguous();
  all_indices = all_indices.index_select(0, order).contiguous();

  Evaluation result;
  result.images = all_indices.size(0);
  ::torch::Tensor labels = ::torch::zeros({result.images, kNumLabels});
  auto label_rows = labels.accessor<float, 2>();
  auto index_values = all_indices.accessor<int64_t, 1>();
  for (int64_t i = 0; i < result.images; ++i) {
    const LabelVector& entry_labels = dataset.entry(index_values[i]).labels;
    for (int c = 0; c < kNumLabels; ++c) label_rows[i][c] = entry_labels[c];
  }
  if (result.images == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(name, ": no image could be scored"));
  }
  result.loss =
      BceWithLogitsLoss(
          all_logits, labels,
          pos_weight.defined() ? pos_weight.to(::torch::kCPU) : pos_weight)
          .item<double>();
  ::torch::Tensor scores = ::torch::sigmoid(all_logits).contiguous();
  absl::StatusOr<ChexnetMetrics> metrics = ComputeChexnetMetrics(
      absl::MakeConstSpan(scores.data_ptr<float>(), scores.numel()),
      absl::MakeConstSpan(labels.data_ptr<float>(), labels.numel()),
      result.images);
  if (!metrics.ok()) {
    return absl::Status(metrics.status().code(),
                        absl::StrCat(name, ": ", metrics.status().message()));
  }
  result.metrics = *std::move(metrics);
  return result;
}

absl::StatusOr<LocalizationMetrics> LocalizeTest(
    ChexnetModel& model, const TrainOptions& train_options,
    const std::string& image_dir, const std::string& boxes_path,
    const NihSplits& splits, ::torch::Device device) {
  absl::StatusOr<std::vector<FindingBox>> boxes = ReadBBoxListCsv(boxes_path);
  if (!boxes.ok()) return boxes.status();
  std::vector<DataEntry> all = splits.train;
  all.insert(all.end(), splits.validation.begin(), splits.validation.end());
  all.insert(all.end(), splits.test.begin(), splits.test.end());
  if (absl::Status s = CheckBoxImagesKnown(*boxes, all, boxes_path); !s.ok()) {
    return s;
  }
  std::unordered_set<std::string> test_images;
  for (const DataEntry& entry : splits.test) {
    test_images.insert(entry.image_index);
  }
  std::vector<FindingBox> test_boxes;
  for (const FindingBox& box : *boxes) {
    if (test_images.count(box.image_index) != 0) test_boxes.push_back(box);
  }
  LocalizeOptions options;
  if (train_options.heatmap_images > 0) {
    options.heatmap_dir =
        (std::filesystem::path(train_options.out_dir) / "heatmaps").string();
    options.max_heatmap_images = train_options.heatmap_images;
  }
  model.eval();
  return LocalizeBoxes(model, train_options.image_size, device, image_dir,
                       test_boxes, options);
}

}  // namespace kolo::chexnet
