// Grad-CAM with LibTorch autograd; see grad_cam.h.
#include "examples/chexnet/models/grad_cam.h"

#include <torch/autograd.h>
#include <torch/nn/functional/upsampling.h>
#include <torch/utils.h>

namespace kolo::chexnet {

GradCamResult ComputeGradCam(ChexnetModel& model, const torch::Tensor& image,
                             const std::vector<int>& classes) {
  const torch::Tensor batch = image.dim() == 3 ? image.unsqueeze(0) : image;
  torch::Tensor features;
  {
    torch::NoGradGuard no_grad;
    features = model.CamFeatures(batch);
  }
  features = features.detach().requires_grad_(true);
  torch::AutoGradMode grad(true);
  const torch::Tensor logits = model.LogitsFromCamFeatures(features);

  GradCamResult result;
  result.probabilities =
      torch::sigmoid(logits.detach()[0]).to(torch::kCPU, torch::kFloat32);
  std::vector<torch::Tensor> maps;
  maps.reserve(classes.size());
  for (size_t i = 0; i < classes.size(); ++i) {
    const torch::Tensor gradient =
        torch::autograd::grad({logits[0][classes[i]]}, {features},
                              /*grad_outputs=*/{},
                              /*retain_graph=*/i + 1 < classes.size())[0];
    const torch::Tensor alpha = gradient[0].mean({1, 2}, /*keepdim=*/true);
    maps.push_back(
        torch::relu((alpha * features.detach()[0]).sum(0)).to(torch::kCPU));
  }
  result.maps = maps.empty()
                    ? torch::zeros({0, features.size(2), features.size(3)})
                    : torch::stack(maps).to(torch::kFloat32);
  return result;
}

torch::Tensor UpsampleMaps(const torch::Tensor& maps, int height, int width) {
  namespace F = torch::nn::functional;
  return F::interpolate(maps.unsqueeze(0),
                        F::InterpolateFuncOptions()
                            .size(std::vector<int64_t>{height, width})
                            .mode(torch::kBilinear)
                            .align_corners(false))[0];
}

}  // namespace kolo::chexnet
