// The localization evaluation; see localizer.h.
#include "examples/chexnet/predict/localizer.h"

#include <torch/torch.h>

#include <filesystem>
#include <map>

#include "examples/chexnet/predict/heatmaps.h"

namespace kolo::chexnet {

absl::StatusOr<LocalizationMetrics> LocalizeBoxes(
    ChexnetModel& model, int image_size, torch::Device device,
    const std::string& image_dir, const std::vector<FindingBox>& boxes,
    const LocalizeOptions& options) {
  // image -> finding -> boxes, in file order of the images' first boxes.
  std::vector<std::string> order;
  std::map<std::string, std::map<int, std::vector<FindingBox>>> by_image;
  for (const FindingBox& box : boxes) {
    auto& findings = by_image[box.image_index];
    if (findings.empty()) order.push_back(box.image_index);
    findings[box.finding].push_back(box);
  }
  LocalizationAccumulator accumulator(options.box_threshold);
  const std::string caption = HeatmapCaption(model);
  int written = 0;
  for (const std::string& image : order) {
    const auto& findings = by_image[image];
    std::vector<int> wanted;
    std::vector<FindingBox> image_boxes;
    for (const auto& [finding, finding_boxes] : findings) {
      wanted.push_back(finding);
      image_boxes.insert(image_boxes.end(), finding_boxes.begin(),
                         finding_boxes.end());
    }
    const std::string path =
        (std::filesystem::path(image_dir) / image).string();
    absl::StatusOr<ImageHeatmaps> heatmaps =
        ComputeImageHeatmaps(model, image_size, device, path, wanted, 0);
    if (!heatmaps.ok()) return heatmaps.status();
    for (size_t i = 0; i < wanted.size(); ++i) {
      std::vector<BoundingBox> truth;
      for (const FindingBox& box : findings.at(wanted[i])) {
        truth.push_back(box.box);
      }
      const torch::Tensor map = heatmaps->maps[i].contiguous();
      accumulator.Add(image, wanted[i], map.data_ptr<float>(),
                      heatmaps->image.width, heatmaps->image.height,
                      heatmaps->peaks[i], truth);
    }
    if (!options.heatmap_dir.empty() &&
        (options.max_heatmap_images == 0 ||
         written < options.max_heatmap_images)) {
      absl::StatusOr<std::vector<WrittenHeatmap>> files = WriteHeatmaps(
          *heatmaps, path, options.heatmap_dir, caption, image_boxes);
      if (!files.ok()) return files.status();
      ++written;
    }
  }
  return accumulator.metrics();
}

}  // namespace kolo::chexnet
