// Grad-CAM and ten-crop test-time augmentation against independent Python
// references computed on torchvision's models with the same weights
// (export_clinical_reference.py, a CTest fixture writing into
// $KOLO_CHEXNET_REFERENCE_DIR); without them those tests skip.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "examples/chexnet/models/chexnet_model.h"
#include "examples/chexnet/models/grad_cam.h"
#include "examples/chexnet/models/load_weights.h"
#include "examples/chexnet/predict/ten_crop.h"

namespace kolo::chexnet {
namespace {

namespace fs = std::filesystem;

// Grad-CAM maps: largest difference relative to the largest reference value.
constexpr double kMapRelativeTolerance = 1e-4;
constexpr double kProbabilityTolerance = 1e-5;

std::string ReferencePath(const std::string& name) {
  const char* dir = std::getenv("KOLO_CHEXNET_REFERENCE_DIR");
  return (fs::path(dir == nullptr ? "" : dir) / name).string();
}

#define REQUIRE_CLINICAL_REFERENCE()                                       \
  do {                                                                     \
    if (!fs::exists(ReferencePath("clinical.json"))) {                     \
      GTEST_SKIP() << ReferencePath("clinical.json")                       \
                   << " is missing: it is written by tests/chexnet/"       \
                      "export_clinical_reference.py, which needs python3 " \
                      "with torch and torchvision";                        \
    }                                                                      \
  } while (0)

torch::Tensor ReadFloats(const std::string& name,
                         const std::vector<int64_t>& shape) {
  torch::Tensor tensor = torch::empty(shape, torch::kFloat32);
  std::ifstream file(ReferencePath(name), std::ios::binary);
  file.read(static_cast<char*>(tensor.data_ptr()), tensor.nbytes());
  EXPECT_EQ(file.gcount(), static_cast<std::streamsize>(tensor.nbytes()))
      << name;
  return tensor;
}

nlohmann::json Info(const std::string& arch) {
  std::ifstream file(ReferencePath("clinical.json"));
  return nlohmann::json::parse(file)[arch];
}

std::shared_ptr<ChexnetModel> LoadReferenceModel(const std::string& arch) {
  absl::StatusOr<std::shared_ptr<ChexnetModel>> model =
      MakeModel(arch, kNumFindings, /*head_bias_one=*/false);
  EXPECT_TRUE(model.ok()) << model.status();
  absl::StatusOr<LoadReport> report =
      LoadWeights(ReferencePath(arch + ".pt"), model->get());
  EXPECT_TRUE(report.ok()) << report.status();
  (*model)->eval();
  return *model;
}

class GradCamParity : public ::testing::TestWithParam<std::string> {};

TEST_P(GradCamParity, MatchesTorchvisionGradCam) {
  REQUIRE_CLINICAL_REFERENCE();
  const std::string arch = GetParam();
  const nlohmann::json info = Info(arch);
  const auto input_shape =
      info["gradcam_input_shape"].get<std::vector<int64_t>>();
  const auto maps_shape =
      info["gradcam_maps_shape"].get<std::vector<int64_t>>();
  std::shared_ptr<ChexnetModel> model = LoadReferenceModel(arch);
  const torch::Tensor image =
      ReadFloats("gradcam_" + arch + "_input.bin", input_shape);
  std::vector<int> classes(kNumFindings);
  for (int c = 0; c < kNumFindings; ++c) classes[c] = c;
  const GradCamResult cam = ComputeGradCam(*model, image, classes);

  const torch::Tensor reference_maps =
      ReadFloats("gradcam_" + arch + "_maps.bin", maps_shape);
  ASSERT_EQ(cam.maps.sizes(), reference_maps.sizes());
  const double scale = reference_maps.max().item<double>();
  ASSERT_GT(scale, 0) << "the reference maps are all zero";
  const double map_difference =
      (cam.maps - reference_maps).abs().max().item<double>() / scale;
  const int64_t side = input_shape[2];
  const torch::Tensor upsampled = UpsampleMaps(cam.maps, side, side);
  const torch::Tensor reference_upsampled = ReadFloats(
      "gradcam_" + arch + "_upsampled.bin", {kNumFindings, side, side});
  const double upsampled_difference =
      (upsampled - reference_upsampled).abs().max().item<double>() / scale;
  const double probability_difference =
      (cam.probabilities -
       ReadFloats("gradcam_" + arch + "_probabilities.bin", {kNumFindings}))
          .abs()
          .max()
          .item<double>();
  std::cout << arch << " Grad-CAM vs torchvision (" << maps_shape[1] << "x"
            << maps_shape[2] << " maps, " << info["nonzero_maps"]
            << " of 14 non-zero): max abs difference / max value: maps "
            << map_difference << ", upsampled to " << side << "x" << side << " "
            << upsampled_difference << "; probabilities "
            << probability_difference << "\n";
  EXPECT_LE(map_difference, kMapRelativeTolerance);
  EXPECT_LE(upsampled_difference, kMapRelativeTolerance);
  EXPECT_LE(probability_difference, kProbabilityTolerance);
  EXPECT_GE(info["nonzero_maps"].get<int>(), 10)
      << "too few non-zero maps for the comparison to mean much";
}

class TenCropParity : public ::testing::TestWithParam<std::string> {};

TEST_P(TenCropParity, MatchesTorchvisionTenCrop) {
  REQUIRE_CLINICAL_REFERENCE();
  const std::string arch = GetParam();
  const nlohmann::json info = Info(arch);
  std::shared_ptr<ChexnetModel> model = LoadReferenceModel(arch);
  const int crop = info["tencrop_crop"];
  const torch::Tensor images =
      ReadFloats("tencrop_" + arch + "_input.bin",
                 info["tencrop_input_shape"].get<std::vector<int64_t>>());
  const torch::Tensor probabilities =
      TenCropProbabilities(*model, images, crop);
  const torch::Tensor reference = ReadFloats(
      "tencrop_" + arch + "_probabilities.bin", {images.size(0), kNumFindings});
  const double difference =
      (probabilities - reference).abs().max().item<double>();
  std::cout << arch << " ten-crop vs torchvision TenCrop: max abs "
            << "probability difference " << difference << "\n";
  EXPECT_LE(difference, kProbabilityTolerance);
}

INSTANTIATE_TEST_SUITE_P(Models, GradCamParity,
                         ::testing::Values("densenet121", "vgg16"));
INSTANTIATE_TEST_SUITE_P(Models, TenCropParity,
                         ::testing::Values("densenet121", "vgg16"));

TEST(TenCrop, CropsInTorchvisionOrder) {
  // One 1-channel 5x5 image whose pixels are their own index.
  const torch::Tensor image =
      torch::arange(25, torch::kFloat32).view({1, 1, 5, 5});
  const torch::Tensor crops = TenCrop(image, 2);
  ASSERT_EQ(crops.sizes(), (std::vector<int64_t>{10, 1, 2, 2}));
  // Top-left values of: tl, tr, bl, br, centre (offset round(1.5) = 2).
  const float expected_first[5] = {0, 3, 15, 18, 12};
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(crops[i][0][0][0].item<float>(), expected_first[i]) << i;
    // The mirrored image's crops: row 0 of the flip is 4 3 2 1 0.
    EXPECT_EQ(crops[5 + i][0][0][0].item<float>(),
              torch::flip(image, {3})
                  .narrow(2, i == 2 || i == 3 ? 3 : (i == 4 ? 2 : 0), 1)
                  .narrow(3, i == 1 || i == 3 ? 3 : (i == 4 ? 2 : 0), 1)
                  .item<float>())
        << i;
  }
  EXPECT_EQ(TenCropResizeSide(224), 256);
  EXPECT_EQ(TenCropResizeSide(64), 73);
}

}  // namespace
}  // namespace kolo::chexnet
