// Test-time augmentation by ten crops, as the reference PyTorch CheXNet
// reimplementation evaluates: resize to 256, take torchvision's TenCrop(224)
// (the four corners and the centre, and the same five of the mirrored image)
// and average the ten probability vectors. For a model input side S the
// resize side is round(S * 256 / 224), so 224 -> 256 and 64 -> 73.
#ifndef KOLO_EXAMPLES_CHEXNET_PREDICT_TEN_CROP_H_
#define KOLO_EXAMPLES_CHEXNET_PREDICT_TEN_CROP_H_

#include <torch/types.h>

#include "examples/chexnet/models/chexnet_model.h"

namespace kolo::chexnet {

inline constexpr int kTenCrops = 10;

// The side images are resized to before cropping `crop`-sided crops.
int TenCropResizeSide(int crop);

// images [B, 3, R, R] -> [B * 10, 3, crop, crop]: for each image in turn,
// torchvision's five_crop order (top-left, top-right, bottom-left,
// bottom-right, centre; the centre's offset rounds half to even, as Python's
// round()) and then the same crops of the mirrored image.
// REQUIRES: crop <= R.
::torch::Tensor TenCrop(const ::torch::Tensor& images, int crop);

// Per-finding probabilities [B, num_classes] with ten-crop averaging:
// mean over the crops of sigmoid(model(crop)), without autograd. The model
// must be in eval mode; it runs on images' device.
::torch::Tensor TenCropProbabilities(ChexnetModel& model,
                                     const ::torch::Tensor& images, int crop);

}  // namespace kolo::chexnet

#endif  // KOLO_EXAMPLES_CHEXNET_PREDICT_TEN_CROP_H_
