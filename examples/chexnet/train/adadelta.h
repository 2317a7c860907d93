// Adadelta (Zeiler 2012) for LibTorch, which ships no Adadelta before 2.x.
// The update is PyTorch's torch.optim.Adadelta, step for step:
//
//   g           = grad + weight_decay * p
//   square_avg  = rho * square_avg + (1 - rho) * g^2
//   delta       = sqrt(acc_delta + eps) / sqrt(square_avg + eps) * g
//   acc_delta   = rho * acc_delta + (1 - rho) * delta^2
//   p          -= lr * delta
//
// lr 1.0 is the original CheXNet blog's setting (Keras' Adadelta default).
// State is created (zeros) on a parameter's first step, as in PyTorch.
// save()/load() use LibTorch's optimizer archive format, which is also how
// kolo::torch::broadcast_optimizer_state sends it to other ranks.
//
// Not safe for concurrent use.
#ifndef KOLO_EXAMPLES_CHEXNET_TRAIN_ADADELTA_H_
#define KOLO_EXAMPLES_CHEXNET_TRAIN_ADADELTA_H_

#include <torch/arg.h>
#include <torch/optim/optimizer.h>
#include <torch/serialize/archive.h>
#include <torch/types.h>

#include <memory>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace kolo::chexnet {

// The key type of Optimizer::state(): the parameter's TensorImpl address as a
// string in LibTorch 1.x, the pointer itself (void*) in 2.x.
using OptimizerStateKey = std::remove_reference_t<
    decltype(std::declval<::torch::optim::Optimizer&>().state())>::key_type;

// The key of `param` in any LibTorch optimizer's state() map. (A template,
// so that only the branch for this LibTorch's key type is instantiated.)
template <typename Key = OptimizerStateKey>
Key StateKeyOf(const ::torch::Tensor& param) {
  if constexpr (std::is_same_v<Key, std::string>) {
    // What c10::guts::to_string(TensorImpl*) gives: operator<<'s text.
    std::ostringstream key;
    key << param.unsafeGetTensorImpl();
    return key.str();
  } else {
    return static_cast<Key>(param.unsafeGetTensorImpl());
  }
}

struct AdadeltaOptions
    : public ::torch::optim::OptimizerCloneableOptions<AdadeltaOptions> {
  AdadeltaOptions(double lr = 1.0);  // NOLINT: implicit as torch's options
  TORCH_ARG(double, lr) = 1.0;
  TORCH_ARG(double, rho) = 0.9;
  TORCH_ARG(double, eps) = 1e-6;
  TORCH_ARG(double, weight_decay) = 0;

 public:
  void serialize(::torch::serialize::InputArchive& archive) override;
  void serialize(::torch::serialize::OutputArchive& archive) const override;
  double get_lr() const override;
  void set_lr(const double lr) override;
};

struct AdadeltaParamState
    : public ::torch::optim::OptimizerCloneableParamState<AdadeltaParamState> {
  TORCH_ARG(int64_t, step) = 0;
  TORCH_ARG(::torch::Tensor, square_avg);
  TORCH_ARG(::torch::Tensor, acc_delta);

 public:
  void serialize(::torch::serialize::InputArchive& archive) override;
  void serialize(::torch::serialize::OutputArchive& archive) const override;
};

class Adadelta : public ::torch::optim::Optimizer {
 public:
  Adadelta(std::vector<::torch::Tensor> params, AdadeltaOptions defaults = {});

  ::torch::Tensor step(LossClosure closure = nullptr) override;
  void save(::torch::serialize::OutputArchive& archive) const override;
  void load(::torch::serialize::InputArchive& archive) override;

  // The state of `param`, or nullptr. REQUIRES: param belongs to a group.
  AdadeltaParamState* StateOf(const ::torch::Tensor& param);
};

}  // namespace kolo::chexnet

#endif  // KOLO_EXAMPLES_CHEXNET_TRAIN_ADADELTA_H_
