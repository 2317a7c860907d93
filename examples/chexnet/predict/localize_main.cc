// chexnet_localize: the ChestX-ray8 localization check of a CheXNet model.
// Grad-CAM maps of every image in a BBox_List_2017.csv, scored against its
// boxes (pointing game, accuracy at T(IoBB) beside Wang et al. 2017, and
// T(IoU)); see examples/chexnet/metrics/localization.h.
// Exit status: 0 on success, 2 for a bad command line, 1 when the model, the
// box file or an image cannot be read (the message names the file).
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "examples/chexnet/data/bbox_list.h"
#include "examples/chexnet/data/file_util.h"
#include "examples/chexnet/data/splits.h"
#include "examples/chexnet/models/device.h"
#include "examples/chexnet/predict/localizer.h"
#include "examples/chexnet/predict/predictor.h"

namespace {

absl::Status Run(const std::string& checkpoint, const std::string& weights,
                 const std::string& arch, int image_size,
                 const std::string& data_dir, std::string boxes_path,
                 const std::string& device_spec,
                 const kolo::chexnet::LocalizeOptions& options,
                 const std::string& json_path) {
  namespace fs = std::filesystem;
  using namespace kolo::chexnet;
  if (boxes_path.empty())
    boxes_path = (fs::path(data_dir) / kBBoxList).string();
  absl::StatusOr<std::vector<FindingBox>> boxes = ReadBBoxListCsv(boxes_path);
  if (!boxes.ok()) return boxes.status();
  absl::StatusOr<NihSplits> splits = LoadNihSplits(data_dir, SplitOptions{});
  if (!splits.ok()) return splits.status();
  std::vector<DataEntry> entries = splits->train;
  entries.insert(entries.end(), splits->validation.begin(),
                 splits->validation.end());
  entries.insert(entries.end(), splits->test.begin(), splits->test.end());
  if (absl::Status s = CheckBoxImagesKnown(*boxes, entries, boxes_path);
      !s.ok()) {
    return s;
  }
  absl::StatusOr<torch::Device> device =
      ResolveDevice(device_spec, 0, "--device");
  if (!device.ok()) return device.status();
  absl::StatusOr<std::unique_ptr<Predictor>> predictor =
      checkpoint.empty()
          ? Predictor::FromWeights(weights, arch,
                                   image_size > 0 ? image_size : 224, *device)
          : Predictor::FromCheckpoint(checkpoint, image_size, *device);
  if (!predictor.ok()) return predictor.status();
  absl::StatusOr<LocalizationMetrics> metrics = LocalizeBoxes(
      (*predictor)->mutable_model(), (*predictor)->image_size(), *device,
      (fs::path(data_dir) / kImagesDir).string(), *boxes, options);
  if (!metrics.ok()) return metrics.status();
  std::printf("%s: %s at %d px\n%s", boxes_path.c_str(),
              (*predictor)->model().arch().c_str(), (*predictor)->image_size(),
              FormatLocalizationTable(*metrics).c_str());
  if (!json_path.empty()) {
    nlohmann::json json = LocalizationToJson(*metrics);
    json["boxes_file"] = boxes_path;
    json["arch"] = (*predictor)->model().arch();
    json["image_size"] = (*predictor)->image_size();
    if (absl::Status s = WriteStringToFile(json_path, json.dump(1) + "\n");
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  std::string checkpoint;
  std::string weights;
  std::string arch = "densenet121";
  int image_size = 0;
  std::string data_dir;
  std::string boxes;
  std::string json_path;
  std::string device_spec = "cpu";
  int threads = 0;
  kolo::chexnet::LocalizeOptions options;

  CLI::App app(
      "Scores Grad-CAM heat maps against radiologist boxes, as the\n"
      "ChestX-ray8 paper: boxes around the regions where the map is above\n"
      "--box-threshold/255 of its range, accuracy at T(IoBB) (beside the\n"
      "paper's) and T(IoU), and the pointing game. DATA is the NIH layout\n"
      "(images/, Data_Entry_2017*.csv); the boxes default to\n"
      "DATA/BBox_List_2017.csv (chexnet_make_synthetic writes one).",
      "chexnet_localize");
  app.option_defaults()->always_capture_default();
  CLI::Option* checkpoint_option =
      app.add_option("--checkpoint", checkpoint, "chexnet_train checkpoint")
          ->check(CLI::ExistingFile);
  CLI::Option* weights_option =
      app.add_option("--weights", weights,
                     "state_dict saved from Python with torch.save")
          ->check(CLI::ExistingFile);
  checkpoint_option->excludes(weights_option);
  app.add_option("--arch", arch, "Architecture of --weights")
      ->check(CLI::IsMember({"densenet121", "vgg16"}));
  app.add_option("--image-size", image_size,
                 "Model input side; 0: the checkpoint's, or 224 with --weights")
      ->check(CLI::Range(0, 4096));
  app.add_option("--data", data_dir, "Data set folder (NIH layout)")
      ->required()
      ->check(CLI::ExistingDirectory);
  app.add_option("--boxes", boxes, "Box file (BBox_List_2017.csv layout)");
  app.add_option("--box-threshold", options.box_threshold,
                 "Map level (0-255 of its range) above which boxes are drawn")
      ->check(CLI::Range(1.0, 255.0));
  app.add_option("--heatmap", options.heatmap_dir,
                 "Write overlays with the boxes marked (and raw maps) here");
  app.add_option("--max-heatmaps", options.max_heatmap_images,
                 "Images to write heat maps of; 0: all")
      ->check(CLI::Range(0, 1000000));
  app.add_option("--json", json_path, "Also write the scores as JSON here");
  app.add_option("--device", device_spec, "cpu, cuda, cuda:N or auto")
      ->check(CLI::Validator(
          [](std::string& value) -> std::string {
            return kolo::chexnet::IsDeviceSpec(value)
                       ? ""
                       : "expected cpu, cuda, cuda:N or auto, got '" + value +
                             "'";
          },
          "DEVICE"));
  app.add_option("--threads", threads, "torch threads; 0: all cores")
      ->check(CLI::Range(0, 1024));
  try {
    app.parse(argc, argv);
    if (checkpoint.empty() == weights.empty()) {
      throw CLI::ValidationError(
          "give exactly one of --checkpoint FILE and --weights FILE");
    }
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  torch::set_num_threads(threads > 0
                             ? threads
                             : static_cast<int>(std::max(
                                   1u, std::thread::hardware_concurrency())));
  try {
    const absl::Status status =
        Run(checkpoint, weights, arch, image_size, data_dir, boxes, device_spec,
            options, json_path);
    if (status.ok()) return 0;
    std::fprintf(stderr, "chexnet_localize: error: %s\n",
                 std::string(status.message()).c_str());
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "chexnet_localize: error: %s\n",
                 e.what_without_backtrace());
  }
  return 1;
}
