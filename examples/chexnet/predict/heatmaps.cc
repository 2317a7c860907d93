// Heat maps of image files; see heatmaps.h.
#include "examples/chexnet/predict/heatmaps.h"

#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "examples/chexnet/data/batch_loader.h"
#include "examples/chexnet/data/image_file.h"
#include "examples/chexnet/data/labels.h"
#include "examples/chexnet/metrics/heatmap_png.h"
#include "examples/chexnet/metrics/npy.h"
#include "examples/chexnet/models/grad_cam.h"

namespace kolo::chexnet {

absl::StatusOr<std::vector<int>> ParseFindingNames(
    const std::vector<std::string>& names) {
  std::vector<int> findings;
  for (const std::string& name : names) {
    std::optional<int> index =
        name == "Infiltrate" ? std::optional<int>(3) : LabelIndex(name);
    if (!index.has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown finding \"", name,
                       "\" (known: ", absl::StrJoin(kLabelNames, ", "), ")"));
    }
    findings.push_back(*index);
  }
  return findings;
}

absl::StatusOr<ImageHeatmaps> ComputeImageHeatmaps(
    ChexnetModel& model, int image_size, torch::Device device,
    const std::string& path, const std::vector<int>& findings, int top) {
  ImageHeatmaps result;
  absl::StatusOr<Image> image = ReadImage(path);
  if (!image.ok()) return image.status();
  result.image = *std::move(image);
  const Image& original = result.image;
  Image input = original.height == image_size && original.width == image_size
                    ? original
                    : ResizeBilinear(original, image_size, image_size);
  NormalizeImageNet(&input);

  std::vector<int> all(kNumLabels);
  std::iota(all.begin(), all.end(), 0);
  const GradCamResult cam =
      ComputeGradCam(model, ImageToTensor(input).to(device), all);
  result.probabilities = cam.probabilities;
  result.findings = findings;
  if (result.findings.empty()) {
    auto p = cam.probabilities.accessor<float, 1>();
    std::stable_sort(all.begin(), all.end(),
                     [&](int a, int b) { return p[a] > p[b]; });
    all.resize(std::min<size_t>(std::max(0, top), all.size()));
    result.findings = all;
  }
  const torch::Tensor chosen = cam.maps.index_select(
      0, torch::tensor(std::vector<int64_t>(result.findings.begin(),
                                            result.findings.end())));
  result.maps =
      UpsampleMaps(chosen, original.height, original.width).contiguous();
  const int cells_y = static_cast<int>(chosen.size(1));
  const int cells_x = static_cast<int>(chosen.size(2));
  for (int64_t k = 0; k < chosen.size(0); ++k) {
    const torch::Tensor cells = chosen[k].contiguous();
    const HeatMapPeak cell =
        FindPeak(cells.data_ptr<float>(), cells_x, cells_y);
    result.peaks.push_back({cell.x * original.width / cells_x,
                            cell.y * original.height / cells_y});
  }
  return result;
}

absl::StatusOr<std::vector<WrittenHeatmap>> WriteHeatmaps(
    const ImageHeatmaps& heatmaps, const std::string& image_path,
    const std::string& out_dir, const std::string& caption,
    const std::vector<FindingBox>& boxes) {
  namespace fs = std::filesystem;
  std::error_code error;
  fs::create_directories(out_dir, error);
  if (error) {
    return absl::InternalError(
        absl::StrCat(out_dir, ": cannot create directory: ", error.message()));
  }
  const std::string stem = fs::path(image_path).stem().string();
  const int width = heatmaps.image.width, height = heatmaps.image.height;
  std::vector<WrittenHeatmap> written;
  for (size_t i = 0; i < heatmaps.findings.size(); ++i) {
    const int finding = heatmaps.findings[i];
    const torch::Tensor map = heatmaps.maps[i].contiguous();
    const float* values = map.data_ptr<float>();
    WrittenHeatmap out;
    out.finding = finding;
    out.probability = heatmaps.probabilities[finding].item<float>();
    const std::string base =
        (fs::path(out_dir) / absl::StrCat(stem, "_", kLabelNames[finding]))
            .string();
    out.png = base + ".png";
    out.npy = base + ".npy";
    out.peak = heatmaps.peaks[i];
    HeatmapOverlay overlay;
    overlay.image = &heatmaps.image;
    overlay.map = values;
    overlay.finding = std::string(kLabelNames[finding]);
    overlay.probability = out.probability;
    overlay.caption = caption;
    for (const FindingBox& box : boxes) {
      if (box.finding == finding) overlay.boxes.push_back(box.box);
    }
    overlay.peak = std::make_pair(out.peak.x, out.peak.y);
    if (absl::Status s = WriteHeatmapPng(out.png, overlay); !s.ok()) return s;
    if (absl::Status s = WriteNpyFloat32(out.npy, values, height, width);
        !s.ok()) {
      return s;
    }
    written.push_back(std::move(out));
  }
  return written;
}

std::string HeatmapCaption(const ChexnetModel& model) {
  return model.arch() == "vgg16" ? "GRAD-CAM, VGG16 LAST CONV"
                                 : "GRAD-CAM, DENSENET121 LAST DENSE BLOCK";
}

}  // namespace kolo::chexnet
