// DynamicLossScaler (see loss_scaler.h).
#include "examples/chexnet/train/loss_scaler.h"

#include <torch/torch.h>

#include <algorithm>
#include <utility>

namespace kolo::chexnet {

DynamicLossScaler::DynamicLossScaler(LossScalerOptions options,
                                     std::function<bool(bool)> any_rank)
    : options_(options),
      any_rank_(std::move(any_rank)),
      scale_(options.initial_scale) {}

::torch::Tensor DynamicLossScaler::Scale(const ::torch::Tensor& loss) const {
  return loss * scale_;
}

bool DynamicLossScaler::UnscaleOrSkip(
    const std::vector<::torch::Tensor>& params) {
  ::torch::NoGradGuard no_grad;
  // One flag per gradient, stacked on the gradients' device: a single
  // device-to-host copy for the whole check.
  std::vector<::torch::Tensor> finite;
  for (const ::torch::Tensor& param : params) {
    const ::torch::Tensor& grad = param.grad();
    if (grad.defined()) finite.push_back(::torch::isfinite(grad).all());
  }
  const bool local_overflow =
      !finite.empty() && !::torch::stack(finite).all().item<bool>();
  if (any_rank_(local_overflow)) {
    scale_ = std::max(options_.min_scale, scale_ * options_.backoff_factor);
    good_steps_ = 0;
    ++skipped_;
    return false;
  }
  const double inverse = 1.0 / scale_;
  for (const ::torch::Tensor& param : params) {
    ::torch::Tensor grad = param.grad();
    if (grad.defined()) grad.mul_(inverse);
  }
  if (++good_steps_ >= options_.growth_interval) {
    scale_ *= options_.growth_factor;
    good_steps_ = 0;
  }
  return true;
}

}  // namespace kolo::chexnet
