// Multi-rank tests of DistributedOptimizer: training on shards equals one
// process training on the concatenated batches; gradient allreduces start
// during backward; backward_passes_per_step, sum, predivide and compression;
// unused parameters; adasum; errors.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "kolo/torch.h"
#include "test_util.h"

namespace kolo {
namespace torch {
namespace {

namespace nn = ::torch::nn;
namespace optim = ::torch::optim;
using testing::AllClose;
using testing::Equal;
using testing::FlatParameters;
using testing::IdenticalAcrossRanks;

// A small model without BatchNorm.
struct MlpImpl : nn::Module {
  MlpImpl() {
    fc1 = register_module("fc1", nn::Linear(6, 16));
    fc2 = register_module("fc2", nn::Linear(16, 3));
  }
  at::Tensor forward(const at::Tensor& x) { return fc2(::torch::tanh(fc1(x))); }
  nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(Mlp);

Mlp MakeMlp() {
  ::torch::manual_seed(7);
  return Mlp();
}

// The global batch of draw `index`: identical on every rank.
std::pair<at::Tensor, at::Tensor> GlobalBatch(int64_t index, int64_t rows) {
  ::torch::manual_seed(1000 + index);
  at::Tensor x = ::torch::randn({rows, 6});
  at::Tensor y = ::torch::randn({rows, 3});
  return {x, y};
}

at::Tensor Shard(const at::Tensor& global, int shard, int64_t rows) {
  return global.narrow(0, shard * rows, rows);
}

using OptimizerFactory =
    std::function<std::shared_ptr<optim::Optimizer>(std::vector<at::Tensor>)>;

std::shared_ptr<optim::Optimizer> SgdMomentum(std::vector<at::Tensor> p) {
  return std::make_shared<optim::SGD>(p, optim::SGDOptions(0.05).momentum(0.9));
}
std::shared_ptr<optim::Optimizer> Adam(std::vector<at::Tensor> p) {
  return std::make_shared<optim::Adam>(p, optim::AdamOptions(0.01));
}

constexpr int64_t kLocalRows = 4;

// Each rank trains on its shard of every global batch; passes per step as in
// options, each pass's loss divided by the number of passes.
at::Tensor TrainDistributed(const OptimizerFactory& factory,
                            const DistributedOptimizerOptions& options,
                            int steps) {
  Mlp model = MakeMlp();
  DistributedOptimizer optimizer(factory(model->parameters()),
                                 model->named_parameters(), options);
  const int passes = options.backward_passes_per_step;
  for (int step = 0; step < steps; ++step) {
    optimizer.zero_grad();
    for (int pass = 0; pass < passes; ++pass) {
      auto [x, y] = GlobalBatch(step * passes + pass, size() * kLocalRows);
      at::Tensor loss = ::torch::mse_loss(model(Shard(x, rank(), kLocalRows)),
                                          Shard(y, rank(), kLocalRows));
      (loss / passes).backward();
    }
    optimizer.step();
  }
  return FlatParameters(*model);
}

// One process, one step per global batch (all passes concatenated).
at::Tensor TrainReference(const OptimizerFactory& factory, int passes,
                          int steps) {
  Mlp model = MakeMlp();
  auto optimizer = factory(model->parameters());
  for (int step = 0; step < steps; ++step) {
    std::vector<at::Tensor> xs, ys;
    for (int pass = 0; pass < passes; ++pass) {
      auto [x, y] = GlobalBatch(step * passes + pass, size() * kLocalRows);
      xs.push_back(x);
      ys.push_back(y);
    }
    optimizer->zero_grad();
    ::torch::mse_loss(model(::torch::cat(xs)), ::torch::cat(ys)).backward();
    optimizer->step();
  }
  return FlatParameters(*model);
}

TEST(DistributedOptimizer, SgdMomentumEqualsOneProcessOnConcatenatedBatches) {
  const at::Tensor distributed = TrainDistributed(SgdMomentum, {}, 20);
  EXPECT_TRUE(IdenticalAcrossRanks(distributed, "sgd.params"));
  EXPECT_TRUE(
      AllClose(distributed, TrainReference(SgdMomentum, 1, 20), 1e-5, 1e-7));
}

TEST(DistributedOptimizer, AdamEqualsOneProcessOnConcatenatedBatches) {
  const at::Tensor distributed = TrainDistributed(Adam, {}, 20);
  EXPECT_TRUE(IdenticalAcrossRanks(distributed, "adam.params"));
  EXPECT_TRUE(AllClose(distributed, TrainReference(Adam, 1, 20), 1e-5, 1e-7));
}

// Overlap off: the hooks start nothing, synchronize() starts every
// allreduce; the result is the same training.
TEST(DistributedOptimizer, OverlapOffStartsEveryAllreduceInSynchronize) {
  DistributedOptimizerOptions options;
  options.overlap = Overlap::kOff;
  Mlp model = MakeMlp();
  DistributedOptimizer optimizer(SgdMomentum(model->parameters()),
                                 model->named_parameters(), options);
  for (int step = 0; step < 5; ++step) {
    optimizer.zero_grad();
    auto [x, y] = GlobalBatch(step, size() * kLocalRows);
    ::torch::mse_loss(model(Shard(x, rank(), kLocalRows)),
                      Shard(y, rank(), kLocalRows))
        .backward();
    optimizer.step();
  }
  const DistributedOptimizerStats stats = optimizer.stats();
  EXPECT_EQ(stats.allreduces_from_hooks, 0);
  EXPECT_EQ(stats.allreduces_from_synchronize, 5 * 4);  // 4 parameters
  EXPECT_FALSE(stats.overlapping);
  EXPECT_EQ(stats.overlap_decided_at_step, -1);
  EXPECT_TRUE(AllClose(FlatParameters(*model),
                       TrainReference(SgdMomentum, 1, 5), 1e-5, 1e-7));
}

// Overlap auto (the default): 3 warm-up steps, then 5 steps each way,
// alternating; the choice is made after step 13, the same on every rank,
// and the mode switches never change the result.
TEST(DistributedOptimizer, OverlapAutoMeasuresBothAndDecidesAfterStep13) {
  DistributedOptimizerOptions options;
  EXPECT_EQ(options.overlap, Overlap::kAuto);
  Mlp model = MakeMlp();
  DistributedOptimizer optimizer(SgdMomentum(model->parameters()),
                                 model->named_parameters(), options);
  int64_t from_hooks = 0;
  for (int step = 0; step < 16; ++step) {
    const bool overlapping = optimizer.stats().overlapping;
    const int64_t hooks_before = optimizer.stats().allreduces_from_hooks;
    optimizer.zero_grad();
    auto [x, y] = GlobalBatch(step, size() * kLocalRows);
    ::torch::mse_loss(model(Shard(x, rank(), kLocalRows)),
                      Shard(y, rank(), kLocalRows))
        .backward();
    optimizer.step();
    // The mode announced before the step is the one its hooks followed.
    EXPECT_EQ(optimizer.stats().allreduces_from_hooks - hooks_before,
              overlapping ? 4 : 0)
        << "step " << step;
    // Steps 4..13 alternate, starting with off.
    if (step >= 3 && step < 13) {
      EXPECT_EQ(overlapping, (step - 3) % 2 == 1) << "step " << step;
    }
    from_hooks = optimizer.stats().allreduces_from_hooks;
  }
  const DistributedOptimizerStats stats = optimizer.stats();
  EXPECT_EQ(stats.overlap_decided_at_step, 13);
  EXPECT_GT(stats.overlap_on_step_s, 0);
  EXPECT_GT(stats.overlap_off_step_s, 0);
  EXPECT_EQ(stats.overlapping,
            !(stats.overlap_off_step_s < 0.98 * stats.overlap_on_step_s));
  EXPECT_GT(from_hooks, 0);
  at::Tensor decision = at::full({1}, stats.overlapping ? 1.0 : 0.0);
  EXPECT_TRUE(IdenticalAcrossRanks(decision, "overlap.decision"));
  EXPECT_TRUE(AllClose(FlatParameters(*model),
                       TrainReference(SgdMomentum, 1, 16), 1e-5, 1e-7));
}

TEST(DistributedOptimizer, TwoBackwardPassesPerStepEqualADoubledBatch) {
  DistributedOptimizerOptions options;
  options.backward_passes_per_step = 2;
  const at::Tensor distributed = TrainDistributed(SgdMomentum, options, 10);
  EXPECT_TRUE(IdenticalAcrossRanks(distributed, "passes.params"));
  EXPECT_TRUE(
      AllClose(distributed, TrainReference(SgdMomentum, 2, 10), 1e-5, 1e-7));
}

// Gradients of one backward pass on each rank's shard, for all ranks
// (computed here on one process), flattened.
std::vector<at::Tensor> ShardGradients(int64_t batch) {
  auto [x, y] = GlobalBatch(batch, size() * kLocalRows);
  std::vector<at::Tensor> result;
  for (int r = 0; r < size(); ++r) {
    Mlp model = MakeMlp();
    ::torch::mse_loss(model(Shard(x, r, kLocalRows)), Shard(y, r, kLocalRows))
        .backward();
    std::vector<at::Tensor> grads;
    for (const at::Tensor& p : model->parameters()) {
      grads.push_back(p.grad().flatten());
    }
    result.push_back(::torch::cat(grads));
  }
  return result;
}

// Runs one backward on this rank's shard and synchronize(); returns the
// reduced gradients, flattened.
at::Tensor ReducedGradients(const DistributedOptimizerOptions& options,
                            int64_t batch) {
  Mlp model = MakeMlp();
  DistributedOptimizer optimizer(SgdMomentum(model->parameters()),
                                 model->named_parameters(), options);
  auto [x, y] = GlobalBatch(batch, size() * kLocalRows);
  ::torch::mse_loss(model(Shard(x, rank(), kLocalRows)),
                    Shard(y, rank(), kLocalRows))
      .backward();
  optimizer.synchronize();
  std::vector<at::Tensor> grads;
  for (const at::Tensor& p : model->parameters()) {
    EXPECT_EQ(p.grad().scalar_type(), at::kFloat);
    grads.push_back(p.grad().flatten());
  }
  return ::torch::cat(grads);
}

TEST(DistributedOptimizer, SumAndPredivideFactor) {
  const std::vector<at::Tensor> shards = ShardGradients(3);
  const at::Tensor sum = ::torch::stack(shards).sum(0);

  DistributedOptimizerOptions summed;
  summed.op = ReduceOp::kSum;
  EXPECT_TRUE(AllClose(ReducedGradients(summed, 3), sum, 1e-5, 1e-7));

  DistributedOptimizerOptions predivided;
  predivided.gradient_predivide_factor = 4.0;
  EXPECT_TRUE(
      AllClose(ReducedGradients(predivided, 3), sum / size(), 1e-5, 1e-7));
}

// The paper's two-vector rule, and Adasum of ranks [first, first + n) as the
// left half's result combined with the right half's.
at::Tensor AdasumPair(const at::Tensor& a, const at::Tensor& b) {
  const double dot = (a * b).sum().item<double>();
  const double aa = (a * a).sum().item<double>();
  const double bb = (b * b).sum().item<double>();
  if (aa == 0) return b;
  if (bb == 0) return a;
  return (1 - dot / (2 * aa)) * a + (1 - dot / (2 * bb)) * b;
}

at::Tensor AdasumReference(const std::vector<at::Tensor>& v, int first, int n) {
  if (n == 1) return v[first];
  return AdasumPair(AdasumReference(v, first, n / 2),
                    AdasumReference(v, first + n / 2, n / 2));
}

TEST(DistributedOptimizer, AdasumUpdateFollowsTheFormula) {
  DistributedOptimizerOptions options;
  options.op = ReduceOp::kAdasum;
  ::torch::manual_seed(11);
  nn::Linear model(5, 3);
  model->to(::torch::kFloat64);
  const double lr = 0.1;
  auto sgd =
      std::make_shared<optim::SGD>(model->parameters(), optim::SGDOptions(lr));
  if ((size() & (size() - 1)) != 0) {
    try {
      DistributedOptimizer(sgd, model->named_parameters(), options);
      ADD_FAILURE() << "adasum at " << size() << " ranks was accepted";
    } catch (const c10::ValueError& e) {
      EXPECT_NE(
          std::string(e.what()).find("this job has " + std::to_string(size())),
          std::string::npos)
          << e.what();
    }
    return;
  }
  // Every rank's batch, and the gradient each rank computes on it.
  auto batch = [](int r) {
    ::torch::manual_seed(300 + r);
    return std::make_pair(::torch::randn({4, 5}, ::torch::kFloat64),
                          ::torch::randn({4, 3}, ::torch::kFloat64));
  };
  std::vector<at::Tensor> weight_grads, bias_grads;
  for (int r = 0; r < size(); ++r) {
    at::Tensor w = model->weight.detach().clone().requires_grad_();
    at::Tensor b = model->bias.detach().clone().requires_grad_();
    auto [x, y] = batch(r);
    ::torch::mse_loss(::torch::addmm(b, x, w.t()), y).backward();
    weight_grads.push_back(w.grad());
    bias_grads.push_back(b.grad());
  }
  // Each tensor its own coefficients; no averaging, no scaling of lr.
  const at::Tensor weight =
      model->weight.detach() - lr * AdasumReference(weight_grads, 0, size());
  const at::Tensor bias =
      model->bias.detach() - lr * AdasumReference(bias_grads, 0, size());
  const at::Tensor averaged =
      model->weight.detach() - lr * ::torch::stack(weight_grads).mean(0);

  DistributedOptimizer optimizer(sgd, model->named_parameters(), options);
  optimizer.zero_grad();
  auto [x, y] = batch(rank());
  ::torch::mse_loss(model(x), y).backward();
  optimizer.step();
  EXPECT_TRUE(AllClose(model->weight.detach(), weight, 1e-12, 1e-14));
  EXPECT_TRUE(AllClose(model->bias.detach(), bias, 1e-12, 1e-14));
  EXPECT_FALSE(AllClose(model->weight.detach(), averaged, 1e-6, 1e-9))
      << "adasum should differ from the average";
  EXPECT_TRUE(IdenticalAcrossRanks(FlatParameters(*model), "adasum"));
}

TEST(DistributedOptimizer, CompressionStaysWithinTolerance) {
  const std::vector<at::Tensor> shards = ShardGradients(4);
  const at::Tensor average = ::torch::stack(shards).mean(0);
  struct Case {
    Compression compression;
    const char* name;
    at::ScalarType wire;
  };
  for (const Case& c : {Case{Compression::kFp16, "fp16", at::kHalf},
                        Case{Compression::kBf16, "bf16", at::kBFloat16}}) {
    DistributedOptimizerOptions options;
    options.compression = c.compression;
    const at::Tensor reduced = ReducedGradients(options, 4);
    EXPECT_TRUE(IdenticalAcrossRanks(reduced, std::string("grads.") + c.name));
    // The runtime widens to float32, averages and rounds once: emulated here,
    // the result may differ from it by one ulp of the wire format.
    const double ulp =
        c.wire == at::kHalf ? std::pow(2.0, -10) : std::pow(2.0, -7);
    const at::Tensor emulated = ::torch::stack(shards)
                                    .to(c.wire)
                                    .to(at::kFloat)
                                    .mean(0)
                                    .to(c.wire)
                                    .to(at::kFloat);
    EXPECT_TRUE(AllClose(reduced, emulated, ulp, 1e-7)) << c.name;
    // Against the exact average: rounding errors of the ranks' gradients.
    const double scale = ::torch::stack(shards).abs().max().item<double>();
    EXPECT_TRUE(AllClose(reduced, average, ulp, 2 * ulp * scale)) << c.name;
    // The wire format was really used: the result is rounded.
    EXPECT_FALSE(Equal(reduced, average)) << c.name;
  }
}

TEST(DistributedOptimizer, SynchronizeThenStepReducesOnce) {
  // With a sum, reducing twice would show as a factor of size().
  DistributedOptimizerOptions summed;
  summed.op = ReduceOp::kSum;
  Mlp model = MakeMlp();
  DistributedOptimizer optimizer(
      std::make_shared<optim::SGD>(model->parameters(), optim::SGDOptions(0)),
      model->named_parameters(), summed);
  auto [x, y] = GlobalBatch(5, size() * kLocalRows);
  ::torch::mse_loss(model(Shard(x, rank(), kLocalRows)),
                    Shard(y, rank(), kLocalRows))
      .backward();
  optimizer.synchronize();
  const at::Tensor reduced = model->fc1->weight.grad().clone();
  ::torch::nn::utils::clip_grad_norm_(model->parameters(), 1e9);
  optimizer.synchronize();
  optimizer.step();
  EXPECT_TRUE(Equal(model->fc1->weight.grad(), reduced));
  EXPECT_EQ(optimizer.stats().allreduces_from_hooks, 4);
  EXPECT_EQ(optimizer.stats().allreduces_from_synchronize, 0);
}

// A model whose `extra` layer only rank 0 uses and whose `unused` layer no
// rank uses.
struct BranchesImpl : nn::Module {
  BranchesImpl() {
    shared = register_module("shared", nn::Linear(6, 3));
    extra = register_module("extra", nn::Linear(6, 3));
    unused = register_module("unused", nn::Linear(6, 3));
  }
  at::Tensor forward(const at::Tensor& x, bool use_extra) {
    return use_extra ? shared(x) + extra(x) : shared(x);
  }
  nn::Linear shared{nullptr}, extra{nullptr}, unused{nullptr};
};
TORCH_MODULE(Branches);

TEST(DistributedOptimizer, UnusedParametersDoNotDeadlock) {
  ::torch::manual_seed(3);
  Branches model;
  DistributedOptimizer optimizer(
      std::make_shared<optim::SGD>(model->parameters(), optim::SGDOptions(0.1)),
      model->named_parameters());
  for (int step = 0; step < 2; ++step) {
    auto [x, y] = GlobalBatch(10 + step, size() * kLocalRows);
    // Rank 0's gradient of `extra`, computed here on every rank.
    ::torch::manual_seed(3);
    Branches copy;
    for (size_t i = 0; i < copy->parameters().size(); ++i) {
      ::torch::NoGradGuard no_grad;
      copy->parameters()[i].copy_(model->parameters()[i]);
    }
    ::torch::mse_loss(copy(Shard(x, 0, kLocalRows), true),
                      Shard(y, 0, kLocalRows))
        .backward();

    optimizer.zero_grad();
    ::torch::mse_loss(model(Shard(x, rank(), kLocalRows), rank() == 0),
                      Shard(y, rank(), kLocalRows))
        .backward();
    optimizer.synchronize();
    EXPECT_TRUE(AllClose(model->extra->weight.grad(),
                         copy->extra->weight.grad() / size(), 1e-6, 1e-8));
    EXPECT_TRUE(Equal(model->unused->weight.grad(),
                      ::torch::zeros_like(model->unused->weight)));
    EXPECT_TRUE(IdenticalAcrossRanks(model->extra->bias.grad(), "extra.bias"));
    optimizer.step();
  }
  const DistributedOptimizerStats stats = optimizer.stats();
  EXPECT_EQ(stats.steps, 2);
  EXPECT_EQ(stats.allreduces_from_hooks, 2 * (rank() == 0 ? 4 : 2));
  EXPECT_EQ(stats.allreduces_from_synchronize, 2 * (rank() == 0 ? 2 : 4));
  EXPECT_TRUE(IdenticalAcrossRanks(FlatParameters(*model), "branches"));
}

// ---- update_in_forward ----------------------------------------------------

// The Mlp's forward with DistributedOptimizer::ready() before each layer
// (gate_fc2 false: the second layer is used without it).
at::Tensor ForwardWithReady(Mlp& model, DistributedOptimizer& optimizer,
                            const at::Tensor& x, bool gate_fc2 = true) {
  optimizer.ready(*model->fc1);
  at::Tensor hidden = ::torch::tanh(model->fc1(x));
  if (gate_fc2) optimizer.ready(*model->fc2);
  return model->fc2(hidden);
}

at::Tensor TrainUpdatingInForward(const OptimizerFactory& factory, int steps,
                                  DistributedOptimizerStats* stats) {
  Mlp model = MakeMlp();
  DistributedOptimizerOptions options;
  options.update_in_forward = true;
  DistributedOptimizer optimizer(factory(model->parameters()),
                                 model->named_parameters(), options);
  for (int step = 0; step < steps; ++step) {
    optimizer.zero_grad();
    auto [x, y] = GlobalBatch(step, size() * kLocalRows);
    ::torch::mse_loss(
        ForwardWithReady(model, optimizer, Shard(x, rank(), kLocalRows)),
        Shard(y, rank(), kLocalRows))
        .backward();
    optimizer.step();
  }
  optimizer.finish_updates();
  *stats = optimizer.stats();
  return FlatParameters(*model);
}

TEST(DistributedOptimizer, UpdatesInTheForwardPassEqualOneProcess) {
  for (const auto& [name, factory] :
       std::vector<std::pair<std::string, OptimizerFactory>>{
           {"sgd", SgdMomentum}, {"adam", Adam}}) {
    SCOPED_TRACE(name);
    DistributedOptimizerStats stats;
    const at::Tensor distributed = TrainUpdatingInForward(factory, 20, &stats);
    EXPECT_TRUE(IdenticalAcrossRanks(distributed, name + ".in_forward"));
    EXPECT_TRUE(
        AllClose(distributed, TrainReference(factory, 1, 20), 1e-5, 1e-7));
    // Steps 2-20 update all four tensors from ready(); the last step's
    // update is applied by finish_updates().
    EXPECT_EQ(stats.updates_in_forward, 19 * 4);
    EXPECT_EQ(stats.updates_at_finish, 4);
    EXPECT_EQ(stats.steps, 20);
    EXPECT_EQ(stats.allreduces_from_hooks, 20 * 4);
  }
}

TEST(DistributedOptimizer, UpdatesInTheForwardPassLeaveTheStepToReady) {
  Mlp model = MakeMlp();
  DistributedOptimizerOptions options;
  options.update_in_forward = true;
  DistributedOptimizer optimizer(SgdMomentum(model->parameters()),
                                 model->named_parameters(), options);
  const at::Tensor before = FlatParameters(*model);
  auto [x, y] = GlobalBatch(0, size() * kLocalRows);
  optimizer.zero_grad();
  ::torch::mse_loss(
      ForwardWithReady(model, optimizer, Shard(x, rank(), kLocalRows)),
      Shard(y, rank(), kLocalRows))
      .backward();
  optimizer.step();
  EXPECT_TRUE(Equal(FlatParameters(*model), before))
      << "step() changed the parameters: nothing should move before ready()";
  // zero_grad() while the updates are deferred: the gradients are zeroed
  // only after their update, which therefore still sees them.
  optimizer.zero_grad();
  optimizer.ready(*model->fc1);
  EXPECT_FALSE(Equal(model->fc1->weight, before.narrow(0, 0, 6 * 16)
                                             .view({16, 6})));
  EXPECT_TRUE(Equal(model->fc1->weight.grad(),
                    ::torch::zeros_like(model->fc1->weight)));
  EXPECT_FALSE(Equal(model->fc2->weight.grad(),
                     ::torch::zeros_like(model->fc2->weight)))
      << "fc2's reduced gradient waits for its update";
  optimizer.finish_updates();
  EXPECT_TRUE(Equal(model->fc2->weight.grad(),
                    ::torch::zeros_like(model->fc2->weight)));
  // The same step without update_in_forward, on a fresh copy.
  Mlp reference = MakeMlp();
  DistributedOptimizer eager(SgdMomentum(reference->parameters()),
                             reference->named_parameters());
  eager.zero_grad();
  ::torch::mse_loss(reference(Shard(x, rank(), kLocalRows)),
                    Shard(y, rank(), kLocalRows))
      .backward();
  eager.step();
  EXPECT_TRUE(Equal(FlatParameters(*model), FlatParameters(*reference)));
}

TEST(DistributedOptimizer, ForwardWithoutReadyFailsInsteadOfUsingOldWeights) {
  Mlp model = MakeMlp();
  DistributedOptimizerOptions options;
  options.update_in_forward = true;
  DistributedOptimizer optimizer(SgdMomentum(model->parameters()),
                                 model->named_parameters(), options);
  auto [x, y] = GlobalBatch(0, size() * kLocalRows);
  for (int step = 0; step < 2; ++step) {
    optimizer.zero_grad();
    at::Tensor loss = ::torch::mse_loss(
        ForwardWithReady(model, optimizer, Shard(x, rank(), kLocalRows),
                         /*gate_fc2=*/false),
        Shard(y, rank(), kLocalRows));
    if (step == 0) {
      loss.backward();  // nothing deferred yet
      optimizer.step();
      continue;
    }
    try {
      loss.backward();
      ADD_FAILURE() << "backward used fc2's weights before their update";
    } catch (const c10::Error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("'fc2."), std::string::npos) << what;
      EXPECT_NE(what.find("ready()"), std::string::npos) << what;
    }
  }
  optimizer.finish_updates();
  EXPECT_THROW(
      {
        DistributedOptimizerOptions off;
        off.update_in_forward = true;
        off.overlap = Overlap::kOff;
        DistributedOptimizer bad(SgdMomentum(model->parameters()),
                                 model->named_parameters(), off);
      },
      c10::ValueError);
}

// A branch the forward pass never reaches gets its deferred update from the
// next step(): the parameters follow the eager optimizer's exactly.
TEST(DistributedOptimizer, UpdatesNeverReachedByReadyComeWithTheNextStep) {
  auto train = [](bool in_forward, DistributedOptimizerStats* stats) {
    ::torch::manual_seed(3);
    Branches model;
    DistributedOptimizerOptions options;
    options.update_in_forward = in_forward;
    DistributedOptimizer optimizer(
        std::make_shared<optim::SGD>(model->parameters(),
                                     optim::SGDOptions(0.1).momentum(0.9)),
        model->named_parameters(), options);
    for (int step = 0; step < 4; ++step) {
      auto [x, y] = GlobalBatch(20 + step, size() * kLocalRows);
      optimizer.zero_grad();
      optimizer.ready(*model->shared);
      if (rank() == 0) optimizer.ready(*model->extra);
      ::torch::mse_loss(model(Shard(x, rank(), kLocalRows), rank() == 0),
                        Shard(y, rank(), kLocalRows))
          .backward();
      optimizer.step();
    }
    optimizer.finish_updates();
    *stats = optimizer.stats();
    return FlatParameters(*model);
  };
  DistributedOptimizerStats deferred_stats, eager_stats;
  const at::Tensor deferred = train(true, &deferred_stats);
  const at::Tensor eager = train(false, &eager_stats);
  EXPECT_TRUE(Equal(deferred, eager));
  EXPECT_TRUE(IdenticalAcrossRanks(deferred, "branches.in_forward"));
  // 6 tensors a step: shared (and on rank 0 extra) from ready(), the rest
  // from step() or finish_updates().
  const int64_t readied = rank() == 0 ? 4 : 2;
  EXPECT_EQ(deferred_stats.updates_in_forward, 3 * readied);
  EXPECT_EQ(deferred_stats.updates_at_finish, 3 * (6 - readied) + 6);
  EXPECT_EQ(eager_stats.updates_in_forward, 0);
}

// An identity whose backward sleeps: a deliberately slow first layer, whose
// backward runs last. It records the runtime's counters when it finishes.
std::chrono::milliseconds g_slow_backward_delay{200};
RuntimeStats g_stats_after_slow_backward;

struct SlowBackward : ::torch::autograd::Function<SlowBackward> {
  static at::Tensor forward(::torch::autograd::AutogradContext*,
                            const at::Tensor& x) {
    return x.clone();
  }
  static ::torch::autograd::variable_list backward(
      ::torch::autograd::AutogradContext*,
      ::torch::autograd::variable_list grads) {
    std::this_thread::sleep_for(g_slow_backward_delay);
    g_stats_after_slow_backward = GetStats();
    return grads;
  }
};

// fc2 and fc3 (2 x 16 MiB of float32 gradients) are reduced while the slow
// layer's backward runs.
constexpr int64_t kSlowNetWidth = 16384;

struct SlowNetImpl : nn::Module {
  SlowNetImpl() {
    fc1 = register_module("fc1", nn::Linear(32, 256));
    fc2 = register_module("fc2", nn::Linear(256, kSlowNetWidth));
    fc3 = register_module("fc3", nn::Linear(kSlowNetWidth, 256));
  }
  at::Tensor forward(const at::Tensor& x) {
    return fc3(::torch::relu(fc2(SlowBackward::apply(::torch::relu(fc1(x))))));
  }
  nn::Linear fc1{nullptr}, fc2{nullptr}, fc3{nullptr};
};
TORCH_MODULE(SlowNet);

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

TEST(DistributedOptimizer, AllreducesStartWhileBackwardIsRunning) {
  constexpr int kIterations = 3;
  ::torch::manual_seed(11);
  const at::Tensor x = ::torch::randn({8, 32});
  const at::Tensor y = ::torch::randn({8, 256});

  // Overlapped: DistributedOptimizer.
  ::torch::manual_seed(12);
  SlowNet overlapped;
  DistributedOptimizerOptions on;  // the hooks, whatever auto would pick
  on.overlap = Overlap::kOn;
  DistributedOptimizer optimizer(
      std::make_shared<optim::SGD>(overlapped->parameters(),
                                   optim::SGDOptions(0.01)),
      overlapped->named_parameters(), on);
  int64_t overlapped_ns = 0;
  for (int i = 0; i < kIterations; ++i) {
    optimizer.zero_grad();
    at::Tensor loss = ::torch::mse_loss(overlapped(x), y);
    // Start backward together: ranks sharing cores drift apart otherwise.
    ASSERT_TRUE(Barrier().ok());
    const RuntimeStats before = GetStats();
    const int64_t start = NowNs();
    loss.backward();
    const int64_t backward_end = NowNs();
    optimizer.step();
    overlapped_ns += NowNs() - start;

    // fc3's and fc2's gradients were enqueued before the slow layer's
    // backward, and their allreduce ran while it slept.
    const DistributedOptimizerStats stats = optimizer.stats();
    EXPECT_GT(stats.first_enqueue_ns, start) << "iteration " << i;
    EXPECT_LT(stats.first_enqueue_ns, backward_end) << "iteration " << i;
    EXPECT_GT(g_stats_after_slow_backward.operations_enqueued,
              before.operations_enqueued)
        << "iteration " << i;
    EXPECT_GT(g_stats_after_slow_backward.last_execution_start_ns, start)
        << "no collective started before backward finished, iteration " << i;
  }
  EXPECT_EQ(optimizer.stats().allreduces_from_synchronize, 0);

  // Not overlapped: the same work, reduced after backward.
  ::torch::manual_seed(12);
  SlowNet sequential;
  optim::SGD sgd(sequential->parameters(), optim::SGDOptions(0.01));
  int64_t sequential_ns = 0;
  for (int i = 0; i < kIterations; ++i) {
    sgd.zero_grad();
    at::Tensor loss = ::torch::mse_loss(sequential(x), y);
    ASSERT_TRUE(Barrier().ok());
    const int64_t start = NowNs();
    loss.backward();
    std::vector<at::Tensor> grads;
    for (const at::Tensor& p : sequential->parameters()) {
      grads.push_back(p.grad());
    }
    grouped_allreduce_(grads, "sequential.grads");
    sgd.step();
    sequential_ns += NowNs() - start;
  }
  EXPECT_TRUE(AllClose(FlatParameters(*overlapped), FlatParameters(*sequential),
                       1e-5, 1e-7));
  std::printf(
      "[rank %d] backward+step with a %lld ms slow layer, mean of %d: "
      "sequential %.1f ms, overlapped %.1f ms, saved %.1f ms\n",
      rank(), static_cast<long long>(g_slow_backward_delay.count()),
      kIterations, sequential_ns / 1e6 / kIterations,
      overlapped_ns / 1e6 / kIterations,
      (sequential_ns - overlapped_ns) / 1e6 / kIterations);
}

TEST(DistributedOptimizer, MisuseIsReported) {
  Mlp model = MakeMlp();
  DistributedOptimizer optimizer(SgdMomentum(model->parameters()),
                                 model->named_parameters());
  auto [x, y] = GlobalBatch(0, size() * kLocalRows);
  const auto loss = [&] {
    return ::torch::mse_loss(model(Shard(x, rank(), kLocalRows)),
                             Shard(y, rank(), kLocalRows));
  };
  loss().backward();
  EXPECT_THROW(optimizer.zero_grad(), c10::Error);
  try {
    loss().backward();
    ADD_FAILURE() << "a second backward before step() was accepted";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("backward_passes_per_step"),
              std::string::npos)
        << e.what();
  }
  optimizer.synchronize();
  optimizer.zero_grad();
  loss().backward();
  optimizer.step();
  EXPECT_TRUE(IdenticalAcrossRanks(FlatParameters(*model), "misuse"));
}

TEST(DistributedOptimizer, CrossRankMismatchSurfacesFromStep) {
  // A layer whose width differs between ranks.
  nn::Linear model(4, 2 + rank());
  DistributedOptimizer optimizer(
      std::make_shared<optim::SGD>(model->parameters(), optim::SGDOptions(0.1)),
      model->named_parameters());
  model(::torch::ones({1, 4})).sum().backward();
  try {
    optimizer.step();
    ADD_FAILURE() << "no c10::Error for mismatched gradient shapes";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("grad.weight"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(optimizer.stats().steps, 0);
}

}  // namespace
}  // namespace torch
}  // namespace kolo
