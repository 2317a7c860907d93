// Adadelta: see adadelta.h for the update.
#include "examples/chexnet/train/adadelta.h"

#include <c10/util/irange.h>
#include <torch/optim/serialize.h>

#include <string>

namespace kolo::chexnet {

AdadeltaOptions::AdadeltaOptions(double lr) : lr_(lr) {}

void AdadeltaOptions::serialize(
    ::torch::serialize::OutputArchive& archive) const {
  archive.write("lr", c10::IValue(lr()));
  archive.write("rho", c10::IValue(rho()));
  archive.write("eps", c10::IValue(eps()));
  archive.write("weight_decay", c10::IValue(weight_decay()));
}

void AdadeltaOptions::serialize(::torch::serialize::InputArchive& archive) {
  c10::IValue value;
  archive.read("lr", value);
  lr(value.toDouble());
  archive.read("rho", value);
  rho(value.toDouble());
  archive.read("eps", value);
  eps(value.toDouble());
  archive.read("weight_decay", value);
  weight_decay(value.toDouble());
}

double AdadeltaOptions::get_lr() const { return lr(); }
void AdadeltaOptions::set_lr(const double lr) { this->lr(lr); }

void AdadeltaParamState::serialize(
    ::torch::serialize::OutputArchive& archive) const {
  archive.write("step", c10::IValue(step()));
  archive.write("square_avg", square_avg(), /*is_buffer=*/true);
  archive.write("acc_delta", acc_delta(), /*is_buffer=*/true);
}

void AdadeltaParamState::serialize(::torch::serialize::InputArchive& archive) {
  c10::IValue value;
  archive.read("step", value);
  step(value.toInt());
  ::torch::Tensor tensor;
  archive.read("square_avg", tensor, /*is_buffer=*/true);
  square_avg(tensor);
  ::torch::Tensor delta;
  archive.read("acc_delta", delta, /*is_buffer=*/true);
  acc_delta(delta);
}

Adadelta::Adadelta(std::vector<::torch::Tensor> params,
                   AdadeltaOptions defaults)
    : ::torch::optim::Optimizer(
          {::torch::optim::OptimizerParamGroup(std::move(params))},
          std::make_unique<AdadeltaOptions>(defaults)) {
  TORCH_CHECK(defaults.lr() >= 0, "Adadelta: invalid learning rate ",
              defaults.lr());
  TORCH_CHECK(defaults.rho() >= 0 && defaults.rho() <= 1,
              "Adadelta: invalid rho ", defaults.rho());
  TORCH_CHECK(defaults.eps() >= 0, "Adadelta: invalid eps ", defaults.eps());
}

AdadeltaParamState* Adadelta::StateOf(const ::torch::Tensor& param) {
  auto it = state_.find(StateKeyOf(param));
  if (it == state_.end()) return nullptr;
  return static_cast<AdadeltaParamState*>(it->second.get());
}

::torch::Tensor Adadelta::step(LossClosure closure) {
  ::torch::NoGradGuard no_grad;
  ::torch::Tensor loss = {};
  if (closure != nullptr) {
    at::AutoGradMode enable_grad(true);
    loss = closure();
  }
  for (auto& group : param_groups_) {
    const auto& options = static_cast<const AdadeltaOptions&>(group.options());
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      ::torch::Tensor grad = p.grad();
      if (options.weight_decay() != 0) {
        grad = grad.add(p, options.weight_decay());
      }
      const OptimizerStateKey key = StateKeyOf(p);
      if (state_.count(key) == 0) {
        auto state = std::make_unique<AdadeltaParamState>();
        state->square_avg(
            ::torch::zeros_like(p, ::torch::MemoryFormat::Preserve));
        state->acc_delta(
            ::torch::zeros_like(p, ::torch::MemoryFormat::Preserve));
        state_[key] = std::move(state);
      }
      auto& state = static_cast<AdadeltaParamState&>(*state_[key]);
      state.step(state.step() + 1);
      const double rho = options.rho();
      const double eps = options.eps();
      ::torch::Tensor& square_avg = state.square_avg();
      ::torch::Tensor& acc_delta = state.acc_delta();
      square_avg.mul_(rho).addcmul_(grad, grad, 1 - rho);
      ::torch::Tensor std = square_avg.add(eps).sqrt_();
      ::torch::Tensor delta = acc_delta.add(eps).sqrt_().div_(std).mul_(grad);
      acc_delta.mul_(rho).addcmul_(delta, delta, 1 - rho);
      p.add_(delta, -options.lr());
    }
  }
  return loss;
}

void Adadelta::save(::torch::serialize::OutputArchive& archive) const {
  ::torch::optim::serialize<AdadeltaParamState, AdadeltaOptions>(archive,
                                                                 *this);
}

void Adadelta::load(::torch::serialize::InputArchive& archive) {
  ::torch::optim::serialize<AdadeltaParamState, AdadeltaOptions>(archive,
                                                                 *this);
}

}  // namespace kolo::chexnet
