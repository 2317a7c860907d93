// DistributedOptimizer: gradient allreduces started from autograd hooks, so
// that communication overlaps the rest of backward (see kolo/torch.h).
//
// The hook is a post hook on each parameter's AccumulateGrad node (the node
// that writes param.grad()); it runs on the autograd engine's thread right
// after the gradient has been accumulated. The node is held here: autograd
// itself keeps only a weak reference, and a new node would have no hook.
//
// The class is also a torch::optim::Optimizer whose groups, options and state
// mirror the wrapped optimizer's; the mirror is reconciled at step(), save(),
// load() and broadcast_optimizer_state() (see kolo/torch.h).
#include <c10/util/StringUtil.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/optim/adagrad.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/lbfgs.h>
#include <torch/optim/rmsprop.h>
#include <torch/optim/sgd.h>
#include <torch/serialize/output-archive.h>
#include <torch/types.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <sstream>
#include <type_traits>
#include <typeinfo>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "kolo/torch.h"
#include "runtime/common/mutex.h"

namespace kolo {
namespace torch {
namespace {

namespace optim = ::torch::optim;

int64_t SteadyNowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The key of optim::Optimizer::state(): std::string in LibTorch 1.x, void*
// in 2.x.
using StateMap = std::remove_reference_t<
    decltype(std::declval<optim::Optimizer&>().state())>;
using StateKey = typename StateMap::key_type;

template <typename Options>
bool EqualAs(const optim::OptimizerOptions& a,
             const optim::OptimizerOptions& b) {
  return static_cast<const Options&>(a) == static_cast<const Options&>(b);
}

std::string Serialized(const optim::OptimizerOptions& options) {
  ::torch::serialize::OutputArchive archive;
  options.serialize(archive);
  std::ostringstream bytes;
  archive.save_to(bytes);
  return bytes.str();
}

// Whether two options objects hold the same values: LibTorch's operator== for
// its own optimizers, the serialized form for others.
bool SameOptions(const optim::OptimizerOptions& a,
                 const optim::OptimizerOptions& b) {
  const std::type_info& type = typeid(a);
  if (type != typeid(b)) return false;
  if (type == typeid(optim::SGDOptions)) {
    return EqualAs<optim::SGDOptions>(a, b);
  }
  if (type == typeid(optim::AdamOptions)) {
    return EqualAs<optim::AdamOptions>(a, b);
  }
  if (type == typeid(optim::AdamWOptions)) {
    return EqualAs<optim::AdamWOptions>(a, b);
  }
  if (type == typeid(optim::AdagradOptions)) {
    return EqualAs<optim::AdagradOptions>(a, b);
  }
  if (type == typeid(optim::RMSpropOptions)) {
    return EqualAs<optim::RMSpropOptions>(a, b);
  }
  return Serialized(a) == Serialized(b);
}

// What LibTorch's zero_grad() does to one parameter's gradient.
void ZeroGradient(const at::Tensor& parameter, bool set_to_none) {
  at::Tensor& grad = parameter.mutable_grad();
  if (!grad.defined()) return;
  if (set_to_none) {
    grad = at::Tensor();
  } else {
    grad.detach_();
    grad.zero_();
  }
}

const std::shared_ptr<optim::Optimizer>& CheckNotNull(
    const std::shared_ptr<optim::Optimizer>& optimizer) {
  TORCH_CHECK(optimizer != nullptr,
              "kolo: DistributedOptimizer needs an optimizer");
  return optimizer;
}

// The wrapped optimizer's groups and defaults, copied into the base class.
std::vector<optim::OptimizerParamGroup> GroupsOf(
    const std::shared_ptr<optim::Optimizer>& optimizer) {
  return CheckNotNull(optimizer)->param_groups();
}
std::unique_ptr<optim::OptimizerOptions> DefaultsOf(
    const std::shared_ptr<optim::Optimizer>& optimizer) {
  return CheckNotNull(optimizer)->defaults().clone();
}

}  // namespace

class DistributedOptimizer::Impl {
 public:
  Impl(std::shared_ptr<::torch::optim::Optimizer> optimizer,
       const ::torch::OrderedDict<std::string, at::Tensor>& named_parameters,
       DistributedOptimizerOptions options);
  ~Impl();

  void OnGradientReady(size_t index);
  // Runs before `index`'s gradient is accumulated: throws if its update is
  // still deferred (forward used the old value).
  void OnGradientArriving(size_t index);
  void Synchronize();
  // update_in_forward, instead of Synchronize() and StepWrapped(): finishes
  // the previous step's deferred updates, enqueues what the hooks did not
  // and defers every parameter's update. False (nothing done) when the
  // gradients were already synchronized: then the caller steps as usual.
  bool DeferStep();
  // Applies the deferred updates of these parameters (by TensorImpl) or of
  // all of them. Returns true when no deferred update is left (the caller
  // refreshes its view of the state).
  bool ApplyDeferred(const std::vector<const void*>& tensors);
  bool ApplyAllDeferred();
  bool deferring() const {
    MutexLock lock(&mu_);
    return owed_ > 0;
  }
  // The wrapped optimizer's step(), after Synchronize().
  void StepWrapped();
  void ZeroGrad(bool set_to_none);
  // Throws unless every parameter of `group` that requires grad has a hook.
  void CheckReduced(const optim::OptimizerParamGroup& group) const;

  ::torch::optim::Optimizer& optimizer() { return *optimizer_; }
  const DistributedOptimizerOptions& options() const { return options_; }
  DistributedOptimizerStats stats() const {
    MutexLock lock(&mu_);
    return stats_;
  }

  // What DistributedOptimizer's PushChanges and PullChanges last reconciled.
  // Used by the thread that steps.
  struct Mirror {
    // Every group's options.
    std::vector<std::unique_ptr<optim::OptimizerOptions>> options;
    // The state entries of the DistributedOptimizer's view, by key.
    std::unordered_map<StateKey, const optim::OptimizerParamState*> state;
  };
  Mirror mirror;

 private:
  // Runs on the autograd engine's thread after `index`'s gradient was
  // accumulated.
  class GradientArrivingHook : public ::torch::autograd::FunctionPreHook {
   public:
    GradientArrivingHook(Impl* optimizer, size_t index)
        : optimizer_(optimizer), index_(index) {}
    ::torch::autograd::variable_list operator()(
        const ::torch::autograd::variable_list& grads) override {
      optimizer_->OnGradientArriving(index_);
      return grads;
    }

   private:
    Impl* optimizer_;
    size_t index_;
  };
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
    // update_in_forward: step() deferred this parameter's update.
    bool owed = false;
    // zero_grad() came while owed: zero the gradient after the update.
    bool zero_after_update = false;
    bool zero_set_to_none = false;
    const ::torch::autograd::FunctionPreHook* pre_hook = nullptr;
  };

  // Waits for the allreduces of `indices` (taken out of parameters_ by the
  // caller, owed) and applies their update. Called by the stepping thread.
  void ApplyOwed(std::vector<size_t> indices, Handle* handles);

  // Starts the allreduce of `parameter`'s gradient (grad defined).
  void EnqueueLocked(Parameter& parameter, bool from_hook)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Starts the allreduce of every parameter whose hook has not fired this
  // step (unused parameters: an undefined gradient becomes zeros first).
  void EnqueueRemainingLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Overlap::kAuto: times the iteration that just ended (from the end of
  // the previous step() to the end of this one) and picks the mode of the
  // next. Called by the stepping thread after the wrapped step().
  void TuneOverlap();

  std::shared_ptr<::torch::optim::Optimizer> optimizer_;
  const DistributedOptimizerOptions options_;
  AllreduceOptions allreduce_options_;
  // The TensorImpls of the parameters that have a hook, and their index in
  // parameters_.
  std::unordered_set<const void*> reduced_;
  std::unordered_map<const void*, size_t> index_of_;

  mutable Mutex mu_;
  std::vector<Parameter> parameters_ ABSL_GUARDED_BY(mu_);
  bool synchronized_ ABSL_GUARDED_BY(mu_) = false;
  bool step_has_allreduces_ ABSL_GUARDED_BY(mu_) = false;
  bool overlap_now_ ABSL_GUARDED_BY(mu_) = true;
  // update_in_forward: parameters whose update is deferred.
  int64_t owed_ ABSL_GUARDED_BY(mu_) = 0;
  // Overlap::kAuto, used by the stepping thread only.
  int64_t last_step_end_ns_ = 0;
  std::vector<double> on_s_, off_s_;
  // "dopt<k>.overlap": the k-th DistributedOptimizer of this process (every
  // rank builds its optimizers in the same order).
  std::string tune_name_;
  DistributedOptimizerStats stats_ ABSL_GUARDED_BY(mu_);
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
  TORCH_CHECK(options_.op == ReduceOp::kAverage ||
                  options_.op == ReduceOp::kSum ||
                  options_.op == ReduceOp::kAdasum,
              "kolo: DistributedOptimizer reduces gradients with average, sum "
              "or adasum, not ",
              ReduceOpName(options_.op));
  // Checked here too so that the mistake surfaces at construction rather
  // than from the first backward pass's hooks.
  // A process set reduces among its members only: this rank must be one.
  TORCH_CHECK_VALUE(!kolo::IsInitialized() || options_.process_set.Included(),
                    "kolo: DistributedOptimizer on process set ",
                    options_.process_set.id(), ": rank ", kolo::Rank(),
                    " is not a member (its ranks: ",
                    c10::Join(", ", options_.process_set.ranks()), ")");
  const int size = options_.process_set.Size();
  TORCH_CHECK_VALUE(
      options_.op != ReduceOp::kAdasum || size < 0 || (size & (size - 1)) == 0,
      "kolo: DistributedOptimizer with adasum needs a "
      "power-of-two number of ranks; ",
      options_.process_set.is_global() ? "this job" : "its process set",
      " has ", size);
  TORCH_CHECK(options_.gradient_predivide_factor > 0,
              "kolo: gradient_predivide_factor must be positive, got ",
              options_.gradient_predivide_factor);
  TORCH_CHECK(options_.gradient_predivide_factor == 1.0 ||
                  options_.op == ReduceOp::kAverage,
              "kolo: gradient_predivide_factor applies to the average only");
  allreduce_options_.op = options_.op;
  TORCH_CHECK_VALUE(!options_.update_in_forward ||
                        options_.overlap != Overlap::kOff,
                    "kolo: DistributedOptimizer's update_in_forward needs "
                    "overlap on (or auto): the gradients of the last layers "
                    "must be reduced during backward");
  overlap_now_ = options_.overlap != Overlap::kOff;
  stats_.overlapping = overlap_now_;
  static std::atomic<int> instances{0};
  tune_name_ = "dopt" + std::to_string(instances++) + ".overlap";
  // With kAverage the runtime divides the sum by size: the result is
  // (f / size) * sum(grad / f).
  allreduce_options_.prescale_factor = 1.0 / options_.gradient_predivide_factor;
  allreduce_options_.postscale_factor = options_.gradient_predivide_factor;

  for (const auto& item : named_parameters) {
    const at::Tensor& tensor = item.value();
    if (!tensor.requires_grad()) continue;
    TORCH_CHECK(tensor.is_leaf(), "kolo: parameter '", item.key(),
                "' is not a leaf tensor");
    // A parameter shared under two names is reduced once.
    if (!reduced_.insert(tensor.unsafeGetTensorImpl()).second) continue;
    index_of_[tensor.unsafeGetTensorImpl()] = parameters_.size();
    Parameter parameter;
    parameter.name = item.key();
    parameter.allreduce_name = "grad." + item.key();
    parameter.tensor = tensor;
    parameters_.push_back(std::move(parameter));
  }
  for (const auto& group : optimizer_->param_groups()) CheckReduced(group);
  for (size_t i = 0; i < parameters_.size(); ++i) {
    Parameter& parameter = parameters_[i];
    parameter.accumulator =
        ::torch::autograd::impl::grad_accumulator(parameter.tensor);
    TORCH_CHECK(parameter.accumulator != nullptr,
                "kolo: no gradient accumulator for parameter '",
                parameter.allreduce_name, "'");
    parameter.hook_key = parameter.accumulator->add_post_hook(
        std::make_unique<GradientReadyHook>(this, i));
    if (options_.update_in_forward) {
      auto hook = std::make_unique<GradientArrivingHook>(this, i);
      parameter.pre_hook = hook.get();
      parameter.accumulator->add_pre_hook(std::move(hook));
    }
  }
}

void DistributedOptimizer::Impl::CheckReduced(
    const optim::OptimizerParamGroup& group) const {
  for (const at::Tensor& tensor : group.params()) {
    TORCH_CHECK(!tensor.requires_grad() ||
                    reduced_.count(tensor.unsafeGetTensorImpl()) != 0,
                "kolo: the optimizer has a parameter (shape ", tensor.sizes(),
                ") that is not in named_parameters; its gradient would "
                "not be reduced across ranks");
  }
}

DistributedOptimizer::Impl::~Impl() {
  for (Parameter& parameter : parameters_) {
    parameter.accumulator->del_post_hook(parameter.hook_key);
    auto& pre_hooks = parameter.accumulator->pre_hooks();
    pre_hooks.erase(
        std::remove_if(pre_hooks.begin(), pre_hooks.end(),
                       [&](const auto& hook) {
                         return hook.get() == parameter.pre_hook;
                       }),
        pre_hooks.end());
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
  AllreduceOptions allreduce_options = allreduce_options_;
  if (options_.update_in_forward) {
    // Forward order first: the earlier a parameter, the sooner the next
    // forward pass needs its update.
    allreduce_options.priority = static_cast<int32_t>(
        parameters_.size() - static_cast<size_t>(&parameter - &parameters_[0]));
  }
  parameter.pending = allreduce_async_(
      wire, parameter.allreduce_name, allreduce_options, options_.process_set);
  if (!step_has_allreduces_) {
    step_has_allreduces_ = true;
    stats_.first_enqueue_ns = SteadyNowNs();
  }
  (from_hook ? stats_.allreduces_from_hooks
             : stats_.allreduces_from_synchronize)++;
}

void DistributedOptimizer::Impl::EnqueueRemainingLocked() {
  for (Parameter& parameter : parameters_) {
    if (parameter.pending.valid()) continue;
    if (!parameter.tensor.grad().defined()) {
      parameter.tensor.mutable_grad() = at::zeros_like(parameter.tensor);
    }
    EnqueueLocked(parameter, /*from_hook=*/false);
  }
}

void DistributedOptimizer::Impl::OnGradientReady(size_t index) {
  MutexLock lock(&mu_);
  Parameter& parameter = parameters_[index];
  TORCH_CHECK(!parameter.pending.valid(), "kolo: the gradient of '",
              parameter.name, "' was computed more than ",
              options_.backward_passes_per_step,
              " time(s) (backward_passes_per_step) before step() or "
              "synchronize()");
  synchronized_ = false;
  if (++parameter.passes < options_.backward_passes_per_step) return;
  // Without overlap, synchronize() starts it.
  if (!overlap_now_) return;
  EnqueueLocked(parameter, /*from_hook=*/true);
}

void DistributedOptimizer::Impl::OnGradientArriving(size_t index) {
  MutexLock lock(&mu_);
  const Parameter& parameter = parameters_[index];
  TORCH_CHECK(!parameter.owed, "kolo: backward reached the gradient of '",
              parameter.name,
              "' while its update from the previous step() was still "
              "deferred, so the forward pass used its old value: with "
              "update_in_forward, call DistributedOptimizer::ready() on its "
              "module (or on the parameter) before the forward pass uses it");
}

bool DistributedOptimizer::Impl::DeferStep() {
  MutexLock lock(&mu_);
  if (synchronized_) return false;
  // Every allreduce first: if one cannot start, nothing is marked owed and
  // the next synchronize() or step() waits for those that did.
  EnqueueRemainingLocked();
  for (Parameter& parameter : parameters_) {
    parameter.passes = 0;
    parameter.owed = true;
    parameter.zero_after_update = false;
  }
  owed_ = static_cast<int64_t>(parameters_.size());
  step_has_allreduces_ = false;
  ++stats_.steps;
  return true;
}

bool DistributedOptimizer::Impl::ApplyDeferred(
    const std::vector<const void*>& tensors) {
  std::vector<size_t> indices;
  std::vector<Handle> handles;
  {
    MutexLock lock(&mu_);
    if (owed_ == 0) return false;
    for (const void* tensor : tensors) {
      auto it = index_of_.find(tensor);
      if (it == index_of_.end()) continue;
      Parameter& parameter = parameters_[it->second];
      if (!parameter.owed || !parameter.pending.valid()) continue;
      indices.push_back(it->second);
      handles.push_back(std::move(parameter.pending));
      parameter.pending = Handle();
    }
    if (indices.empty()) return false;
  }
  ApplyOwed(std::move(indices), handles.data());
  MutexLock lock(&mu_);
  stats_.updates_in_forward += static_cast<int64_t>(handles.size());
  return owed_ == 0;
}

bool DistributedOptimizer::Impl::ApplyAllDeferred() {
  std::vector<size_t> indices;
  std::vector<Handle> handles;
  {
    MutexLock lock(&mu_);
    if (owed_ == 0) return false;
    for (size_t i = 0; i < parameters_.size(); ++i) {
      Parameter& parameter = parameters_[i];
      if (!parameter.owed) continue;
      indices.push_back(i);
      handles.push_back(std::move(parameter.pending));
      parameter.pending = Handle();
    }
  }
  ApplyOwed(std::move(indices), handles.data());
  MutexLock lock(&mu_);
  stats_.updates_at_finish += static_cast<int64_t>(handles.size());
  return true;
}

void DistributedOptimizer::Impl::ApplyOwed(std::vector<size_t> indices,
                                           Handle* handles) {
  // Wait for all, even after a failure, so that nothing is left in flight.
  std::exception_ptr first_error;
  std::vector<Parameter*> owed;
  {
    MutexLock lock(&mu_);
    for (size_t index : indices) owed.push_back(&parameters_[index]);
  }
  for (size_t k = 0; k < owed.size(); ++k) {
    Parameter& parameter = *owed[k];
    try {
      handles[k].wait();
      TORCH_CHECK(parameter.tensor.grad().defined(), "kolo: the gradient of '",
                  parameter.name,
                  "' was cleared while its update was deferred "
                  "(update_in_forward): clear gradients with "
                  "DistributedOptimizer::zero_grad(), which waits for the "
                  "update, not with the module's or the wrapped optimizer's");
      if (!parameter.wire.is_same(parameter.tensor.grad())) {
        parameter.tensor.grad().copy_(parameter.wire);
      }
    } catch (...) {
      if (!first_error) first_error = std::current_exception();
    }
    parameter.wire = at::Tensor();
  }
  MutexLock lock(&mu_);
  std::vector<bool> selected(parameters_.size(), false);
  for (size_t index : indices) {
    selected[index] = true;
    parameters_[index].owed = false;
  }
  owed_ -= static_cast<int64_t>(indices.size());
  // The gradients are not (all) reduced: no update from them. A failed
  // allreduce ends the job (the runtime aborts), so the updates of this
  // batch that did succeed are dropped with it.
  if (first_error) std::rethrow_exception(first_error);
  // The wrapped optimizer's step() for the selected parameters only: every
  // other parameter of its groups (also any it has that this class does not
  // reduce) has its gradient hidden for the duration.
  std::unordered_set<const void*> chosen;
  for (size_t index : indices) {
    chosen.insert(parameters_[index].tensor.unsafeGetTensorImpl());
  }
  std::vector<std::pair<at::Tensor, at::Tensor>> hidden;  // tensor, grad
  for (const auto& group : optimizer_->param_groups()) {
    for (const at::Tensor& tensor : group.params()) {
      if (chosen.count(tensor.unsafeGetTensorImpl()) != 0) continue;
      at::Tensor grad = tensor.grad();
      if (!grad.defined()) continue;
      at::Tensor handle = tensor;  // shares the TensorImpl
      handle.mutable_grad() = at::Tensor();
      hidden.emplace_back(std::move(handle), std::move(grad));
    }
  }
  struct Restore {
    std::vector<std::pair<at::Tensor, at::Tensor>>& hidden;
    ~Restore() {
      for (auto& [tensor, grad] : hidden) tensor.mutable_grad() = grad;
    }
  } restore{hidden};
  // Under mu_: a backward running meanwhile (another thread) would find
  // gradients hidden; its hooks wait instead.
  optimizer_->step();
  for (size_t index : indices) {
    Parameter& parameter = parameters_[index];
    if (!parameter.zero_after_update) continue;
    parameter.zero_after_update = false;
    ZeroGradient(parameter.tensor, parameter.zero_set_to_none);
  }
}

void DistributedOptimizer::Impl::Synchronize() {
  std::vector<std::pair<Handle, Parameter*>> in_flight;
  {
    MutexLock lock(&mu_);
    // Already reduced, and no backward since: reducing again would apply the
    // reduction twice.
    if (synchronized_) return;
    EnqueueRemainingLocked();
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
    MutexLock lock(&mu_);
    // After a failure the gradients are not (all) reduced: the next
    // synchronize() or step() must not skip them.
    synchronized_ = !first_error;
  }
  if (first_error) std::rethrow_exception(first_error);
}

void DistributedOptimizer::Impl::StepWrapped() {
  optimizer_->step();
  {
    MutexLock lock(&mu_);
    synchronized_ = false;
    ++stats_.steps;
  }
  // With update_in_forward the hooks always start the allreduces.
  if (options_.overlap == Overlap::kAuto && !options_.update_in_forward) {
    TuneOverlap();
  }
}

void DistributedOptimizer::Impl::TuneOverlap() {
  constexpr int64_t kWarmupSteps = 3;
  constexpr size_t kTrialsEach = 5;
  const int64_t now = SteadyNowNs();
  const int64_t previous = last_step_end_ns_;
  last_step_end_ns_ = now;
  int64_t steps;
  bool measured_on;
  {
    MutexLock lock(&mu_);
    if (stats_.overlap_decided_at_step >= 0) return;
    steps = stats_.steps;
    measured_on = overlap_now_;
  }
  if (steps > kWarmupSteps && previous != 0) {
    (measured_on ? on_s_ : off_s_).push_back((now - previous) * 1e-9);
  }
  if (on_s_.size() < kTrialsEach || off_s_.size() < kTrialsEach) {
    // Alternate from the first measured iteration on, so that both modes
    // see the same drift of the host's load.
    MutexLock lock(&mu_);
    overlap_now_ = steps < kWarmupSteps ? true : !measured_on;
    stats_.overlapping = overlap_now_;
    return;
  }
  auto median = [](std::vector<double> v) {
    std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
    return v[v.size() / 2];
  };
  // Every rank keeps the same mode: the ranks' medians are averaged.
  at::Tensor medians = at::tensor({median(on_s_), median(off_s_)}, at::kDouble);
  medians = allreduce(medians, tune_name_, {}, options_.process_set);
  const double on = medians[0].item<double>();
  const double off = medians[1].item<double>();
  MutexLock lock(&mu_);
  overlap_now_ = !(off < 0.98 * on);
  stats_.overlapping = overlap_now_;
  stats_.overlap_decided_at_step = steps;
  stats_.overlap_on_step_s = on;
  stats_.overlap_off_step_s = off;
}

void DistributedOptimizer::Impl::ZeroGrad(bool set_to_none) {
  {
    MutexLock lock(&mu_);
    if (owed_ > 0) {
      // update_in_forward: a deferred parameter's gradient is zeroed after
      // its update; the others now, as the wrapped optimizer would.
      for (Parameter& parameter : parameters_) {
        if (parameter.owed) {
          parameter.zero_after_update = true;
          parameter.zero_set_to_none = set_to_none;
          parameter.passes = 0;
          continue;
        }
        TORCH_CHECK(!parameter.pending.valid(),
                    "kolo: zero_grad() was called after backward() but "
                    "before step() or synchronize(): the allreduce of '",
                    parameter.allreduce_name,
                    "' is still writing the gradient");
        parameter.passes = 0;
        ZeroGradient(parameter.tensor, set_to_none);
      }
      return;
    }
    for (Parameter& parameter : parameters_) {
      TORCH_CHECK(!parameter.pending.valid(),
                  "kolo: zero_grad() was called after backward() but before "
                  "step() or synchronize(): the allreduce of '",
                  parameter.allreduce_name, "' is still writing the gradient");
      parameter.passes = 0;
    }
  }
#if TORCH_VERSION_MAJOR >= 2
  optimizer_->zero_grad(set_to_none);
#else
  // LibTorch 1.x sets gradients to zero; it has no set_to_none.
  (void)set_to_none;
  optimizer_->zero_grad();
#endif
}

DistributedOptimizer::DistributedOptimizer(
    std::shared_ptr<::torch::optim::Optimizer> optimizer,
    const ::torch::OrderedDict<std::string, at::Tensor>& named_parameters,
    DistributedOptimizerOptions options)
    : Optimizer(GroupsOf(optimizer), DefaultsOf(optimizer)),
      impl_(std::make_unique<Impl>(std::move(optimizer), named_parameters,
                                   options)) {
  for (const auto& group : param_groups_) {
    impl_->mirror.options.push_back(group.options().clone());
  }
  PullChanges();
}

DistributedOptimizer::~DistributedOptimizer() = default;

DistributedOptimizer::DistributedOptimizer(
    DistributedOptimizer&& other) noexcept
    : Optimizer(std::move(other)), impl_(std::move(other.impl_)) {}

DistributedOptimizer& DistributedOptimizer::operator=(
    DistributedOptimizer&& other) noexcept {
  // torch::optim::Optimizer has no move assignment.
  param_groups_ = std::move(other.param_groups_);
  state_ = std::move(other.state_);
  defaults_ = std::move(other.defaults_);
  impl_ = std::move(other.impl_);
  return *this;
}

void DistributedOptimizer::PushChanges() const {
  Impl& impl = *impl_;
  optim::Optimizer& wrapped = impl.optimizer();
  auto& their_groups = wrapped.param_groups();
  const size_t known = impl.mirror.options.size();
  TORCH_CHECK(param_groups_.size() == known || their_groups.size() == known,
              "kolo: parameter groups were added both to the "
              "DistributedOptimizer and to the optimizer it wraps since the "
              "last step()");
  for (size_t i = 0; i < known; ++i) {
    const optim::OptimizerOptions& ours = param_groups_[i].options();
    if (!SameOptions(ours, *impl.mirror.options[i])) {
      their_groups[i].set_options(ours.clone());
      impl.mirror.options[i] = ours.clone();
    }
  }
  for (size_t i = known; i < param_groups_.size(); ++i) {
    impl.CheckReduced(param_groups_[i]);
    wrapped.add_param_group(param_groups_[i]);
    impl.mirror.options.push_back(param_groups_[i].options().clone());
  }
  // State entries are copies sharing their tensors: in-place updates of the
  // tensors need nothing; replaced, added and erased entries are copied.
  auto& their_state = wrapped.state();
  for (const auto& [key, entry] : state_) {
    auto synced = impl.mirror.state.find(key);
    if (synced == impl.mirror.state.end() || synced->second != entry.get()) {
      their_state[key] = entry->clone();
      impl.mirror.state[key] = entry.get();
    }
  }
  for (auto it = impl.mirror.state.begin(); it != impl.mirror.state.end();) {
    if (state_.count(it->first) == 0) {
      their_state.erase(it->first);
      it = impl.mirror.state.erase(it);
    } else {
      ++it;
    }
  }
}

void DistributedOptimizer::PullChanges() {
  Impl& impl = *impl_;
  optim::Optimizer& wrapped = impl.optimizer();
  const auto& their_groups = wrapped.param_groups();
  const size_t known = impl.mirror.options.size();
  for (size_t i = 0; i < known; ++i) {
    const optim::OptimizerOptions& theirs = their_groups[i].options();
    if (!SameOptions(theirs, *impl.mirror.options[i])) {
      param_groups_[i].set_options(theirs.clone());
      impl.mirror.options[i] = theirs.clone();
    }
  }
  for (size_t i = known; i < their_groups.size(); ++i) {
    impl.CheckReduced(their_groups[i]);
    param_groups_.push_back(their_groups[i]);
    impl.mirror.options.push_back(their_groups[i].options().clone());
  }
  state_.clear();
  impl.mirror.state.clear();
  for (const auto& [key, entry] : wrapped.state()) {
    std::unique_ptr<optim::OptimizerParamState> copy = entry->clone();
    impl.mirror.state[key] = copy.get();
    state_[key] = std::move(copy);
  }
}

void DistributedOptimizer::synchronize() {
  finish_updates();
  impl_->Synchronize();
}

void DistributedOptimizer::finish_updates() {
  if (impl_->ApplyAllDeferred()) PullChanges();
}

void DistributedOptimizer::ready(const std::vector<at::Tensor>& parameters) {
  std::vector<const void*> tensors;
  tensors.reserve(parameters.size());
  for (const at::Tensor& tensor : parameters) {
    tensors.push_back(tensor.unsafeGetTensorImpl());
  }
  if (impl_->ApplyDeferred(tensors)) PullChanges();
}

void DistributedOptimizer::ready(const ::torch::nn::Module& module) {
  if (!impl_->deferring()) return;
  ready(module.parameters(/*recurse=*/true));
}

at::Tensor DistributedOptimizer::step(LossClosure closure) {
  at::Tensor loss;
  if (closure) {
    // As LibTorch's optimizers evaluate it: with gradients enabled. Its
    // backward runs before the reduction, so its gradients are reduced.
    at::AutoGradMode enable_grad(true);
    loss = closure();
  }
  // Updates still deferred from the previous step, with its options.
  finish_updates();
  if (impl_->options().update_in_forward) {
    PushChanges();
    if (impl_->DeferStep()) return loss;
  }
  impl_->Synchronize();
  PushChanges();
  impl_->StepWrapped();
  PullChanges();
  return loss;
}

#if TORCH_VERSION_MAJOR >= 2
void DistributedOptimizer::zero_grad(bool set_to_none) {
  impl_->ZeroGrad(set_to_none);
}
#else
void DistributedOptimizer::zero_grad() { impl_->ZeroGrad(false); }
#endif

void DistributedOptimizer::save(
    ::torch::serialize::OutputArchive& archive) const {
  // Deferred updates exist only after step(), on an optimizer that is not
  // const: casting away const here modifies no const object.
  const_cast<DistributedOptimizer*>(this)->finish_updates();
  PushChanges();
  impl_->optimizer().save(archive);
}

void DistributedOptimizer::load(::torch::serialize::InputArchive& archive) {
  finish_updates();
  PushChanges();
  impl_->optimizer().load(archive);
  PullChanges();
}

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
