// chexnet_predict: per-finding probabilities for chest X-ray PNGs.
// Exit status: 0 on success, 2 for a bad command line, 1 when the model or an
// image cannot be read (the message names the file) or anything else fails.
#include <c10/util/Exception.h>
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <exception>
#include <string>
#include <thread>
#include <vector>

#include "examples/chexnet/models/device.h"
#include "examples/chexnet/predict/predictor.h"

namespace {

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

  CLI::App app(
      "Prints the probability of each of the 14 ChestX-ray14 findings for\n"
      "each IMAGE (PNG: grayscale, RGB, RGBA or 16-bit), as a table or as\n"
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
  app.add_option("images", images, "PNG files")->required();
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
  absl::StatusOr<std::vector<kolo::chexnet::Prediction>> predictions =
      (*predictor)->Predict(images, batch_size);
  if (!predictions.ok()) {
    std::fprintf(stderr, "chexnet_predict: error: %s\n",
                 std::string(predictions.status().message()).c_str());
    return 1;
  }
  if (json) {
    for (const auto& p : *predictions) {
      std::printf("%s\n", kolo::chexnet::FormatPredictionJsonLine(p).c_str());
    }
  } else {
    std::fputs(kolo::chexnet::FormatPredictionTable(*predictions).c_str(),
               stdout);
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
