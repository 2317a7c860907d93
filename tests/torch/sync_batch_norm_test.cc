// Multi-rank tests of SyncBatchNorm and convert_sync_batchnorm.
//
// The reference is torch::nn::BatchNorm{1,2,3}d on one process, computed on
// every rank from the whole global batch, of which each rank feeds
// SyncBatchNorm its own slice (unequal slices; zero samples on one rank in one
// test). The loss is sum over ranks of sum(output * upstream), so the
// reference's gradient with respect to a rank's slice must equal that rank's
// input gradient, and the reference's weight and bias gradients must equal the
// sum over ranks of SyncBatchNorm's (each rank holds its own contribution;
// DistributedOptimizer's average divides that sum by the number of ranks, as
// for every other parameter of a loss averaged over ranks).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "examples/chexnet/models/chexnet_model.h"
#include "kolo/torch.h"
#include "test_util.h"

namespace kolo {
namespace torch {
namespace {

namespace nn = ::torch::nn;
using testing::AllClose;
using testing::Equal;

AllreduceOptions Sum() {
  AllreduceOptions options;
  options.op = ReduceOp::kSum;
  return options;
}

// Samples of the global batch held by each rank: r + 2 on rank r (BatchNorm1d
// on (N, C) needs two samples on one process), or none on rank 0.
std::vector<int64_t> RankSamples(bool zero_on_rank0) {
  std::vector<int64_t> samples;
  for (int r = 0; r < size(); ++r) {
    samples.push_back(zero_on_rank0 && r == 0 && size() > 1 ? 0 : r + 2);
  }
  return samples;
}

// This rank's rows of `global`.
at::Tensor MySlice(const at::Tensor& global,
                   const std::vector<int64_t>& samples) {
  int64_t start = 0;
  for (int r = 0; r < rank(); ++r) start += samples[r];
  return global.slice(0, start, start + samples[rank()]);
}

int64_t Total(const std::vector<int64_t>& samples) {
  int64_t total = 0;
  for (int64_t n : samples) total += n;
  return total;
}

// A BatchNorm layer of either kind, so that one test body runs both.
struct Layers {
  nn::AnyModule reference;
  SyncBatchNorm sync{nullptr};
  at::Tensor ref_weight, ref_bias, ref_mean, ref_var, ref_batches;
};

template <typename BatchNorm>
Layers MakeLayers(const nn::BatchNormOptions& options, at::ScalarType dtype,
                  const std::string& name) {
  BatchNorm reference(options);
  reference->to(dtype);
  SyncBatchNorm sync(options, name);
  sync->to(dtype);
  if (options.affine()) {
    // Weights and bias away from 1 and 0, the same on every rank.
    ::torch::NoGradGuard no_grad;
    const at::Tensor w = ::torch::linspace(0.5, 1.5, options.num_features());
    const at::Tensor b = ::torch::linspace(-0.3, 0.4, options.num_features());
    reference->weight.copy_(w);
    reference->bias.copy_(b);
    sync->weight.copy_(w);
    sync->bias.copy_(b);
  }
  Layers layers;
  layers.reference = nn::AnyModule(reference);
  layers.sync = sync;
  layers.ref_weight = reference->weight;
  layers.ref_bias = reference->bias;
  layers.ref_mean = reference->running_mean;
  layers.ref_var = reference->running_var;
  layers.ref_batches = reference->num_batches_tracked;
  return layers;
}

struct Case {
  std::string label;
  nn::BatchNormOptions options;
  // Input shape without the batch dimension: (C, ...).
  std::vector<int64_t> sample_shape;
  at::ScalarType dtype;
  bool zero_on_rank0;
};

// Runs three training steps and an evaluation on the reference and on
// SyncBatchNorm, comparing everything the layer produces.
void CheckAgainstReference(const Case& c) {
  SCOPED_TRACE(c.label);
  const bool is_double = c.dtype == at::kDouble;
  const double rtol = is_double ? 1e-10 : 1e-5;
  const double atol = is_double ? 1e-10 : 2e-5;
  const size_t dims = c.sample_shape.size() + 1;
  Layers layers =
      dims <= 3   ? MakeLayers<nn::BatchNorm1d>(c.options, c.dtype, c.label)
      : dims == 4 ? MakeLayers<nn::BatchNorm2d>(c.options, c.dtype, c.label)
                  : MakeLayers<nn::BatchNorm3d>(c.options, c.dtype, c.label);
  nn::Module& reference = *layers.reference.ptr();
  SyncBatchNormImpl& sync = *layers.sync;
  const std::vector<int64_t> samples = RankSamples(c.zero_on_rank0);
  std::vector<int64_t> shape = {Total(samples)};
  shape.insert(shape.end(), c.sample_shape.begin(), c.sample_shape.end());

  ::torch::manual_seed(7);  // the same global batches on every rank
  for (int step = 0; step < 3; ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    // Channel means away from zero, as real activations have.
    const at::Tensor global = ::torch::randn(shape, c.dtype) * 2 + 3;
    const at::Tensor upstream = ::torch::randn(shape, c.dtype);

    reference.zero_grad();
    const at::Tensor ref_input = global.clone().requires_grad_();
    const at::Tensor ref_output = layers.reference.forward(ref_input);
    (ref_output * upstream).sum().backward();

    sync.zero_grad();
    const at::Tensor input = MySlice(global, samples).clone().requires_grad_();
    const at::Tensor output = layers.sync->forward(input);
    (output * MySlice(upstream, samples)).sum().backward();

    EXPECT_TRUE(AllClose(output, MySlice(ref_output, samples), rtol, atol))
        << "output";
    EXPECT_TRUE(
        AllClose(input.grad(), MySlice(ref_input.grad(), samples), rtol, atol))
        << "input gradient";
    if (c.options.affine()) {
      const at::Tensor weight_grad =
          allreduce(sync.weight.grad(), c.label + ".wgrad", Sum());
      const at::Tensor bias_grad =
          allreduce(sync.bias.grad(), c.label + ".bgrad", Sum());
      EXPECT_TRUE(
          AllClose(weight_grad, layers.ref_weight.grad(), rtol, atol * 10))
          << "weight gradient summed over ranks";
      EXPECT_TRUE(AllClose(bias_grad, layers.ref_bias.grad(), rtol, atol * 10))
          << "bias gradient summed over ranks";
    }
    if (c.options.track_running_stats()) {
      EXPECT_TRUE(AllClose(sync.running_mean, layers.ref_mean, rtol, atol))
          << "running_mean";
      EXPECT_TRUE(AllClose(sync.running_var, layers.ref_var, rtol, atol))
          << "running_var";
      EXPECT_TRUE(Equal(sync.num_batches_tracked, layers.ref_batches));
    }
  }
  if (c.options.track_running_stats()) {
    EXPECT_EQ(sync.num_batches_tracked.item<int64_t>(), 3);
  }

  // Evaluation: running statistics (or, without them, each process's own
  // batch statistics), no communication.
  reference.eval();
  layers.sync->eval();
  const at::Tensor global = ::torch::randn(shape, c.dtype) + 1;
  const at::Tensor mine = MySlice(global, samples);
  if (c.options.track_running_stats()) {
    ::torch::NoGradGuard no_grad;
    EXPECT_TRUE(AllClose(layers.sync->forward(mine),
                         MySlice(layers.reference.forward(global), samples),
                         rtol, atol))
        << "evaluation output";
  } else if (mine.size(0) > 1) {
    ::torch::NoGradGuard no_grad;
    EXPECT_TRUE(AllClose(layers.sync->forward(mine),
                         layers.reference.forward(mine.clone()), rtol, atol))
        << "evaluation output without running statistics";
  }
}

TEST(SyncBatchNorm, MatchesBatchNorm2dOnTheGlobalBatch) {
  CheckAgainstReference({"syncbn.test.2d",
                         nn::BatchNormOptions(4),
                         {4, 3, 5},
                         at::kFloat,
                         false});
  CheckAgainstReference({"syncbn.test.2d.double",
                         nn::BatchNormOptions(4),
                         {4, 3, 5},
                         at::kDouble,
                         false});
}

TEST(SyncBatchNorm, MomentumNulloptIsTheCumulativeAverage) {
  CheckAgainstReference(
      {"syncbn.test.cumulative",
       nn::BatchNormOptions(3).momentum(c10::nullopt).eps(1e-3),
       {3, 4, 4},
       at::kDouble,
       false});
}

TEST(SyncBatchNorm, WithoutAffineOrRunningStatistics) {
  CheckAgainstReference({"syncbn.test.noaffine",
                         nn::BatchNormOptions(4).affine(false).momentum(0.3),
                         {4, 3, 3},
                         at::kDouble,
                         false});
  CheckAgainstReference({"syncbn.test.notrack",
                         nn::BatchNormOptions(4).track_running_stats(false),
                         {4, 3, 3},
                         at::kDouble,
                         false});
}

TEST(SyncBatchNorm, OneAndThreeDimensionalInputs) {
  CheckAgainstReference(
      {"syncbn.test.1d.nc", nn::BatchNormOptions(5), {5}, at::kDouble, false});
  CheckAgainstReference({"syncbn.test.1d.ncl",
                         nn::BatchNormOptions(5),
                         {5, 7},
                         at::kFloat,
                         false});
  CheckAgainstReference({"syncbn.test.3d",
                         nn::BatchNormOptions(2),
                         {2, 2, 3, 2},
                         at::kDouble,
                         false});
}

TEST(SyncBatchNorm, ARankWithNoSamples) {
  // Rank 0 feeds an empty batch (at np 1 it holds the whole batch).
  CheckAgainstReference({"syncbn.test.empty",
                         nn::BatchNormOptions(4),
                         {4, 2, 3},
                         at::kDouble,
                         true});
}

TEST(SyncBatchNorm, Bfloat16InputsAreReducedInFloat32) {
  // The reference: BatchNorm2d in float32 on the same (bfloat16) values.
  const std::vector<int64_t> samples = RankSamples(false);
  ::torch::manual_seed(9);
  const at::Tensor global =
      (::torch::randn({Total(samples), 3, 8, 8}) * 2 + 100).to(at::kBFloat16);
  nn::BatchNorm2d reference(3);
  const at::Tensor expected = reference->forward(global.to(at::kFloat));
  SyncBatchNorm layer(nn::BatchNormOptions(3), "syncbn.test.bf16");
  const at::Tensor output = layer->forward(MySlice(global, samples));
  EXPECT_EQ(output.scalar_type(), at::kBFloat16);
  // bfloat16 keeps 8 bits of mantissa: outputs of magnitude ~3 to ~2e-2.
  EXPECT_TRUE(AllClose(output, MySlice(expected, samples), 1e-2, 2e-2));
  // Sums in bfloat16 would be off by whole units at a mean of 100.
  EXPECT_TRUE(AllClose(layer->running_mean, reference->running_mean, 1e-5, 0));
  EXPECT_TRUE(AllClose(layer->running_var, reference->running_var, 1e-4, 0));
}

TEST(SyncBatchNorm, OneValuePerChannelIsRefusedOnEveryRank) {
  SyncBatchNorm layer(nn::BatchNormOptions(2), "syncbn.test.single");
  // One sample of 1x1 on rank 0, none elsewhere.
  const at::Tensor input = ::torch::ones({rank() == 0 ? 1 : 0, 2, 1, 1});
  EXPECT_THROW(layer->forward(input), c10::ValueError);
  EXPECT_EQ(layer->num_batches_tracked.item<int64_t>(), 0);
  EXPECT_THROW(layer->forward(::torch::ones({2, 3, 4, 4})), c10::ValueError);
}

// ---------------------------------------------------------------------------
// convert_sync_batchnorm

int64_t CountLayers(nn::Module& module, bool sync) {
  int64_t count = 0;
  for (const auto& m : module.modules()) {
    const bool is_sync = m->as<SyncBatchNorm>() != nullptr;
    const bool is_plain = m->as<nn::BatchNorm1d>() != nullptr ||
                          m->as<nn::BatchNorm2d>() != nullptr ||
                          m->as<nn::BatchNorm3d>() != nullptr;
    count += sync ? is_sync : is_plain;
  }
  return count;
}

// Distinct statistics and parameters in every BatchNorm, the same on every
// rank, so that the test sees whether conversion kept them.
void RandomiseState(nn::Module& model) {
  ::torch::NoGradGuard no_grad;
  ::torch::manual_seed(3);
  for (auto& item : model.named_buffers()) {
    at::Tensor& buffer = item.value();
    if (buffer.scalar_type() == at::kLong) {
      buffer.fill_(::torch::randint(1, 100, {}).item<int64_t>());
    } else if (item.key().find("running_var") != std::string::npos) {
      buffer.copy_(::torch::rand_like(buffer) + 0.5);
    } else {
      buffer.copy_(::torch::randn_like(buffer) * 0.1);
    }
  }
  for (auto& item : model.named_parameters()) {
    if (item.key().find("norm") != std::string::npos) {
      item.value().copy_(::torch::rand_like(item.value()) + 0.5);
    }
  }
}

std::shared_ptr<chexnet::ChexnetModel> DenseNet() {
  ::torch::manual_seed(1);
  auto model = chexnet::MakeModel("densenet121", /*num_classes=*/3);
  EXPECT_TRUE(model.ok()) << model.status();
  (*model)->to(at::kDouble);
  RandomiseState(**model);
  return *model;
}

TEST(ConvertSyncBatchNorm, DenseNet121KeepsStateAndOutputs) {
  if (size() > 2) {
    // Nothing here depends on the number of ranks beyond two; on CI's two
    // cores a third rank would add ten seconds.
    GTEST_SKIP() << "run at np 1 and 2";
  }
  std::shared_ptr<chexnet::ChexnetModel> original = DenseNet();
  std::shared_ptr<chexnet::ChexnetModel> converted = DenseNet();
  ASSERT_EQ(CountLayers(*converted, /*sync=*/false), 121);
  const auto parameters = converted->named_parameters();
  const auto buffers = converted->named_buffers();

  EXPECT_EQ(convert_sync_batchnorm(*converted), 121);
  EXPECT_EQ(CountLayers(*converted, /*sync=*/false), 0);
  EXPECT_EQ(CountLayers(*converted, /*sync=*/true), 121);
  auto* norm0 =
      converted->named_modules()["features.norm0"]->as<SyncBatchNorm>();
  ASSERT_NE(norm0, nullptr);
  EXPECT_EQ(norm0->collective_name(), "syncbn.features.norm0");

  // The same names and the same tensors: weights, biases, running
  // statistics and num_batches_tracked are kept, not copied.
  const auto new_parameters = converted->named_parameters();
  const auto new_buffers = converted->named_buffers();
  ASSERT_EQ(new_parameters.keys(), parameters.keys());
  ASSERT_EQ(new_buffers.keys(), buffers.keys());
  for (const auto& item : parameters) {
    EXPECT_TRUE(new_parameters[item.key()].is_same(item.value())) << item.key();
  }
  for (const auto& item : buffers) {
    EXPECT_TRUE(new_buffers[item.key()].is_same(item.value())) << item.key();
  }
  EXPECT_TRUE(converted->is_training());

  // The same input on every rank: the global statistics are the local ones,
  // so outputs and this rank's gradients equal the original model's at any
  // number of ranks (the np 1 run is the plain comparison).
  ::torch::manual_seed(11);
  const at::Tensor images = ::torch::randn({4, 3, 32, 32}, at::kDouble);
  const at::Tensor upstream = ::torch::randn({4, 3}, at::kDouble);
  const at::Tensor expected = original->forward(images);
  (expected * upstream).sum().backward();
  const at::Tensor actual = converted->forward(images);
  (actual * upstream).sum().backward();
  EXPECT_TRUE(AllClose(actual, expected, 1e-9, 1e-9));
  // float64 throughout; the gradients pass through up to 121 batch norms
  // (some with 4 values per channel), which amplify rounding differences
  // between BatchNorm's formulas and SyncBatchNorm's to ~1e-8 relative.
  const auto original_parameters = original->named_parameters();
  for (const auto& item : converted->named_parameters()) {
    EXPECT_TRUE(AllClose(item.value().grad(),
                         original_parameters[item.key()].grad(), 1e-7, 1e-9))
        << item.key();
  }
  const auto original_buffers = original->named_buffers();
  for (const auto& item : converted->named_buffers()) {
    // running_var uses the global count, which differs with several ranks.
    if (size() > 1 && item.key().find("running_var") != std::string::npos) {
      continue;
    }
    EXPECT_TRUE(AllClose(item.value(), original_buffers[item.key()], 1e-9, 0))
        << item.key();
  }
}

// A Sequential that can be an entry of another (a non-template forward).
class StackImpl : public nn::SequentialImpl {
 public:
  using nn::SequentialImpl::SequentialImpl;
  at::Tensor forward(const at::Tensor& x) { return SequentialImpl::forward(x); }
};
TORCH_MODULE(Stack);

// Containers of every kind, nested, with BatchNorm1d/2d/3d in them.
class NestedImpl : public nn::Module {
 public:
  NestedImpl() {
    Stack inner(nn::Linear(4, 6), nn::BatchNorm1d(6));
    sequential_ = register_module(
        "seq", nn::Sequential(nn::Linear(3, 4), nn::BatchNorm1d(4), inner));
    list_ = register_module(
        "list", nn::ModuleList(nn::BatchNorm2d(6), nn::BatchNorm3d(6)));
    dict_ = register_module(
        "dict",
        nn::ModuleDict(
            std::vector<std::pair<std::string, std::shared_ptr<nn::Module>>>{
                {"norm", std::make_shared<nn::BatchNorm1dImpl>(6)}}));
    // Registered directly and not kept: forward() looks it up.
    register_module("last", nn::BatchNorm1d(6));
  }

  at::Tensor forward(const at::Tensor& x) {
    at::Tensor y = sequential_->forward(x);  // (N, 6)
    y = list_[0]->as<SyncBatchNorm>()->forward(y.view({-1, 6, 1, 1}));
    y = list_[1]->as<SyncBatchNorm>()->forward(y.view({-1, 6, 1, 1, 1}));
    y = dict_["norm"]->as<SyncBatchNorm>()->forward(y.view({-1, 6}));
    return named_children()["last"]->as<SyncBatchNorm>()->forward(y);
  }

 private:
  nn::Sequential sequential_{nullptr};
  nn::ModuleList list_{nullptr};
  nn::ModuleDict dict_{nullptr};
};
TORCH_MODULE(Nested);

TEST(ConvertSyncBatchNorm, ThroughSequentialModuleListAndModuleDict) {
  Nested model;
  model->eval();  // kept by the converted layers
  const auto state = model->named_buffers();
  EXPECT_EQ(convert_sync_batchnorm(*model), 6);
  EXPECT_EQ(CountLayers(*model, /*sync=*/false), 0);
  for (const auto& m : model->modules()) {
    if (auto* layer = m->as<SyncBatchNorm>()) {
      EXPECT_FALSE(layer->is_training());
    }
  }
  EXPECT_EQ(
      model->named_modules()["seq.2.1"]->as<SyncBatchNorm>()->collective_name(),
      "syncbn.seq.2.1");
  for (const auto& item : model->named_buffers()) {
    EXPECT_TRUE(item.value().is_same(state[item.key()])) << item.key();
  }
  // forward() reaches the new layers through the containers: training mode
  // now communicates (all ranks run it), and matches BatchNorm on one rank's
  // batch when every rank feeds the same one.
  model->train();
  ::torch::manual_seed(5);
  const at::Tensor x = ::torch::randn({4, 3});
  EXPECT_EQ(model->forward(x).sizes(), (std::vector<int64_t>{4, 6}));
  EXPECT_EQ(convert_sync_batchnorm(*model), 0) << "nothing left to convert";
}

// A BatchNorm called through a member: replacing it cannot take effect.
class MemberImpl : public nn::Module {
 public:
  MemberImpl() : norm_(register_module("norm", nn::BatchNorm2d(3))) {
    register_module("fine", nn::Sequential(nn::BatchNorm2d(3)));
  }
  at::Tensor forward(const at::Tensor& x) { return norm_->forward(x); }

 private:
  nn::BatchNorm2d norm_;
};
TORCH_MODULE(Member);

TEST(ConvertSyncBatchNorm, RefusesALayerHeldByAMemberAndChangesNothing) {
  Member model;
  try {
    convert_sync_batchnorm(*model);
    ADD_FAILURE() << "expected c10::ValueError";
  } catch (const c10::ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("'norm'"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(CountLayers(*model, /*sync=*/false), 2);
  EXPECT_EQ(CountLayers(*model, /*sync=*/true), 0);
  nn::BatchNorm2d lone(3);
  EXPECT_THROW(convert_sync_batchnorm(*lone), c10::ValueError);
}

}  // namespace
}  // namespace torch
}  // namespace kolo
