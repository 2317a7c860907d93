// SyncBatchNorm and convert_sync_batchnorm (see kolo/torch.h).
//
// Terms. For an input of shape (N, C, ...), a channel's values are the
// N * (product of the trailing sizes) entries with that channel index; n is
// their number on this rank and `count` their number over all ranks. mean and
// var are the global per-channel mean and biased variance, invstd is
// 1 / sqrt(var + eps), xmu is input - mean and xhat is xmu * invstd.
//
// Forward: output = xhat * weight + bias. Backward, for a loss that is the
// sum of every rank's loss (g = grad_output; sums over the channel's values
// of every rank, hence the allreduce):
//   grad_input = weight * invstd * (g - sum(g) / count
//                                   - xmu * invstd^2 * sum(g * xmu) / count)
//   grad_weight = sum(g * xhat) over this rank's values
//   grad_bias = sum(g) over this rank's values
// (the derivation of BatchNorm's gradient, with the batch spread over ranks).
#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/autograd.h>
#include <torch/nn/functional/batchnorm.h>
#include <torch/nn/modules/container/any.h>
#include <torch/nn/modules/container/moduledict.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/types.h>

#include <atomic>
#include <memory>
#include <ostream>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "kolo/torch.h"

namespace kolo {
namespace torch {
namespace {

namespace nn = ::torch::nn;
using ::torch::autograd::AutogradContext;
using ::torch::autograd::variable_list;

// Numbers the SyncBatchNorm layers constructed without a name, in order.
std::atomic<int64_t> next_unnamed_layer{0};

std::string UnnamedLayerName() {
  return "syncbn.#" + std::to_string(next_unnamed_layer++);
}

// Every dimension but the channel (1).
std::vector<int64_t> ReducedDims(const at::Tensor& input) {
  std::vector<int64_t> dims = {0};
  for (int64_t d = 2; d < input.dim(); ++d) dims.push_back(d);
  return dims;
}

// (1, C, 1, ...): a per-channel tensor viewed to broadcast over the input.
std::vector<int64_t> ChannelShape(const at::Tensor& input) {
  std::vector<int64_t> shape(input.dim(), 1);
  shape[1] = input.size(1);
  return shape;
}

// The dtype sums are taken in: float64 for float64 inputs, float32 for the
// others (so float16 and bfloat16 do not accumulate in 16 bits).
at::ScalarType AccumulateType(at::ScalarType type) {
  return type == at::kDouble ? at::kDouble : at::kFloat;
}

AllreduceOptions SumOptions() {
  AllreduceOptions options;
  options.op = ReduceOp::kSum;
  return options;
}

// The normalisation with statistics already reduced over all ranks, and its
// backward, which reduces the sums the input's gradient needs.
class SyncBatchNormFunction
    : public ::torch::autograd::Function<SyncBatchNormFunction> {
 public:
  // weight, bias: per channel, or empty without affine; mean, invstd: per
  // channel, in the accumulate type; count: the number of values per channel
  // over all ranks; name: the layer's collective name.
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input,
                            const at::Tensor& weight, const at::Tensor& bias,
                            const at::Tensor& mean, const at::Tensor& invstd,
                            double count, const std::string& name) {
    ctx->save_for_backward({input, weight});
    ctx->saved_data["mean"] = mean;
    ctx->saved_data["invstd"] = invstd;
    ctx->saved_data["count"] = count;
    ctx->saved_data["name"] = name;
    // output = input * scale + shift, per channel.
    const bool affine = weight.numel() > 0;
    at::Tensor scale = affine ? invstd * weight.to(invstd.dtype()) : invstd;
    at::Tensor shift = -mean * scale;
    if (affine) shift = shift + bias.to(invstd.dtype());
    const std::vector<int64_t> shape = ChannelShape(input);
    return (input.to(invstd.scalar_type()) * scale.view(shape) +
            shift.view(shape))
        .to(input.scalar_type());
  }

  static variable_list backward(AutogradContext* ctx,
                                variable_list grad_outputs) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor& input = saved[0];
    const at::Tensor& weight = saved[1];
    const at::Tensor mean = ctx->saved_data["mean"].toTensor();
    const at::Tensor invstd = ctx->saved_data["invstd"].toTensor();
    const double count = ctx->saved_data["count"].toDouble();
    const std::string name = ctx->saved_data["name"].toStringRef();
    const at::ScalarType accumulate = invstd.scalar_type();
    const std::vector<int64_t> shape = ChannelShape(input);
    const std::vector<int64_t> dims = ReducedDims(input);
    const int64_t channels = input.size(1);

    const at::Tensor grad = grad_outputs[0].to(accumulate);
    const at::Tensor xmu = input.to(accumulate) - mean.view(shape);
    const at::Tensor sum_dy = grad.sum(dims);
    const at::Tensor sum_dy_xmu = (grad * xmu).sum(dims);

    at::Tensor grad_input;
    if (ctx->needs_input_grad(0)) {
      // Every rank's sums, in float64 (see Forward).
      const at::Tensor sums =
          allreduce_(at::cat({sum_dy, sum_dy_xmu}).to(at::kDouble),
                     name + ".grad", SumOptions());
      const at::Tensor mean_dy =
          (sums.slice(0, 0, channels) / count).to(accumulate);
      const at::Tensor mean_dy_xmu =
          (sums.slice(0, channels) / count).to(accumulate);
      const at::Tensor scale =
          weight.numel() > 0 ? invstd * weight.to(accumulate) : invstd;
      grad_input = ((grad - mean_dy.view(shape) -
                     xmu * (invstd * invstd * mean_dy_xmu).view(shape)) *
                    scale.view(shape))
                       .to(input.scalar_type());
    }
    at::Tensor grad_weight;
    if (ctx->needs_input_grad(1)) {
      grad_weight = (sum_dy_xmu * invstd).to(weight.scalar_type());
    }
    at::Tensor grad_bias;
    if (ctx->needs_input_grad(2)) {
      grad_bias = sum_dy.to(weight.scalar_type());
    }
    return {grad_input,   grad_weight,  grad_bias,   at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

bool IsBatchNorm(const nn::Module& module) {
  return module.as<nn::BatchNorm1d>() != nullptr ||
         module.as<nn::BatchNorm2d>() != nullptr ||
         module.as<nn::BatchNorm3d>() != nullptr;
}

// References to `child` that `parent` holds in its container entries (a
// Sequential's, ModuleList's or ModuleDict's), besides its registered
// children.
int64_t ContainerReferences(nn::Module& parent, const nn::Module* child) {
  int64_t references = 0;
  if (auto* sequential = parent.as<nn::Sequential>()) {
    for (const nn::AnyModule& entry : *sequential) {
      references += entry.ptr().get() == child;
    }
  } else if (auto* list = parent.as<nn::ModuleList>()) {
    for (const std::shared_ptr<nn::Module>& entry : *list) {
      references += entry.get() == child;
    }
  } else if (auto* dict = parent.as<nn::ModuleDict>()) {
    for (const auto& item : *dict) references += item.value().get() == child;
  }
  return references;
}

// Makes `parent`'s container entries that hold `old_layer` hold `new_layer`.
void ReplaceContainerEntries(nn::Module& parent, const nn::Module* old_layer,
                             const std::shared_ptr<SyncBatchNormImpl>& layer) {
  if (auto* sequential = parent.as<nn::Sequential>()) {
    for (nn::AnyModule& entry : *sequential) {
      if (entry.ptr().get() == old_layer) entry = nn::AnyModule(layer);
    }
  } else if (auto* list = parent.as<nn::ModuleList>()) {
    for (std::shared_ptr<nn::Module>& entry : *list) {
      if (entry.get() == old_layer) entry = layer;
    }
  } else if (auto* dict = parent.as<nn::ModuleDict>()) {
    for (auto& item : *dict) {
      if (item.value().get() == old_layer) item.value() = layer;
    }
  }
}

// A BatchNorm layer inside the model being converted.
struct Site {
  nn::Module* parent;
  std::string name;  // among parent's children
  std::string path;  // from the converted module, dotted
  std::shared_ptr<nn::Module> layer;
};

// Finds the BatchNorm layers below `parent` and checks that each can be
// replaced (see convert_sync_batchnorm in kolo/torch.h).
void CollectSites(nn::Module& parent, const std::string& prefix,
                  std::unordered_set<const nn::Module*>* visited,
                  std::vector<Site>* sites) {
  if (!visited->insert(&parent).second) return;  // shared submodule
  // Holds one reference to each child while it lives.
  const auto children = parent.named_children();
  for (const auto& item : children) {
    const std::shared_ptr<nn::Module>& child = item.value();
    const std::string path =
        prefix.empty() ? item.key() : prefix + "." + item.key();
    if (!IsBatchNorm(*child)) {
      CollectSites(*child, path, visited, sites);
      continue;
    }
    // parent's registered children, `children` and parent's container
    // entries; anything beyond is a holder that would keep calling it.
    const int64_t expected = 2 + ContainerReferences(parent, child.get());
    TORCH_CHECK_VALUE(
        child.use_count() <= expected, "kolo: convert_sync_batchnorm: '", path,
        "' (", child->name(), ") is held outside its parent's registered ",
        "children (", child.use_count() - expected, " more reference(s): ",
        "typically a member such as torch::nn::BatchNorm2d norm_ that ",
        "forward() calls, which replace_module cannot update, or a layer ",
        "registered twice). Replacing it would leave forward() calling the ",
        "unsynchronised layer, so nothing was changed. Keep BatchNorm layers ",
        "in a torch::nn::Sequential, ModuleList or ModuleDict, or build the ",
        "model with kolo::torch::SyncBatchNorm.");
    sites->push_back({&parent, item.key(), path, child});
  }
}

std::shared_ptr<SyncBatchNormImpl> MakeSyncLayer(const nn::Module& layer,
                                                 std::string name) {
  if (const auto* norm = layer.as<nn::BatchNorm1d>()) {
    return std::make_shared<SyncBatchNormImpl>(*norm, std::move(name));
  }
  if (const auto* norm = layer.as<nn::BatchNorm2d>()) {
    return std::make_shared<SyncBatchNormImpl>(*norm, std::move(name));
  }
  const auto* norm = layer.as<nn::BatchNorm3d>();
  TORCH_INTERNAL_ASSERT(norm != nullptr, "not a BatchNorm: ", layer.name());
  return std::make_shared<SyncBatchNormImpl>(*norm, std::move(name));
}

}  // namespace

// ---------------------------------------------------------------------------
// SyncBatchNormImpl

SyncBatchNormImpl::SyncBatchNormImpl(const nn::BatchNormOptions& options,
                                     std::string name)
    : options(options), name_(std::move(name)) {
  if (name_.empty()) name_ = UnnamedLayerName();
  reset();
}

SyncBatchNormImpl::SyncBatchNormImpl(const nn::BatchNorm1dImpl& other,
                                     std::string name)
    : options(other.options), name_(std::move(name)) {
  Adopt(other);
}

SyncBatchNormImpl::SyncBatchNormImpl(const nn::BatchNorm2dImpl& other,
                                     std::string name)
    : options(other.options), name_(std::move(name)) {
  Adopt(other);
}

SyncBatchNormImpl::SyncBatchNormImpl(const nn::BatchNorm3dImpl& other,
                                     std::string name)
    : options(other.options), name_(std::move(name)) {
  Adopt(other);
}

template <typename BatchNorm>
void SyncBatchNormImpl::Adopt(const BatchNorm& other) {
  if (name_.empty()) name_ = UnnamedLayerName();
  Register(other.weight, other.bias, other.running_mean, other.running_var,
           other.num_batches_tracked);
}

void SyncBatchNormImpl::Register(at::Tensor weight, at::Tensor bias,
                                 at::Tensor running_mean,
                                 at::Tensor running_var,
                                 at::Tensor num_batches_tracked) {
  // requires_grad as given: a frozen layer stays frozen.
  const bool weight_grad = weight.defined() && weight.requires_grad();
  const bool bias_grad = bias.defined() && bias.requires_grad();
  this->weight = register_parameter("weight", std::move(weight), weight_grad);
  this->bias = register_parameter("bias", std::move(bias), bias_grad);
  this->running_mean = register_buffer("running_mean", std::move(running_mean));
  this->running_var = register_buffer("running_var", std::move(running_var));
  this->num_batches_tracked =
      register_buffer("num_batches_tracked", std::move(num_batches_tracked));
}

void SyncBatchNormImpl::reset() {
  const int64_t features = options.num_features();
  TORCH_CHECK_VALUE(features > 0, "kolo: SyncBatchNorm '", name_,
                    "': num_features must be positive, got ", features);
  at::Tensor weight;
  at::Tensor bias;
  if (options.affine()) {
    weight = ::torch::empty({features}, ::torch::requires_grad());
    bias = ::torch::empty({features}, ::torch::requires_grad());
  }
  at::Tensor running_mean;
  at::Tensor running_var;
  at::Tensor num_batches_tracked;
  if (options.track_running_stats()) {
    running_mean = ::torch::zeros({features});
    running_var = ::torch::ones({features});
    num_batches_tracked = ::torch::tensor(0, ::torch::dtype(::torch::kLong));
  }
  Register(weight, bias, running_mean, running_var, num_batches_tracked);
  reset_parameters();
}

void SyncBatchNormImpl::reset_running_stats() {
  if (!options.track_running_stats()) return;
  ::torch::NoGradGuard no_grad;
  running_mean.zero_();
  running_var.fill_(1);
  num_batches_tracked.zero_();
}

void SyncBatchNormImpl::reset_parameters() {
  reset_running_stats();
  if (!options.affine()) return;
  ::torch::NoGradGuard no_grad;
  weight.fill_(1);
  bias.zero_();
}

void SyncBatchNormImpl::pretty_print(std::ostream& stream) const {
  stream << "kolo::torch::SyncBatchNorm(" << options.num_features()
         << ", eps=" << options.eps() << ", momentum=";
  if (options.momentum().has_value()) {
    stream << *options.momentum();
  } else {
    stream << "None";
  }
  stream << ", affine=" << std::boolalpha << options.affine()
         << ", track_running_stats=" << options.track_running_stats()
         << ", name=" << name_ << ")";
}

at::Tensor SyncBatchNormImpl::forward(const at::Tensor& input) {
  TORCH_CHECK_VALUE(input.dim() >= 2, "kolo: SyncBatchNorm '", name_,
                    "': expected an input of shape (N, C, ...), got ",
                    input.sizes());
  TORCH_CHECK_VALUE(
      input.size(1) == options.num_features(), "kolo: SyncBatchNorm '", name_,
      "': expected ", options.num_features(),
      " channels (dimension 1), got an input of shape ", input.sizes());
  TORCH_CHECK_VALUE(input.is_floating_point(), "kolo: SyncBatchNorm '", name_,
                    "': expected a floating-point input, got ",
                    input.scalar_type());
  if (!is_training()) {
    // As BatchNorm: the running statistics, or this rank's own batch
    // statistics without them. Nothing to agree on with other ranks.
    return nn::functional::detail::batch_norm(
        input, running_mean, running_var, weight, bias,
        /*training=*/!options.track_running_stats(), /*momentum=*/0.0,
        options.eps());
  }

  const int64_t channels = input.size(1);
  const at::ScalarType accumulate = AccumulateType(input.scalar_type());
  at::Tensor mean;   // float64, per channel
  at::Tensor var;    // biased, float64, per channel
  double count = 0;  // values per channel over all ranks
  {
    ::torch::NoGradGuard no_grad;
    // [count, sum(x) per channel, sum(x^2) per channel], in float64 so that
    // var = sum(x^2) / count - mean^2 keeps float32's precision. The local
    // sums come from this rank's mean and variance (ATen's Welford).
    const int64_t local_count = input.numel() / channels;
    at::Tensor sums =
        at::zeros({1 + 2 * channels}, input.options().dtype(at::kDouble));
    if (local_count > 0) {
      auto [local_var, local_mean] =
          at::var_mean(input.detach().to(accumulate), ReducedDims(input),
                       /*unbiased=*/false, /*keepdim=*/false);
      const at::Tensor m = local_mean.to(at::kDouble);
      const at::Tensor v = local_var.to(at::kDouble);
      sums[0] = static_cast<double>(local_count);
      sums.slice(0, 1, 1 + channels).copy_(m * local_count);
      sums.slice(0, 1 + channels).copy_((v + m * m) * local_count);
    }
    allreduce_(sums, name_ + ".stats", SumOptions());
    count = sums[0].item<double>();
    TORCH_CHECK_VALUE(count > 1, "kolo: SyncBatchNorm '", name_,
                      "': expected more than 1 value per channel over all "
                      "ranks when training, got ",
                      count, " (this rank's input: ", input.sizes(), ")");
    mean = sums.slice(0, 1, 1 + channels) / count;
    var = (sums.slice(0, 1 + channels) / count - mean * mean).clamp_min(0);

    if (options.track_running_stats()) {
      // BatchNorm's update: momentum, or the cumulative average when it is
      // nullopt; the running variance is the unbiased one.
      num_batches_tracked += 1;
      const double factor = options.momentum().has_value()
                                ? *options.momentum()
                                : 1.0 / num_batches_tracked.item<double>();
      const at::Tensor unbiased = var * (count / (count - 1));
      running_mean.copy_(running_mean.to(at::kDouble) * (1 - factor) +
                         mean * factor);
      running_var.copy_(running_var.to(at::kDouble) * (1 - factor) +
                        unbiased * factor);
    }
  }
  const at::Tensor invstd = (var + options.eps()).rsqrt().to(accumulate);
  // LibTorch 1.13's custom functions take no undefined tensors: without
  // affine, empty ones stand for weight and bias.
  const at::Tensor none = at::empty({0}, input.options());
  return SyncBatchNormFunction::apply(
      input, weight.defined() ? weight : none, bias.defined() ? bias : none,
      mean.to(accumulate), invstd, count, name_);
}

// ---------------------------------------------------------------------------
// convert_sync_batchnorm

int64_t convert_sync_batchnorm(nn::Module& module) {
  TORCH_CHECK_VALUE(!IsBatchNorm(module),
                    "kolo: convert_sync_batchnorm: the module is itself a ",
                    module.name(),
                    "; construct a kolo::torch::SyncBatchNorm from it instead");
  // All layers are checked before any is replaced: all or nothing.
  std::vector<Site> sites;
  std::unordered_set<const nn::Module*> visited;
  CollectSites(module, "", &visited, &sites);
  for (Site& site : sites) {
    std::shared_ptr<SyncBatchNormImpl> layer =
        MakeSyncLayer(*site.layer, "syncbn." + site.path);
    layer->train(site.layer->is_training());
    ReplaceContainerEntries(*site.parent, site.layer.get(), layer);
    site.parent->replace_module(site.name, layer);
  }
  return static_cast<int64_t>(sites.size());
}

}  // namespace torch
}  // namespace kolo
