// VGG-16 as torchvision builds it; see vgg.h.
#include "examples/chexnet/models/vgg.h"

#include <torch/nn/init.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/utils.h>

#include <memory>

#include "examples/chexnet/models/layers.h"

namespace kolo {
namespace chexnet {
namespace {

// torchvision's cfgs["D"]: output channels of each 3x3 convolution, 0 for a
// 2x2 max-pool.
constexpr int64_t kConfigD[] = {64, 64,  0,   128, 128, 0,   256, 256, 256,
                                0,  512, 512, 512, 0,   512, 512, 512, 0};
constexpr int64_t kPooledSize = 7;
constexpr int64_t kHiddenWidth = 4096;

}  // namespace

Vgg16::Vgg16(int64_t num_classes, bool head_bias_one)
    : avgpool_(torch::nn::AdaptiveAvgPool2dOptions(kPooledSize)) {
  // Unnamed Sequential children are called "0", "1", ... exactly like
  // torchvision's nn.Sequential, so ReLU and pooling layers take up indices.
  torch::nn::Sequential features;
  int64_t channels = 3;
  for (int64_t width : kConfigD) {
    if (width == 0) {
      features->push_back(
          torch::nn::MaxPool2d(torch::nn::MaxPool2dOptions(2).stride(2)));
    } else {
      features->push_back(torch::nn::Conv2d(
          torch::nn::Conv2dOptions(channels, width, 3).padding(1)));
      features->push_back(InplaceRelu());
      channels = width;
    }
  }
  features_ = register_module("features", features);
  register_module("avgpool", avgpool_);
  classifier_ = register_module(
      "classifier",
      torch::nn::Sequential(
          torch::nn::Linear(channels * kPooledSize * kPooledSize, kHiddenWidth),
          InplaceRelu(), torch::nn::Dropout(0.5),
          torch::nn::Linear(kHiddenWidth, kHiddenWidth), InplaceRelu(),
          torch::nn::Dropout(0.5),
          torch::nn::Linear(kHiddenWidth, num_classes)));

  torch::NoGradGuard no_grad;
  for (const std::shared_ptr<torch::nn::Module>& module :
       modules(/*include_self=*/false)) {
    if (auto* conv = module->as<torch::nn::Conv2d>()) {
      torch::nn::init::kaiming_normal_(conv->weight, /*a=*/0, torch::kFanOut,
                                       torch::kReLU);
      torch::nn::init::zeros_(conv->bias);
    } else if (auto* linear = module->as<torch::nn::Linear>()) {
      torch::nn::init::normal_(linear->weight, 0, 0.01);
      torch::nn::init::zeros_(linear->bias);
    }
  }
  auto* head =
      classifier_->ptr(classifier_->size() - 1)->as<torch::nn::Linear>();
  torch::nn::init::constant_(head->bias, head_bias_one ? 1.0 : 0.0);
}

torch::Tensor Vgg16::forward(torch::Tensor images) {
  return LogitsFromCamFeatures(CamFeatures(std::move(images)));
}

torch::Tensor Vgg16::CamFeatures(torch::Tensor images) {
  // Every layer but the last max-pool: the last one is the ReLU of the last
  // convolution.
  torch::Tensor x = std::move(images);
  for (auto layer = features_->begin(); layer + 1 != features_->end();
       ++layer) {
    BeforeBlock(*layer->ptr());
    x = layer->forward(x);
  }
  return x;
}

torch::Tensor Vgg16::LogitsFromCamFeatures(torch::Tensor features) {
  torch::Tensor pooled =
      avgpool_->forward((features_->end() - 1)->forward(std::move(features)));
  BeforeBlock(*classifier_);
  return classifier_->forward(pooled.flatten(1));
}

}  // namespace chexnet
}  // namespace kolo
