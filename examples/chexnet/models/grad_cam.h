// Grad-CAM (Selvaraju et al. 2017): where in the image a finding's logit
// comes from.
//
// For finding c and the feature maps A^k = CamFeatures(image) (see
// chexnet_model.h: DenseNet-121's last dense block, VGG-16's last
// convolution), the map is
//   L^c = ReLU(sum_k alpha_k^c A^k),  alpha_k^c = mean_ij d logit_c / d A^k_ij
// at the feature maps' resolution (1/32 of the input for DenseNet-121, 1/16
// for VGG-16). For DenseNet-121, whose head is global average pooling and
// one Linear layer, alpha_k^c is the head's weight w_ck divided by the number
// of positions, so L^c is also the class activation map (CAM) of the CheXNet
// paper's figures, up to that constant.
//
// Gradients are taken with respect to the feature maps only: the features
// are computed once without autograd and the head runs with it, so a map
// costs one forward pass plus a backward pass through the head.
#ifndef KOLO_EXAMPLES_CHEXNET_MODELS_GRAD_CAM_H_
#define KOLO_EXAMPLES_CHEXNET_MODELS_GRAD_CAM_H_

#include <torch/types.h>

#include <vector>

#include "examples/chexnet/models/chexnet_model.h"

namespace kolo::chexnet {

struct GradCamResult {
  // sigmoid of the logits, [num_classes] float32 on the CPU.
  ::torch::Tensor probabilities;
  // [classes.size(), h, w] float32 on the CPU, in the order asked for;
  // non-negative, not normalised (all zero where no feature map pushes the
  // logit up).
  ::torch::Tensor maps;
};

// Grad-CAM of one image, image: [3, S, S] or [1, 3, S, S], preprocessed as
// for forward(). The model must be in eval mode (batch-norm statistics, no
// dropout); it runs on the device `image` is on.
// REQUIRES: every entry of `classes` in [0, num_classes).
GradCamResult ComputeGradCam(ChexnetModel& model, const ::torch::Tensor& image,
                             const std::vector<int>& classes);

// maps [K, h, w] resampled bilinearly (half-pixel centres, as
// torch.nn.functional.interpolate(mode="bilinear", align_corners=False)) to
// [K, height, width].
::torch::Tensor UpsampleMaps(const ::torch::Tensor& maps, int height,
                             int width);

}  // namespace kolo::chexnet

#endif  // KOLO_EXAMPLES_CHEXNET_MODELS_GRAD_CAM_H_
