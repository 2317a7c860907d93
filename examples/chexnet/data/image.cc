// Resize, normalisation, flip and the model-input loading pipeline.
#include "examples/chexnet/data/image.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "examples/chexnet/data/image_file.h"

namespace kolo::chexnet {
namespace {

// Source taps of one output coordinate: out = (1 - w) * in[i0] + w * in[i1].
struct Tap {
  int i0;
  int i1;
  float w;
};

std::vector<Tap> Taps(int in_size, int out_size) {
  std::vector<Tap> taps(out_size);
  const float scale = static_cast<float>(in_size) / out_size;
  for (int o = 0; o < out_size; ++o) {
    const float src = std::max(0.0f, (o + 0.5f) * scale - 0.5f);
    const int i0 = std::min(static_cast<int>(src), in_size - 1);
    const int i1 = std::min(i0 + 1, in_size - 1);
    taps[o] = {i0, i1, src - i0};
  }
  return taps;
}

}  // namespace

Image ResizeBilinear(const Image& image, int out_height, int out_width) {
  if (image.height == out_height && image.width == out_width) return image;
  const std::vector<Tap> rows = Taps(image.height, out_height);
  const std::vector<Tap> cols = Taps(image.width, out_width);
  Image out(image.channels, out_height, out_width);
  for (int c = 0; c < image.channels; ++c) {
    for (int y = 0; y < out_height; ++y) {
      const Tap& r = rows[y];
      const float* row0 =
          &image.pixels[(static_cast<size_t>(c) * image.height + r.i0) *
                        image.width];
      const float* row1 =
          &image.pixels[(static_cast<size_t>(c) * image.height + r.i1) *
                        image.width];
      float* dst = &out.at(c, y, 0);
      for (int x = 0; x < out_width; ++x) {
        const Tap& t = cols[x];
        const float top = row0[t.i0] + t.w * (row0[t.i1] - row0[t.i0]);
        const float bottom = row1[t.i0] + t.w * (row1[t.i1] - row1[t.i0]);
        dst[x] = top + r.w * (bottom - top);
      }
    }
  }
  return out;
}

void NormalizeImageNet(Image* image) {
  const size_t plane = static_cast<size_t>(image->height) * image->width;
  for (int c = 0; c < 3; ++c) {
    const float mean = kImageNetMean[c];
    const float inv_std = 1.0f / kImageNetStd[c];
    float* p = image->pixels.data() + c * plane;
    for (size_t i = 0; i < plane; ++i) p[i] = (p[i] - mean) * inv_std;
  }
}

void FlipHorizontal(Image* image) {
  for (int c = 0; c < image->channels; ++c) {
    for (int y = 0; y < image->height; ++y) {
      float* row = &image->at(c, y, 0);
      std::reverse(row, row + image->width);
    }
  }
}

absl::StatusOr<Image> LoadModelInput(const std::string& path,
                                     const ImageOptions& options) {
  absl::StatusOr<Image> image = ReadImage(path);
  if (!image.ok()) return image.status();
  Image input =
      image->height == options.image_size && image->width == options.image_size
          ? *std::move(image)
          : ResizeBilinear(*image, options.image_size, options.image_size);
  if (options.normalize) NormalizeImageNet(&input);
  return input;
}

}  // namespace kolo::chexnet
