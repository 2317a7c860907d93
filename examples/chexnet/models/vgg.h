// VGG-16 (Simonyan & Zisserman 2015, configuration D), the second
// architecture of the CheXNet study, built exactly like
// torchvision.models.vgg16(num_classes=...): thirteen 3x3 convolutions with
// ReLU and five max-pools (features.0 ... features.30), adaptive average
// pooling to 7x7, and the classifier MLP Linear(25088, 4096) - ReLU - Dropout
// - Linear(4096, 4096) - ReLU - Dropout - Linear(4096, num_classes)
// (classifier.0, classifier.3, classifier.6). Initialisation as torchvision:
// Kaiming-normal convolutions (fan out, ReLU) with bias 0, Linear weights
// N(0, 0.01) with bias 0 (the last one 1, see MakeModel).
//
// Only the last Linear layer is replaced by the 14-finding head; torchvision's
// 7x7 pooling and MLP are kept, so every ImageNet VGG-16 weight except that
// layer transfers (a global-pooling head would drop the pretrained MLP). The
// 7x7 pooling works for any input of 32x32 pixels or more.
#ifndef KOLO_EXAMPLES_CHEXNET_MODELS_VGG_H_
#define KOLO_EXAMPLES_CHEXNET_MODELS_VGG_H_

#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/pooling.h>

#include <cstdint>
#include <string>

#include "examples/chexnet/models/chexnet_model.h"

namespace kolo {
namespace chexnet {

class Vgg16 : public ChexnetModel {
 public:
  // REQUIRES: num_classes >= 1.
  Vgg16(int64_t num_classes, bool head_bias_one);

  ::torch::Tensor forward(::torch::Tensor images) override;
  ::torch::Tensor CamFeatures(::torch::Tensor images) override;
  ::torch::Tensor LogitsFromCamFeatures(::torch::Tensor features) override;
  std::string arch() const override { return "vgg16"; }
  std::string head_prefix() const override { return "classifier.6"; }

 private:
  ::torch::nn::Sequential features_{nullptr};
  ::torch::nn::AdaptiveAvgPool2d avgpool_;
  ::torch::nn::Sequential classifier_{nullptr};
};

}  // namespace chexnet
}  // namespace kolo

#endif  // KOLO_EXAMPLES_CHEXNET_MODELS_VGG_H_
