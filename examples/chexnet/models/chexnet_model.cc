// The model factory and the prediction helper shared by both architectures.
#include "examples/chexnet/models/chexnet_model.h"

#include <torch/utils.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "examples/chexnet/models/densenet.h"
#include "examples/chexnet/models/vgg.h"

namespace kolo {
namespace chexnet {

torch::Tensor ChexnetModel::Predict(const torch::Tensor& images) {
  torch::NoGradGuard no_grad;
  return torch::sigmoid(forward(images));
}

absl::StatusOr<std::shared_ptr<ChexnetModel>> MakeModel(const std::string& arch,
                                                        int64_t num_classes,
                                                        bool head_bias_one) {
  if (num_classes < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_classes must be at least 1, got ", num_classes));
  }
  if (arch == "densenet121") {
    return std::make_shared<DenseNet121>(num_classes, head_bias_one);
  }
  if (arch == "vgg16") {
    return std::make_shared<Vgg16>(num_classes, head_bias_one);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown architecture \"", arch, "\" (expected densenet121 or vgg16)"));
}

}  // namespace chexnet
}  // namespace kolo
