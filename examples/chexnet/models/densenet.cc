// DenseNet-121 as torchvision builds it; see densenet.h.
#include "examples/chexnet/models/densenet.h"

#include <torch/nn/functional/activation.h>
#include <torch/nn/functional/pooling.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/pooling.h>
#include <torch/utils.h>

#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "examples/chexnet/models/layers.h"

namespace kolo {
namespace chexnet {
namespace {

constexpr int64_t kGrowthRate = 32;
constexpr int64_t kBottleneckWidth = 4;  // torchvision's bn_size
constexpr int64_t kInitialFeatures = 64;
constexpr int64_t kBlockLayers[] = {6, 12, 24, 16};

torch::nn::Conv2d Conv(int64_t in, int64_t out, int64_t kernel, int64_t stride,
                       int64_t padding) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, kernel)
                               .stride(stride)
                               .padding(padding)
                               .bias(false));
}

// torchvision's _DenseLayer: BN-ReLU-Conv1x1 bottleneck, then BN-ReLU-Conv3x3
// producing kGrowthRate new feature maps from all earlier ones. A Sequential
// (norm1, relu1, conv1, norm2, relu2, conv2: torchvision's names) applied to
// their concatenation: forward() reaches the layers through the module tree
// only, so that they can be swapped, e.g. by
// kolo::torch::convert_sync_batchnorm (a member calling a layer directly would
// keep calling the old one).
class DenseLayerImpl : public torch::nn::SequentialImpl {
 public:
  explicit DenseLayerImpl(int64_t in_features) {
    push_back("norm1", torch::nn::BatchNorm2d(in_features));
    push_back("relu1", InplaceRelu());
    push_back("conv1",
              Conv(in_features, kBottleneckWidth * kGrowthRate, 1, 1, 0));
    push_back("norm2", torch::nn::BatchNorm2d(kBottleneckWidth * kGrowthRate));
    push_back("relu2", InplaceRelu());
    push_back("conv2",
              Conv(kBottleneckWidth * kGrowthRate, kGrowthRate, 3, 1, 1));
  }

  // earlier: the block input followed by every earlier layer's output.
  torch::Tensor forward(const std::vector<torch::Tensor>& earlier) {
    return SequentialImpl::forward(torch::cat(earlier, 1));
  }
};
TORCH_MODULE(DenseLayer);

// torchvision's _DenseBlock: layer i sees the concatenation of the block input
// and the outputs of layers 1..i-1; the block returns all of them concatenated.
class DenseBlockImpl : public torch::nn::Module {
 public:
  DenseBlockImpl(int64_t num_layers, int64_t in_features) {
    for (int64_t i = 0; i < num_layers; ++i) {
      layers_.push_back(
          register_module("denselayer" + std::to_string(i + 1),
                          DenseLayer(in_features + i * kGrowthRate)));
    }
  }

  torch::Tensor forward(torch::Tensor input) {
    return ForwardWithHook(std::move(input), {});
  }
  // forward(), calling `before_layer` (if set) with each layer before it runs.
  torch::Tensor ForwardWithHook(torch::Tensor input,
                                const ChexnetModel::BlockHook& before_layer) {
    std::vector<torch::Tensor> features{std::move(input)};
    features.reserve(layers_.size() + 1);
    for (DenseLayer& layer : layers_) {
      if (before_layer) before_layer(*layer);
      features.push_back(layer->forward(features));
    }
    return torch::cat(features, 1);
  }

 private:
  std::vector<DenseLayer> layers_;
};
TORCH_MODULE(DenseBlock);

// torchvision's _Transition (a Sequential there too): BN-ReLU-Conv1x1 halving
// the channels, then 2x2 average pooling. A subclass only to give it the
// non-template forward() that an entry of a Sequential needs.
class TransitionImpl : public torch::nn::SequentialImpl {
 public:
  TransitionImpl(int64_t in_features, int64_t out_features) {
    push_back("norm", torch::nn::BatchNorm2d(in_features));
    push_back("relu", InplaceRelu());
    push_back("conv", Conv(in_features, out_features, 1, 1, 0));
    push_back("pool",
              torch::nn::AvgPool2d(torch::nn::AvgPool2dOptions(2).stride(2)));
  }

  torch::Tensor forward(torch::Tensor input) {
    return SequentialImpl::forward(std::move(input));
  }
};
TORCH_MODULE(Transition);

}  // namespace

DenseNet121::DenseNet121(int64_t num_classes, bool head_bias_one) {
  torch::nn::Sequential features;
  features->push_back("conv0", Conv(3, kInitialFeatures, 7, 2, 3));
  features->push_back("norm0", torch::nn::BatchNorm2d(kInitialFeatures));
  features->push_back("relu0", InplaceRelu());
  features->push_back("pool0",
                      torch::nn::MaxPool2d(
                          torch::nn::MaxPool2dOptions(3).stride(2).padding(1)));
  int64_t num_features = kInitialFeatures;
  const int num_blocks = static_cast<int>(std::size(kBlockLayers));
  for (int i = 0; i < num_blocks; ++i) {
    const std::string index = std::to_string(i + 1);
    features->push_back("denseblock" + index,
                        DenseBlock(kBlockLayers[i], num_features));
    num_features += kBlockLayers[i] * kGrowthRate;
    if (i + 1 < num_blocks) {
      features->push_back("transition" + index,
                          Transition(num_features, num_features / 2));
      num_features /= 2;
    }
  }
  features->push_back("norm5", torch::nn::BatchNorm2d(num_features));
  features_ = register_module("features", features);
  classifier_ = register_module("classifier",
                                torch::nn::Linear(num_features, num_classes));

  // torchvision's initialisation; Linear weights keep their default
  // (Kaiming-uniform with a = sqrt(5)), exactly as torchvision leaves them.
  torch::NoGradGuard no_grad;
  for (const std::shared_ptr<torch::nn::Module>& module :
       modules(/*include_self=*/false)) {
    if (auto* conv = module->as<torch::nn::Conv2d>()) {
      torch::nn::init::kaiming_normal_(conv->weight);
    } else if (auto* norm = module->as<torch::nn::BatchNorm2d>()) {
      torch::nn::init::ones_(norm->weight);
      torch::nn::init::zeros_(norm->bias);
    }
  }
  torch::nn::init::constant_(classifier_->bias, head_bias_one ? 1.0 : 0.0);
}

torch::Tensor DenseNet121::forward(torch::Tensor images) {
  return LogitsFromCamFeatures(CamFeatures(std::move(images)));
}

torch::Tensor DenseNet121::CamFeatures(torch::Tensor images) {
  if (!before_block()) return features_->forward(images).relu_();
  torch::Tensor x = std::move(images);
  for (torch::nn::AnyModule& child : *features_) {
    if (auto* block = child.ptr()->as<DenseBlockImpl>()) {
      x = block->ForwardWithHook(std::move(x), before_block());
    } else {
      BeforeBlock(*child.ptr());
      x = child.forward(std::move(x));
    }
  }
  return x.relu_();
}

torch::Tensor DenseNet121::LogitsFromCamFeatures(torch::Tensor features) {
  torch::Tensor pooled =
      torch::nn::functional::adaptive_avg_pool2d(
          features, torch::nn::functional::AdaptiveAvgPool2dFuncOptions(1))
          .flatten(1);
  BeforeBlock(*classifier_);
  return classifier_->forward(pooled);
}

}  // namespace chexnet
}  // namespace kolo
