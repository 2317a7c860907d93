// DistributedOptimizer: gradient allreduces started from autograd hooks, so
// that communication overlaps the rest of backward (see kolo/torch.h).
//
// The hook is a post hook on each parameter's AccumulateGrad node (the node
// that writes param.grad()); it runs on the autograd engine's thread right
// after the gradient has been accumulated. The node is held here: autograd
// itself keeps only a weak reference, and a new node would have no hook.
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/optim/lbfgs.h>
#include <torch/types.h>

#include <chrono>
#include <exception>
#include <mutex>
#include <unordered_set>
#include <utility>

#include "kolo/torch.h"

namespace kolo {
namespace torch {
namespace {

int64_t SteadyNowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

class DistributedOptimizer::Impl {
 public:
  Impl(std::shared_ptr<::torch::optim::Optimizer> optimizer,
       const ::torch::OrderedDict<std::string, at::Tensor>& named_parameters,
       DistributedOptimizerOptions options);
  ~Impl();

  void OnGradientReady(size_t index);
  void Synchronize();
  void Step();
  void ZeroGrad();

  ::torch::optim::Optimizer& optimizer() { return *optimizer_; }
  const DistributedOptimizerOptions& options() const { return options_; }
  DistributedOptimizerStats stats() const {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }

 private:
  // Runs on the autograd engine's thread after `index`'s gradient was
  // accumulated.
  class GradientReadyHook : public ::torch::autograd::FunctionPostHook {
   public:
    GradientReadyHook(Impl* optimizer, size_t index)
        : optimizer_(optimizer), index_(index) {}
    ::torch::autograd::variable_list operator()(
        const ::torch::autograd::variable_list& outputs,
        const ::torch::autograd::variable_list& /*inputs*/) override {
      optimizer_->OnGradientReady(index_);
      return outputs;
    }

   private:
    Impl* optimizer_;
    size_t index_;
  };

  struct Parameter {
    std::string name;
    std::string allreduce_name;  // "grad.<parameter name>"
    at::Tensor tensor;
    std::shared_ptr<::torch::autograd::Node> accumulator;
    uintptr_t hook_key = 0;
    int passes = 0;   // backward passes seen since the last reduction
    Handle pending;   // valid while its allreduce is in flight
    at::Tensor wire;  // compressed copy of the gradient, if compressing
  };

  // Starts the allreduce of `parameter`'s gradient. REQUIRES: mu_ held,
  // grad defined.
  void EnqueueLocked(Parameter& parameter, bool from_hook);

  std::shared_ptr<::torch::optim::Optimizer> optimizer_;
  const DistributedOptimizerOptions options_;
  AllreduceOptions allreduce_options_;

  mutable std::mutex mu_;
  std::vector<Parameter> parameters_;  // guarded by mu_ (after construction)
  bool synchronized_ = false;          // guarded by mu_
  bool step_has_allreduces_ = false;   // guarded by mu_
  DistributedOptimizerStats stats_;    // guarded by mu_
};

DistributedOptimizer::Impl::Impl(
    std::shared_ptr<::torch::optim::Optimizer> optimizer,
    const ::torch::OrderedDict<std::string, at::Tensor>& named_parameters,
    DistributedOptimizerOptions options)
    : optimizer_(std::move(optimizer)), options_(options) {
  TORCH_CHECK(optimizer_ != nullptr,
              "kolo: DistributedOptimizer needs an optimizer");
  TORCH_CHECK(dynamic_cast<::torch::optim::LBFGS*>(optimizer_.get()) == nullptr,
              "kolo: DistributedOptimizer does not support LBFGS: it "
              "re-evaluates the loss inside step(), so gradients would be "
              "computed without being reduced across ranks");
  TORCH_CHECK(options_.backward_passes_per_step >= 1,
              "kolo: backward_passes_per_step must be at least 1, got ",
              options_.backward_passes_per_step);
  TORCH_CHECK(
      options_.op == ReduceOp::kAverage || options_.op == ReduceOp::kSum,
      "kolo: DistributedOptimizer reduces gradients with average or sum, "
      "not ",
      ReduceOpName(options_.op));
  TORCH_CHECK(options_.gradient_predivide_factor > 0,
              "kolo: gradient_predivide_factor must be positive, got ",
              options_.gradient_predivide_factor);
  TORCH_CHECK(options_.gradient_predivide_factor == 1.0 ||
                  options_.op == ReduceOp::kAverage,
              "kolo: gradient_predivide_factor applies to the average only");
  allreduce_options_.op = options_.op;
  // With kAverage the runtime divides the sum by size: the result is
  // (f / size) * sum(grad / f).
  allreduce_options_.prescale_factor = 1.0 / options_.gradient_predivide_factor;
  allreduce_options_.postscale_factor = options_.gradient_predivide_factor;

  std::unordered_set<const void*> named;
  for (const auto& item : named_parameters) {
    const at::Tensor& tensor = item.value();
    if (!tensor.requires_grad()) continue;
    TORCH_CHECK(tensor.is_leaf(), "kolo: parameter '", item.key(),
                "' is not a leaf tensor");
    // A parameter shared under two names is reduced once.
    if (!named.insert(tensor.unsafeGetTensorImpl()).second) continue;
    Parameter parameter;
    parameter.name = item.key();
    parameter.allreduce_name = "grad." + item.key();
    parameter.tensor = tensor;
    parameters_.push_back(std::move(parameter));
  }
  for (const auto& group : optimizer_->param_groups()) {
    for (const at::Tensor& tensor : group.params()) {
      TORCH_CHECK(!tensor.requires_grad() ||
                      named.count(tensor.unsafeGetTensorImpl()) != 0,
                  "kolo: the optimizer has a parameter (shape ", tensor.sizes(),
                  ") that is not in named_parameters; its gradient would "
                  "not be reduced across ranks");
    }
  }
  for (size_t i = 0; i < parameters_.size(); ++i) {
    Parameter& parameter = parameters_[i];
    parameter.accumulator =
        ::torch::autograd::impl::grad_accumulator(parameter.tensor);
    TORCH_CHECK(parameter.accumulator != nullptr,
                "kolo: no gradient accumulator for parameter '",
                parameter.allreduce_name, "'");
    parameter.hook_key = parameter.accumulator->add_post_hook(
        std::make_unique<GradientReadyHook>(this, i));
  }
}

DistributedOptimizer::Impl::~Impl() {
  for (Parameter& parameter : parameters_) {
    parameter.accumulator->del_post_hook(parameter.hook_key);
  }
  // Pending handles, if any, wait for their allreduces as they are destroyed.
}

void DistributedOptimizer::Impl::EnqueueLocked(Parameter& parameter,
                                               bool from_hook) {
  const at::Tensor& grad = parameter.tensor.grad();
  at::Tensor wire = grad;
  if (options_.compression == Compression::kFp16) {
    wire = grad.to(at::kHalf);
  } else if (options_.compression == Compression::kBf16) {
    wire = grad.to(at::kBFloat16);
  }
  parameter.wire = wire;
  parameter.pending =
      allreduce_async_(wire, parameter.allreduce_name, allreduce_options_);
  if (!step_has_allreduces_) {
    step_has_allreduces_ = true;
    stats_.first_enqueue_ns = SteadyNowNs();
  }
  (from_hook ? stats_.allreduces_from_hooks
             : stats_.allreduces_from_synchronize)++;
}

void DistributedOptimizer::Impl::OnGradientReady(size_t index) {
  std::lock_guard<std::mutex> lock(mu_);
  Parameter& parameter = parameters_[index];
  TORCH_CHECK(!parameter.pending.valid(), "kolo: the gradient of '",
              parameter.name, "' was computed more than ",
              options_.backward_passes_per_step,
              " time(s) (backward_passes_per_step) before step() or "
              "synchronize()");
  synchronized_ = false;
  if (++parameter.passes < options_.backward_passes_per_step) return;
  EnqueueLocked(parameter, /*from_hook=*/true);
}

void DistributedOptimizer::Impl::Synchronize() {
  std::vector<std::pair<Handle, Parameter*>> in_flight;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Already reduced, and no backward since: reducing again would apply the
    // reduction twice.
    if (synchronized_) return;
    for (Parameter& parameter : parameters_) {
      if (parameter.pending.valid()) continue;
      if (!parameter.tensor.grad().defined()) {
        parameter.tensor.mutable_grad() = at::zeros_like(parameter.tensor);
      }
      EnqueueLocked(parameter, /*from_hook=*/false);
    }
    for (Parameter& parameter : parameters_) {
      in_flight.emplace_back(parameter.pending, &parameter);
      parameter.pending = Handle();
      parameter.passes = 0;
    }
    step_has_allreduces_ = false;
  }
  // Wait for all, even after a failure, so that nothing is left in flight.
  std::exception_ptr first_error;
  for (auto& [handle, parameter] : in_flight) {
    try {
      handle.wait();
      if (!parameter->wire.is_same(parameter->tensor.grad())) {
        parameter->tensor.grad().copy_(parameter->wire);
      }
    } catch (...) {
      if (!first_error) first_error = std::current_exception();
    }
    parameter->wire = at::Tensor();
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    // After a failure the gradients are not (all) reduced: the next
    // synchronize() or step() must not skip them.
    synchronized_ = !first_error;
  }
  if (first_error) std::rethrow_exception(first_error);
}

void DistributedOptimizer::Impl::Step() {
  Synchronize();
  optimizer_->step();
  std::lock_guard<std::mutex> lock(mu_);
  synchronized_ = false;
  ++stats_.steps;
}

void DistributedOptimizer::Impl::ZeroGrad() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (Parameter& parameter : parameters_) {
      TORCH_CHECK(!parameter.pending.valid(),
                  "kolo: zero_grad() was called after backward() but before "
                  "step() or synchronize(): the allreduce of '",
                  parameter.allreduce_name, "' is still writing the gradient");
      parameter.passes = 0;
    }
  }
  optimizer_->zero_grad();
}

DistributedOptimizer::DistributedOptimizer(
    std::shared_ptr<::torch::optim::Optimizer> optimizer,
    const ::torch::OrderedDict<std::string, at::Tensor>& named_parameters,
    DistributedOptimizerOptions options)
    : impl_(std::make_unique<Impl>(std::move(optimizer), named_parameters,
                                   options)) {}

DistributedOptimizer::~DistributedOptimizer() = default;
DistributedOptimizer::DistributedOptimizer(DistributedOptimizer&&) noexcept =
    default;
DistributedOptimizer& DistributedOptimizer::operator=(
    DistributedOptimizer&&) noexcept = default;

void DistributedOptimizer::synchronize() { impl_->Synchronize(); }
void DistributedOptimizer::step() { impl_->Step(); }
void DistributedOptimizer::zero_grad() { impl_->ZeroGrad(); }
::torch::optim::Optimizer& DistributedOptimizer::optimizer() {
  return impl_->optimizer();
}
const DistributedOptimizerOptions& DistributedOptimizer::options() const {
  return impl_->options();
}
DistributedOptimizerStats DistributedOptimizer::stats() const {
  return impl_->stats();
}

}  // namespace torch
}  // namespace kolo
