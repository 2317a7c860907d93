// CheXNet inference on PNG files (see predictor.h).
#include "examples/chexnet/predict/predictor.h"

#include <torch/torch.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "examples/chexnet/data/batch_loader.h"
#include "examples/chexnet/data/image.h"
#include "examples/chexnet/data/image_file.h"
#include "examples/chexnet/models/load_weights.h"
#include "examples/chexnet/predict/ten_crop.h"
#include "examples/chexnet/train/checkpoint.h"

namespace kolo::chexnet {
namespace {

constexpr size_t kImagesPerTableBlock = 4;
constexpr int kFindingColumnWidth = 20;

std::string BaseName(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

Predictor::Predictor(std::shared_ptr<ChexnetModel> model, int image_size,
                     torch::Device device)
    : model_(std::move(model)), image_size_(image_size), device_(device) {
  model_->eval();
  model_->to(device_);
}

absl::StatusOr<std::unique_ptr<Predictor>> Predictor::FromCheckpoint(
    const std::string& path, int image_size, torch::Device device) {
  absl::StatusOr<CheckpointModel> loaded = LoadModelFromCheckpoint(path);
  if (!loaded.ok()) return loaded.status();
  const int size =
      image_size > 0 ? image_size : static_cast<int>(loaded->meta.image_size);
  return std::make_unique<Predictor>(std::move(loaded->model), size, device);
}

absl::StatusOr<std::unique_ptr<Predictor>> Predictor::FromWeights(
    const std::string& path, const std::string& arch, int image_size,
    torch::Device device) {
  absl::StatusOr<std::shared_ptr<ChexnetModel>> model =
      MakeModel(arch, kNumFindings, /*head_bias_one=*/false);
  if (!model.ok()) return model.status();
  absl::StatusOr<LoadReport> report = LoadWeights(path, model->get());
  if (!report.ok()) return report.status();
  return std::make_unique<Predictor>(*std::move(model), image_size, device);
}

absl::StatusOr<std::vector<Prediction>> Predictor::Predict(
    const std::vector<std::string>& paths, int batch_size) {
  ImageOptions options;
  options.image_size = ten_crop_ ? TenCropResizeSide(image_size_) : image_size_;
  std::vector<Prediction> predictions;
  predictions.reserve(paths.size());
  torch::NoGradGuard no_grad;
  batch_size = std::max(1, batch_size);
  for (size_t first = 0; first < paths.size(); first += batch_size) {
    const size_t last = std::min(paths.size(), first + batch_size);
    std::vector<torch::Tensor> inputs;
    for (size_t i = first; i < last; ++i) {
      absl::StatusOr<Image> file = ReadImage(paths[i]);
      if (!file.ok()) return file.status();
      absl::StatusOr<Image> input = LoadModelInput(paths[i], options);
      if (!input.ok()) return input.status();
      Prediction prediction;
      prediction.image = paths[i];
      prediction.width = file->width;
      prediction.height = file->height;
      prediction.input_size = options.image_size;
      prediction.resampled = file->width != options.image_size ||
                             file->height != options.image_size;
      prediction.ten_crop = ten_crop_;
      predictions.push_back(std::move(prediction));
      inputs.push_back(ImageToTensor(*input));
    }
    const torch::Tensor batch = torch::stack(inputs).to(device_);
    torch::Tensor probabilities =
        (ten_crop_ ? TenCropProbabilities(*model_, batch, image_size_)
                   : model_->Predict(batch))
            .to(torch::kCPU, torch::kFloat32)
            .contiguous();
    auto rows = probabilities.accessor<float, 2>();
    for (size_t i = first; i < last; ++i) {
      for (int c = 0; c < kNumLabels; ++c) {
        predictions[i].probabilities[c] = rows[i - first][c];
      }
    }
  }
  return predictions;
}

std::string FormatPredictionTable(const std::vector<Prediction>& predictions) {
  std::string out;
  for (size_t first = 0; first < predictions.size();
       first += kImagesPerTableBlock) {
    const size_t last =
        std::min(predictions.size(), first + kImagesPerTableBlock);
    size_t width = 12;
    for (size_t i = first; i < last; ++i) {
      width = std::max(width, BaseName(predictions[i].image).size());
    }
    width += 2;
    if (first > 0) out += "\n";
    absl::StrAppend(&out, absl::StrFormat("%-*s", kFindingColumnWidth, "Finding"));
    for (size_t i = first; i < last; ++i) {
      absl::StrAppend(&out, absl::StrFormat("%*s", width,
                                            BaseName(predictions[i].image)));
    }
    absl::StrAppend(&out, "\n", absl::StrFormat("%-*s", kFindingColumnWidth,
                                                "(input)"));
    for (size_t i = first; i < last; ++i) {
      const Prediction& p = predictions[i];
      const std::string size =
          p.resampled ? absl::StrFormat("%dx%d->%d", p.width, p.height,
                                        p.input_size)
                      : absl::StrFormat("%dx%d", p.width, p.height);
      absl::StrAppend(&out, absl::StrFormat("%*s", width, size));
    }
    out += "\n";
    for (int c = 0; c < kNumLabels; ++c) {
      absl::StrAppend(&out, absl::StrFormat("%-*s", kFindingColumnWidth,
                                            kLabelNames[c]));
      for (size_t i = first; i < last; ++i) {
        absl::StrAppend(&out, absl::StrFormat(
                                  "%*.4f", width,
                                  predictions[i].probabilities[c]));
      }
      out += "\n";
    }
  }
  return out;
}

std::string FormatPredictionJsonLine(const Prediction& p) {
  nlohmann::ordered_json probabilities = nlohmann::ordered_json::object();
  for (int c = 0; c < kNumLabels; ++c) {
    probabilities[std::string(kLabelNames[c])] =
        static_cast<double>(p.probabilities[c]);
  }
  nlohmann::ordered_json line = {{"image", p.image},
                                 {"width", p.width},
                                 {"height", p.height},
                                 {"input_size", p.input_size},
                                 {"resampled", p.resampled},
                                 {"tta", p.ten_crop ? "ten-crop" : "none"},
                                 {"probabilities", probabilities}};
  return line.dump();
}

}  // namespace kolo::chexnet
