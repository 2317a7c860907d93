// The CheXNet classifiers: an image batch in, one logit per finding out.
//
// ChexnetModel is the common base of kolo's DenseNet-121 and VGG-16. Both are
// built exactly like torchvision's models of the same name (layer structure,
// initialisation, and the parameter and buffer names of state_dict()), so a
// state_dict saved from Python loads by name (see load_weights.h). forward()
// returns logits; the sigmoid that turns them into per-finding probabilities
// is applied by the loss (binary cross-entropy with logits) or by Predict().
//
// A model is an ordinary torch::nn::Module: named_parameters(),
// named_buffers(), train()/eval() and to() behave as usual. Like every
// torch::nn::Module it is not safe for concurrent mutation; concurrent
// forward() calls in eval mode are fine.
#ifndef KOLO_EXAMPLES_CHEXNET_MODELS_CHEXNET_MODEL_H_
#define KOLO_EXAMPLES_CHEXNET_MODELS_CHEXNET_MODEL_H_

#include <torch/nn/module.h>
#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace kolo {
namespace chexnet {

// The number of findings of NIH ChestX-ray14 (CheXNet paper order).
inline constexpr int64_t kNumFindings = 14;

class ChexnetModel : public ::torch::nn::Module {
 public:
  // images: [N, 3, H, W] float, ImageNet-normalised; H and W >= 32.
  // Returns [N, num_classes] logits.
  virtual ::torch::Tensor forward(::torch::Tensor images) = 0;

  // "densenet121" or "vgg16".
  virtual std::string arch() const = 0;

  // Name prefix of the final Linear layer in state_dict() ("classifier" for
  // DenseNet-121, "classifier.6" for VGG-16). A weights file whose head has
  // another shape (an ImageNet 1000-class file) loads without it.
  virtual std::string head_prefix() const = 0;

  // forward() in two halves, split where Grad-CAM looks (grad_cam.h):
  // forward(x) == LogitsFromCamFeatures(CamFeatures(x)). The feature maps are
  // DenseNet-121's last dense block after norm5 and the ReLU (the maps the
  // classifier pools, [N, 1024, H/32, W/32]) and VGG-16's last convolution
  // after its ReLU, before the last max-pool ([N, 512, H/16, W/16]).
  virtual ::torch::Tensor CamFeatures(::torch::Tensor images) = 0;
  virtual ::torch::Tensor LogitsFromCamFeatures(::torch::Tensor features) = 0;

  // Per-finding probabilities, sigmoid(forward(images)), computed without
  // autograd. Does not switch the model to eval mode: call eval() first for
  // inference (batch norm running statistics, no dropout).
  ::torch::Tensor Predict(const ::torch::Tensor& images);

  // Called by forward() with each block of the model just before it runs
  // (DenseNet-121: each stem layer, dense layer and transition, norm5 and
  // the classifier; VGG-16: each layer of features and the classifier; in
  // forward order), e.g.
  // with kolo::torch::DistributedOptimizer::ready for its update_in_forward
  // option. Empty (the default): nothing is called.
  using BlockHook = std::function<void(const ::torch::nn::Module&)>;
  void set_before_block(BlockHook hook) { before_block_ = std::move(hook); }

 protected:
  void BeforeBlock(const ::torch::nn::Module& block) const {
    if (before_block_) before_block_(block);
  }
  const BlockHook& before_block() const { return before_block_; }

 private:
  BlockHook before_block_;
};

// Builds a freshly initialised model. arch is "densenet121" or "vgg16";
// num_classes >= 1. head_bias_one initialises the bias of the final Linear
// layer to 1 (the original Keras CheXNet setup); false uses torchvision's 0.
// Returns InvalidArgument for an unknown arch or a bad num_classes.
absl::StatusOr<std::shared_ptr<ChexnetModel>> MakeModel(
    const std::string& arch, int64_t num_classes = kNumFindings,
    bool head_bias_one = true);

}  // namespace chexnet
}  // namespace kolo

#endif  // KOLO_EXAMPLES_CHEXNET_MODELS_CHEXNET_MODEL_H_
