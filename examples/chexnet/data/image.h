// Float images and the preprocessing CheXNet applies to every input: decode
// to three channels in [0, 1], resize to the model's square input, ImageNet
// normalisation and (training only) horizontal flips.
#ifndef KOLO_EXAMPLES_CHEXNET_DATA_IMAGE_H_
#define KOLO_EXAMPLES_CHEXNET_DATA_IMAGE_H_

#include <array>
#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace kolo::chexnet {

// A float image in planar layout (channel, row, column), the layout of one
// [C, H, W] slice of a model input tensor. Plain value type.
struct Image {
  int channels = 0;
  int height = 0;
  int width = 0;
  std::vector<float> pixels;  // channels * height * width values.

  Image() = default;
  Image(int c, int h, int w)
      : channels(c),
        height(h),
        width(w),
        pixels(static_cast<size_t>(c) * h * w, 0.0f) {}

  float& at(int c, int y, int x) {
    return pixels[(static_cast<size_t>(c) * height + y) * width + x];
  }
  float at(int c, int y, int x) const {
    return pixels[(static_cast<size_t>(c) * height + y) * width + x];
  }
};

// torchvision's ImageNet statistics (RGB), used by every ImageNet-pretrained
// model including CheXNet.
inline constexpr std::array<float, 3> kImageNetMean = {0.485f, 0.456f, 0.406f};
inline constexpr std::array<float, 3> kImageNetStd = {0.229f, 0.224f, 0.225f};

// Bilinear resampling with half-pixel centres and edge clamping, the same
// sampling as torch.nn.functional.interpolate(mode="bilinear",
// align_corners=False) without antialiasing. Returns a copy when the size is
// unchanged. REQUIRES: out_height > 0, out_width > 0, image not empty.
Image ResizeBilinear(const Image& image, int out_height, int out_width);

// x -> (x - kImageNetMean[c]) / kImageNetStd[c]. REQUIRES: 3 channels.
void NormalizeImageNet(Image* image);

// Mirrors every row in place.
void FlipHorizontal(Image* image);

struct ImageOptions {
  // Side of the square model input: 224 as in CheXNet; 64-128 keeps the
  // synthetic demo fast on a CPU.
  int image_size = 224;
  // Apply NormalizeImageNet (models pretrained on ImageNet expect it).
  bool normalize = true;
};

// Reads a PNG or DICOM file (see image_file.h), resizes it to
// image_size x image_size unless it already has that size (then the pixels
// are used as decoded), and normalises it. Errors name `path`.
absl::StatusOr<Image> LoadModelInput(const std::string& path,
                                     const ImageOptions& options);

}  // namespace kolo::chexnet

#endif  // KOLO_EXAMPLES_CHEXNET_DATA_IMAGE_H_
