// chexnet_predict: per-finding probabilities for chest X-ray PNGs.
// Exit status: 0 on success, 2 for a bad command line, 1 when the model or an
// image cannot be read (the message names the file) or anything else fails.
#include <c10/util/Exception.h>
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_split.h"
#include "examples/chexnet/data/image_file.h"
#include "examples/chexnet/models/device.h"
#include "examples/chexnet/predict/heatmaps.h"
#include "examples/chexnet/predict/predictor.h"
#include "examples/chexnet/predict/ten_crop.h"

namespace {

// Folders among `inputs` become their image files (*.png, *.dcm, *.dicom),
// sorted; files are kept as given.
std::vector<std::string> ExpandFolders(const std::vector<std::string>& inputs) {
  namespace fs = std::filesystem;
  std::vector<std::string> paths;
  for (const std::string& input : inputs) {
    std::error_code error;
    if (!fs::is_directory(input, error)) {
      paths.push_back(input);
      continue;
    }
    std::vector<std::string> found;
    for (const auto& entry : fs::directory_iterator(input, error)) {
      if (entry.is_regular_file() &&
          kolo::chexnet::HasImageExtension(entry.path().string())) {
        found.push_back(entry.path().string());
      }
    }
    std::sort(found.begin(), found.end());
    paths.insert(paths.end(), found.begin(), found.end());
  }
  return paths;
}

int Run(int argc, char** argv) {
  std::string checkpoint;
  std::string weights;
  std::string arch = "densenet121";
  int image_size = 0;
  bool json = false;
  int threads = 0;
  int batch_size = 16;
  std::string device_spec = "cpu";
  std::vector<std::string> images;
  std::string tta = "none";
  std::string heatmap_dir;
  std::vector<std::string> finding_names;
  std::vector<int> findings;
  int top = 3;

  CLI::App app(
      "Prints the probability of each of the 14 ChestX-ray14 findings for\n"
      "each IMAGE (PNG: grayscale, RGB, RGBA or 16-bit; DICOM: one\n"
      "grayscale frame; a folder: its *.png, *.dcm and *.dicom files), as a\n"
      "table or as\n"
      "JSON Lines. The model comes from a chexnet_train checkpoint\n"
      "(architecture and input size are stored in it) or from a state_dict\n"
      "saved with torch.save (give --arch and --image-size). An image that\n"
      "already has the model's input size is not resampled.",
      "chexnet_predict");
  app.option_defaults()->always_capture_default();
  CLI::Option* checkpoint_option =
      app.add_option("--checkpoint", checkpoint,
                     "chexnet_train checkpoint (best.pt or last.pt)")
          ->check(CLI::ExistingFile);
  CLI::Option* weights_option =
      app.add_option("--weights", weights,
                     "state_dict saved from Python with torch.save")
          ->check(CLI::ExistingFile);
  checkpoint_option->excludes(weights_option);
  app.add_option("--arch", arch, "Architecture of --weights")
      ->check(CLI::IsMember({"densenet121", "vgg16"}));
  app.add_option("--image-size", image_size,
                 "Model input side in pixels; 0: the checkpoint's, or 224 "
                 "with --weights")
      ->check(CLI::Range(0, 4096));
  app.add_flag("--json", json, "JSON Lines: one object per image");
  app.add_option("--threads", threads, "torch threads; 0: all cores")
      ->check(CLI::Range(0, 1024));
  app.add_option("--batch-size", batch_size, "Images per forward pass")
      ->check(CLI::Range(1, 4096));
  app.add_option("--device", device_spec,
                 "cpu, cuda (GPU 0), cuda:N, or auto (cuda when LibTorch "
                 "sees a GPU); cuda needs a CUDA LibTorch")
      ->check(CLI::Validator(
          [](std::string& value) -> std::string {
            return kolo::chexnet::IsDeviceSpec(value)
                       ? ""
                       : "expected cpu, cuda, cuda:N or auto, got '" + value +
                             "'";
          },
          "DEVICE"));
  app.add_option("--tta", tta,
                 "Test-time augmentation: none, or ten-crop (resize to "
                 "256/224 of the input side, average ten crops)")
      ->check(CLI::IsMember({"none", "ten-crop"}));
  app.add_option("--heatmap", heatmap_dir,
                 "Write Grad-CAM heat maps (overlay PNG and raw .npy) of "
                 "each image to this folder");
  // One token split at commas, so that the images after it stay positional.
  // (Split here: CLI11's delimiter counts the pieces against expected(1).)
  std::string findings_list;
  app.add_option("--findings", findings_list,
                 "Heat maps of these findings (comma separated names); "
                 "default: the --top most probable");
  app.add_option("--top", top, "Heat maps of this many most probable findings")
      ->check(CLI::Range(1, 14));
  app.add_option("images", images, "PNG or DICOM files, or folders of them")
      ->required();
  try {
    app.parse(argc, argv);
    if (checkpoint.empty() == weights.empty()) {
      throw CLI::ValidationError("give exactly one of --checkpoint FILE and "
                                 "--weights FILE");
    }
    if (checkpoint.empty() && app.count("--arch") == 0) {
      throw CLI::ValidationError("--weights needs --arch");
    }
    if (!checkpoint.empty() && app.count("--arch") != 0) {
      throw CLI::ValidationError(
          "--arch is stored in the checkpoint; use it with --weights only");
    }
    if (heatmap_dir.empty() &&
        (app.count("--findings") != 0 || app.count("--top") != 0)) {
      throw CLI::ValidationError("--findings and --top need --heatmap DIR");
    }
    if (!findings_list.empty()) {
      finding_names = absl::StrSplit(findings_list, ',');
    }
    absl::StatusOr<std::vector<int>> parsed =
        kolo::chexnet::ParseFindingNames(finding_names);
    if (!parsed.ok()) {
      throw CLI::ValidationError("--findings",
                                 std::string(parsed.status().message()));
    }
    findings = *parsed;
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }

  torch::set_num_threads(
      threads > 0 ? threads
                  : static_cast<int>(
                        std::max(1u, std::thread::hardware_concurrency())));
  absl::StatusOr<torch::Device> device =
      kolo::chexnet::ResolveDevice(device_spec, 0, "--device");
  if (!device.ok()) {
    std::fprintf(stderr, "chexnet_predict: error: %s\n",
                 std::string(device.status().message()).c_str());
    return 1;
  }
  absl::StatusOr<std::unique_ptr<kolo::chexnet::Predictor>> predictor =
      checkpoint.empty()
          ? kolo::chexnet::Predictor::FromWeights(
                weights, arch, image_size > 0 ? image_size : 224, *device)
          : kolo::chexnet::Predictor::FromCheckpoint(checkpoint, image_size,
                                                     *device);
  if (!predictor.ok()) {
    std::fprintf(stderr, "chexnet_predict: error: %s\n",
                 std::string(predictor.status().message()).c_str());
    return 1;
  }
  images = ExpandFolders(images);
  if (images.empty()) {
    std::fprintf(stderr, "chexnet_predict: error: no image files given\n");
    return 1;
  }
  (*predictor)->set_ten_crop(tta == "ten-crop");
  absl::StatusOr<std::vector<kolo::chexnet::Prediction>> predictions =
      (*predictor)->Predict(images, batch_size);
  if (!predictions.ok()) {
    std::fprintf(stderr, "chexnet_predict: error: %s\n",
                 std::string(predictions.status().message()).c_str());
    return 1;
  }
  // Heat maps come from the plain (not ten-crop) input: one map per finding.
  std::vector<nlohmann::json> heatmap_json(predictions->size(),
                                           nlohmann::json::array());
  std::string heatmap_lines;
  if (!heatmap_dir.empty()) {
    kolo::chexnet::ChexnetModel& model = (*predictor)->mutable_model();
    const std::string caption = kolo::chexnet::HeatmapCaption(model);
    for (size_t i = 0; i < images.size(); ++i) {
      absl::StatusOr<kolo::chexnet::ImageHeatmaps> maps =
          kolo::chexnet::ComputeImageHeatmaps(model, (*predictor)->image_size(),
                                              *device, images[i], findings,
                                              top);
      absl::StatusOr<std::vector<kolo::chexnet::WrittenHeatmap>> written =
          maps.ok()
              ? kolo::chexnet::WriteHeatmaps(*maps, images[i], heatmap_dir,
                                             caption)
              : absl::StatusOr<std::vector<kolo::chexnet::WrittenHeatmap>>(
                    maps.status());
      if (!written.ok()) {
        std::fprintf(stderr, "chexnet_predict: error: %s\n",
                     std::string(written.status().message()).c_str());
        return 1;
      }
      for (const auto& w : *written) {
        heatmap_json[i].push_back(
            {{"finding", std::string(kolo::chexnet::kLabelNames[w.finding])},
             {"probability", w.probability},
             {"png", w.png},
             {"npy", w.npy},
             {"peak", {w.peak.x, w.peak.y}}});
        heatmap_lines += w.png + "\n";
      }
    }
  }
  if (json) {
    for (size_t i = 0; i < predictions->size(); ++i) {
      std::string line =
          kolo::chexnet::FormatPredictionJsonLine((*predictions)[i]);
      if (!heatmap_dir.empty()) {
        nlohmann::ordered_json object = nlohmann::ordered_json::parse(line);
        object["heatmaps"] = heatmap_json[i];
        line = object.dump();
      }
      std::printf("%s\n", line.c_str());
    }
  } else {
    if (tta == "ten-crop") {
      std::printf(
          "test-time augmentation: ten %dx%d crops of each image "
          "resized to %dx%d, probabilities averaged\n",
          (*predictor)->image_size(), (*predictor)->image_size(),
          kolo::chexnet::TenCropResizeSide((*predictor)->image_size()),
          kolo::chexnet::TenCropResizeSide((*predictor)->image_size()));
    }
    std::fputs(kolo::chexnet::FormatPredictionTable(*predictions).c_str(),
               stdout);
    if (!heatmap_lines.empty()) {
      std::printf("\nheat maps (Grad-CAM; raw maps beside them as .npy):\n%s",
                  heatmap_lines.c_str());
    }
  }
  return 0;
}

}  // namespace

// Whatever escapes Run (LibTorch throws, memory runs out) ends as a message
// and exit status 1, never as std::terminate's abort.
int main(int argc, char** argv) {
  try {
    return Run(argc, argv);
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "chexnet_predict: error: %s\n",
                 e.what_without_backtrace());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "chexnet_predict: error: %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "chexnet_predict: error: unknown exception\n");
  }
  return 1;
}
