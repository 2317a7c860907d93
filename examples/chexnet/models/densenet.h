// DenseNet-121 (Huang et al. 2017) with the CheXNet head, built exactly like
// torchvision.models.densenet121(num_classes=...): growth rate 32, dense
// blocks of 6, 12, 24 and 16 layers, bottleneck width 4 x 32, 64 initial
// features, no dropout. state_dict() names match torchvision's
// (features.conv0.weight, features.denseblock1.denselayer1.norm1.weight,
// features.transition1.conv.weight, features.norm5.running_var,
// classifier.bias, ...), and so does the initialisation: Kaiming-normal
// convolutions (fan in), batch norm weight 1 and bias 0, Linear bias 0 (or 1,
// see MakeModel).
//
// forward: features -> ReLU -> global average pooling -> Linear(num_classes).
// torchvision's memory_efficient (checkpointed) variant is not provided.
#ifndef KOLO_EXAMPLES_CHEXNET_MODELS_DENSENET_H_
#define KOLO_EXAMPLES_CHEXNET_MODELS_DENSENET_H_

#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/linear.h>

#include <cstdint>
#include <string>

#include "examples/chexnet/models/chexnet_model.h"

namespace kolo {
namespace chexnet {

class DenseNet121 : public ChexnetModel {
 public:
  // REQUIRES: num_classes >= 1.
  DenseNet121(int64_t num_classes, bool head_bias_one);

  ::torch::Tensor forward(::torch::Tensor images) override;
  ::torch::Tensor CamFeatures(::torch::Tensor images) override;
  ::torch::Tensor LogitsFromCamFeatures(::torch::Tensor features) override;
  std::string arch() const override { return "densenet121"; }
  std::string head_prefix() const override { return "classifier"; }

 private:
  ::torch::nn::Sequential features_{nullptr};
  ::torch::nn::Linear classifier_{nullptr};
};

}  // namespace chexnet
}  // namespace kolo

#endif  // KOLO_EXAMPLES_CHEXNET_MODELS_DENSENET_H_
