// Layer helpers shared by the model definitions (densenet.cc, vgg.cc).
#ifndef KOLO_EXAMPLES_CHEXNET_MODELS_LAYERS_H_
#define KOLO_EXAMPLES_CHEXNET_MODELS_LAYERS_H_

#include <torch/nn/modules/activation.h>

namespace kolo::chexnet {

// torchvision's nn.ReLU(inplace=True).
inline ::torch::nn::ReLU InplaceRelu() {
  return ::torch::nn::ReLU(::torch::nn::ReLUOptions().inplace(true));
}

}  // namespace kolo::chexnet

#endif  // KOLO_EXAMPLES_CHEXNET_MODELS_LAYERS_H_
