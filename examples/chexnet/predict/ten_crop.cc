// Ten-crop test-time augmentation; see ten_crop.h.
#include "examples/chexnet/predict/ten_crop.h"

#include <torch/torch.h>

#include <cmath>
#include <vector>

namespace kolo::chexnet {

int TenCropResizeSide(int crop) {
  return static_cast<int>(std::lround(crop * 256.0 / 224.0));
}

torch::Tensor TenCrop(const torch::Tensor& images, int crop) {
  const int64_t height = images.size(2), width = images.size(3);
  // std::nearbyint rounds half to even in the default rounding mode, as
  // torchvision's int(round((H - h) / 2.0)).
  const int64_t center_top =
      static_cast<int64_t>(std::nearbyint((height - crop) / 2.0));
  const int64_t center_left =
      static_cast<int64_t>(std::nearbyint((width - crop) / 2.0));
  const int64_t corners[5][2] = {{0, 0},
                                 {0, width - crop},
                                 {height - crop, 0},
                                 {height - crop, width - crop},
                                 {center_top, center_left}};
  auto five = [&](const torch::Tensor& batch) {
    std::vector<torch::Tensor> crops;
    for (const auto& corner : corners) {
      crops.push_back(
          batch.narrow(2, corner[0], crop).narrow(3, corner[1], crop));
    }
    return torch::stack(crops, 1);  // [B, 5, 3, crop, crop]
  };
  const torch::Tensor all =
      torch::cat({five(images), five(images.flip({3}))}, 1);
  return all.reshape({-1, images.size(1), crop, crop}).contiguous();
}

torch::Tensor TenCropProbabilities(ChexnetModel& model,
                                   const torch::Tensor& images, int crop) {
  torch::NoGradGuard no_grad;
  const torch::Tensor probabilities =
      torch::sigmoid(model.forward(TenCrop(images, crop)));
  return probabilities.view({images.size(0), kTenCrops, -1}).mean(1);
}

}  // namespace kolo::chexnet
