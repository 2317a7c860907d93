// Multi-rank tests of DistributedOptimizer as a torch::optim::Optimizer: a
// training loop written against torch::optim::Optimizer&, StepLR, step with a
// closure, torch::save/torch::load, options and state changed through either
// view (the DistributedOptimizer or the optimizer it wraps), groups added
// later, broadcast_optimizer_state, and an optimizer type LibTorch does not
// ship. Distributed runs are checked against one process training on the
// concatenated batches.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cstdio>
#include <functional>
#include <sstream>
#include <stdexcept>
#include <string>
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

struct NetImpl : nn::Module {
  NetImpl() {
    fc1 = register_module("fc1", nn::Linear(5, 12));
    fc2 = register_module("fc2", nn::Linear(12, 2));
  }
  at::Tensor forward(const at::Tensor& x) { return fc2(::torch::tanh(fc1(x))); }
  nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(Net);

Net MakeNet() {
  ::torch::manual_seed(21);
  return Net();
}

constexpr int64_t kRows = 3;  // rows per rank per step

// Step `step`'s global batch, identical on every rank: size() * kRows rows.
std::pair<at::Tensor, at::Tensor> Batch(int64_t step) {
  ::torch::manual_seed(500 + step);
  at::Tensor x = ::torch::randn({size() * kRows, 5});
  at::Tensor y = ::torch::randn({size() * kRows, 2});
  return {x, y};
}

// This rank's rows of a global batch (all of it in the single-process
// reference).
at::Tensor Mine(const at::Tensor& global, bool distributed) {
  return distributed ? global.narrow(0, rank() * kRows, kRows) : global;
}

// A training loop that knows nothing of kolo, as user code would have it.
void Train(Net& model, optim::Optimizer& optimizer, int64_t first_step,
           int64_t steps, bool distributed,
           optim::LRScheduler* scheduler = nullptr) {
  for (int64_t step = first_step; step < first_step + steps; ++step) {
    auto [x, y] = Batch(step);
    optimizer.zero_grad();
    ::torch::mse_loss(model(Mine(x, distributed)), Mine(y, distributed))
        .backward();
    optimizer.step();
    if (scheduler != nullptr) scheduler->step();
  }
}

std::shared_ptr<optim::SGD> Sgd(Net& model, double lr = 0.1) {
  return std::make_shared<optim::SGD>(model->parameters(),
                                      optim::SGDOptions(lr).momentum(0.9));
}

std::shared_ptr<optim::Adam> AdamFor(Net& model) {
  return std::make_shared<optim::Adam>(model->parameters(),
                                       optim::AdamOptions(0.01));
}

// The state map's key is the parameter's TensorImpl: printed as a string in
// LibTorch 1.x, the pointer itself in 2.x.
bool IsKeyOf(const std::string& key, const at::Tensor& p) {
  std::ostringstream address;
  address << p.unsafeGetTensorImpl();
  return key == address.str();
}
bool IsKeyOf(const void* key, const at::Tensor& p) {
  return key == p.unsafeGetTensorImpl();
}

optim::OptimizerParamState& StateOf(optim::Optimizer& optimizer,
                                    const at::Tensor& p) {
  for (auto& [key, entry] : optimizer.state()) {
    if (IsKeyOf(key, p)) return *entry;
  }
  throw std::runtime_error("no state for a parameter");
}

double Lr(const optim::Optimizer& optimizer, size_t group = 0) {
  return optimizer.param_groups().at(group).options().get_lr();
}

TEST(DistributedOptimizerDropIn, TrainsThroughTheOptimizerInterfaceWithStepLR) {
  Net model = MakeNet();
  auto sgd = Sgd(model);
  DistributedOptimizer optimizer(sgd, model->named_parameters());
  optim::StepLR scheduler(optimizer, /*step_size=*/2, /*gamma=*/0.5);
  Train(model, optimizer, 0, 7, /*distributed=*/true, &scheduler);

  Net reference = MakeNet();
  auto reference_sgd = Sgd(reference);
  optim::StepLR reference_scheduler(*reference_sgd, 2, 0.5);
  Train(reference, *reference_sgd, 0, 7, false, &reference_scheduler);

  EXPECT_TRUE(IdenticalAcrossRanks(FlatParameters(*model), "dropin.steplr"));
  EXPECT_TRUE(
      AllClose(FlatParameters(*model), FlatParameters(*reference), 1e-5, 1e-7));
  // The scheduler's last rate (0.1 * 0.5^3) is on both views; the wrapped
  // optimizer receives it at the next step.
  EXPECT_DOUBLE_EQ(Lr(optimizer), 0.0125);
  EXPECT_EQ(optimizer.stats().steps, 7);
  EXPECT_EQ(optimizer.size(), model->parameters().size());
  Train(model, optimizer, 7, 1, true);
  EXPECT_DOUBLE_EQ(Lr(*sgd), 0.0125);
}

TEST(DistributedOptimizerDropIn, StepWithAClosureReducesItsGradients) {
  Net model = MakeNet();
  // Overlap on: the closure's backward starts every allreduce from the hooks
  // (with the default, auto, step 4 would measure overlap off).
  DistributedOptimizerOptions on;
  on.overlap = Overlap::kOn;
  DistributedOptimizer optimizer(Sgd(model), model->named_parameters(), on);
  Net reference = MakeNet();
  auto reference_sgd = Sgd(reference);
  for (int64_t step = 0; step < 4; ++step) {
    auto [x, y] = Batch(step);
    at::Tensor before;
    {
      ::torch::NoGradGuard no_grad;
      before = ::torch::mse_loss(model(Mine(x, true)), Mine(y, true));
    }
    const at::Tensor loss = optimizer.step([&] {
      optimizer.zero_grad();
      at::Tensor l = ::torch::mse_loss(model(Mine(x, true)), Mine(y, true));
      l.backward();
      return l;
    });
    EXPECT_TRUE(Equal(loss, before)) << "step " << step;
    reference_sgd->step([&] {
      reference_sgd->zero_grad();
      at::Tensor l = ::torch::mse_loss(reference(x), y);
      l.backward();
      return l;
    });
  }
  EXPECT_TRUE(IdenticalAcrossRanks(FlatParameters(*model), "dropin.closure"));
  EXPECT_TRUE(
      AllClose(FlatParameters(*model), FlatParameters(*reference), 1e-5, 1e-7));
  EXPECT_EQ(optimizer.stats().allreduces_from_synchronize, 0);
}

std::string TempPath(const std::string& name) {
  return ::testing::TempDir() + "kolo_dropin_" + name + "_rank" +
         std::to_string(rank()) + "_" + std::to_string(::getpid()) + ".pt";
}

TEST(DistributedOptimizerDropIn, SaveAndLoadResumeTraining) {
  // Uninterrupted: 6 steps.
  Net straight = MakeNet();
  DistributedOptimizer straight_optimizer(AdamFor(straight),
                                          straight->named_parameters());
  Train(straight, straight_optimizer, 0, 6, true);

  // 3 steps, checkpoint, a fresh model and optimizer load it, 3 more.
  const std::string model_path = TempPath("model");
  const std::string optimizer_path = TempPath("optimizer");
  {
    Net first = MakeNet();
    DistributedOptimizer optimizer(AdamFor(first), first->named_parameters());
    Train(first, optimizer, 0, 3, true);
    ::torch::save(first, model_path);
    ::torch::save(optimizer, optimizer_path);
  }
  ::torch::manual_seed(99);  // a different initialisation, overwritten
  Net resumed;
  ::torch::load(resumed, model_path);
  auto adam = AdamFor(resumed);
  DistributedOptimizer optimizer(adam, resumed->named_parameters());
  ::torch::load(optimizer, optimizer_path);
  // Both views hold the loaded state: Adam's step count is 3.
  ASSERT_EQ(optimizer.state().size(), resumed->parameters().size());
  for (const auto& [key, entry] : optimizer.state()) {
    EXPECT_EQ(static_cast<optim::AdamParamState&>(*entry).step(), 3);
    EXPECT_TRUE(
        static_cast<optim::AdamParamState&>(*adam->state().at(key))
            .exp_avg()
            .is_same(static_cast<optim::AdamParamState&>(*entry).exp_avg()));
  }
  Train(resumed, optimizer, 3, 3, true);
  // Equal up to rounding: how kolo fuses the gradients may differ between
  // the runs, and with it the order of the sums. Adam restarting from empty
  // state would be off by about the learning rate.
  EXPECT_TRUE(AllClose(FlatParameters(*resumed), FlatParameters(*straight),
                       1e-5, 1e-7));

  // The file is the wrapped optimizer's format: a plain Adam reads it.
  Net plain_model = MakeNet();
  optim::Adam plain(plain_model->parameters(), optim::AdamOptions(0.01));
  ::torch::load(plain, optimizer_path);
  EXPECT_EQ(plain.state().size(), plain_model->parameters().size());
  std::remove(model_path.c_str());
  std::remove(optimizer_path.c_str());
}

TEST(DistributedOptimizerDropIn, OptionsChangedThroughEitherViewReachTheOther) {
  Net model = MakeNet();
  auto sgd = Sgd(model, 0.1);
  DistributedOptimizer optimizer(sgd, model->named_parameters());
  Net reference = MakeNet();
  auto reference_sgd = Sgd(reference, 0.1);
  const auto both = [&](int64_t step) {
    Train(model, optimizer, step, 1, true);
    Train(reference, *reference_sgd, step, 1, false);
  };
  both(0);
  // Through the DistributedOptimizer, as a scheduler does.
  optimizer.param_groups()[0].options().set_lr(0.05);
  static_cast<optim::SGDOptions&>(optimizer.param_groups()[0].options())
      .momentum(0.5);
  reference_sgd->param_groups()[0].options().set_lr(0.05);
  static_cast<optim::SGDOptions&>(reference_sgd->param_groups()[0].options())
      .momentum(0.5);
  EXPECT_DOUBLE_EQ(Lr(*sgd), 0.1);  // not before the next step
  both(1);
  EXPECT_DOUBLE_EQ(Lr(*sgd), 0.05);
  EXPECT_DOUBLE_EQ(
      static_cast<optim::SGDOptions&>(sgd->param_groups()[0].options())
          .momentum(),
      0.5);
  // Through the wrapped optimizer, as code written before the drop-in does.
  sgd->param_groups()[0].options().set_lr(0.2);
  reference_sgd->param_groups()[0].options().set_lr(0.2);
  both(2);
  EXPECT_DOUBLE_EQ(Lr(optimizer), 0.2);
  EXPECT_DOUBLE_EQ(Lr(*sgd), 0.2);
  // Both changed: the DistributedOptimizer's view wins.
  sgd->param_groups()[0].options().set_lr(0.3);
  optimizer.param_groups()[0].options().set_lr(0.01);
  reference_sgd->param_groups()[0].options().set_lr(0.01);
  both(3);
  EXPECT_DOUBLE_EQ(Lr(optimizer), 0.01);
  EXPECT_DOUBLE_EQ(Lr(*sgd), 0.01);
  EXPECT_TRUE(
      AllClose(FlatParameters(*model), FlatParameters(*reference), 1e-5, 1e-7));
}

TEST(DistributedOptimizerDropIn, StateIsSharedAndResetsThroughEitherView) {
  Net model = MakeNet();
  auto sgd = Sgd(model);
  DistributedOptimizer optimizer(sgd, model->named_parameters());
  Net reference = MakeNet();
  auto reference_sgd = Sgd(reference);
  Train(model, optimizer, 0, 2, true);
  Train(reference, *reference_sgd, 0, 2, false);
  ASSERT_EQ(optimizer.state().size(), sgd->state().size());
  for (const auto& [key, entry] : sgd->state()) {
    EXPECT_TRUE(
        static_cast<optim::SGDParamState&>(*optimizer.state().at(key))
            .momentum_buffer()
            .is_same(
                static_cast<optim::SGDParamState&>(*entry).momentum_buffer()));
  }
  // Erasing momentum through the DistributedOptimizer reaches the wrapped
  // optimizer at the next step.
  optimizer.state().clear();
  reference_sgd->state().clear();
  Train(model, optimizer, 2, 2, true);
  Train(reference, *reference_sgd, 2, 2, false);
  EXPECT_TRUE(
      AllClose(FlatParameters(*model), FlatParameters(*reference), 1e-5, 1e-7));
  // Through the wrapped optimizer too.
  sgd->state().clear();
  reference_sgd->state().clear();
  Train(model, optimizer, 4, 2, true);
  Train(reference, *reference_sgd, 4, 2, false);
  EXPECT_TRUE(
      AllClose(FlatParameters(*model), FlatParameters(*reference), 1e-5, 1e-7));
  EXPECT_EQ(optimizer.state().size(), model->parameters().size());
}

TEST(DistributedOptimizerDropIn, GroupsAddedLaterOnEitherView) {
  Net model = MakeNet();
  auto sgd = std::make_shared<optim::SGD>(model->fc1->parameters(),
                                          optim::SGDOptions(0.1));
  DistributedOptimizer optimizer(sgd, model->named_parameters());
  optimizer.add_param_group(optim::OptimizerParamGroup(
      model->fc2->parameters(), std::make_unique<optim::SGDOptions>(0.05)));
  Net reference = MakeNet();
  optim::SGD reference_sgd(reference->fc1->parameters(),
                           optim::SGDOptions(0.1));
  reference_sgd.add_param_group(optim::OptimizerParamGroup(
      reference->fc2->parameters(), std::make_unique<optim::SGDOptions>(0.05)));
  Train(model, optimizer, 0, 3, true);
  Train(reference, reference_sgd, 0, 3, false);
  ASSERT_EQ(sgd->param_groups().size(), 2u);
  EXPECT_DOUBLE_EQ(Lr(*sgd, 1), 0.05);
  EXPECT_TRUE(
      AllClose(FlatParameters(*model), FlatParameters(*reference), 1e-5, 1e-7));

  // A group of parameters that have no hook would not be reduced.
  nn::Linear stranger(2, 2);
  optimizer.add_param_group(optim::OptimizerParamGroup(stranger->parameters()));
  EXPECT_THROW(Train(model, optimizer, 3, 1, true), c10::Error);
}

TEST(DistributedOptimizerDropIn, BroadcastOptimizerStateThroughTheWrapper) {
  Net model = MakeNet();
  auto adam = std::make_shared<optim::Adam>(
      model->parameters(), optim::AdamOptions(0.01 * (rank() + 1)));
  // Rank-dependent state: each rank steps a different number of times on its
  // own data, as a plain optimizer (before the hooks exist).
  for (int i = 0; i <= rank(); ++i) {
    auto [x, y] = Batch(40 + rank());
    adam->zero_grad();
    ::torch::mse_loss(model(x), y).backward();
    adam->step();
  }
  DistributedOptimizer optimizer(adam, model->named_parameters());
  broadcast_parameters(*model, 0);
  broadcast_optimizer_state(optimizer, 0);
  EXPECT_DOUBLE_EQ(Lr(optimizer), 0.01);
  EXPECT_DOUBLE_EQ(Lr(*adam), 0.01);
  ASSERT_EQ(optimizer.state().size(), model->parameters().size());
  for (const auto& [key, entry] : optimizer.state()) {
    EXPECT_EQ(static_cast<optim::AdamParamState&>(*entry).step(), 1);
  }
  for (const at::Tensor& p : model->parameters()) {
    const auto& state = static_cast<optim::AdamParamState&>(StateOf(*adam, p));
    EXPECT_EQ(state.step(), 1);
    EXPECT_TRUE(IdenticalAcrossRanks(state.exp_avg(), "dropin.exp_avg"));
  }
  Train(model, optimizer, 50, 2, true);
  EXPECT_TRUE(IdenticalAcrossRanks(FlatParameters(*model), "dropin.bcast"));
}

// An optimizer LibTorch does not ship: its options are compared through
// their serialized form.
struct PlainSgdOptions
    : public optim::OptimizerCloneableOptions<PlainSgdOptions> {
  explicit PlainSgdOptions(double lr) : lr_(lr) {}
  double get_lr() const override { return lr_; }
  void set_lr(double lr) override { lr_ = lr; }
  void serialize(::torch::serialize::OutputArchive& archive) const override {
    archive.write("lr", c10::IValue(lr_));
  }
  void serialize(::torch::serialize::InputArchive& archive) override {
    c10::IValue lr;
    archive.read("lr", lr);
    lr_ = lr.toDouble();
  }
  double lr_;
};

class PlainSgd : public optim::Optimizer {
 public:
  PlainSgd(std::vector<at::Tensor> params, double lr)
      : Optimizer({optim::OptimizerParamGroup(std::move(params))},
                  std::make_unique<PlainSgdOptions>(lr)) {}
  at::Tensor step(LossClosure closure = nullptr) override {
    ::torch::NoGradGuard no_grad;
    for (auto& group : param_groups_) {
      for (auto& p : group.params()) {
        if (p.grad().defined()) p.sub_(p.grad() * group.options().get_lr());
      }
    }
    return {};
  }
};

TEST(DistributedOptimizerDropIn, OptimizerTypesLibTorchDoesNotShip) {
  Net model = MakeNet();
  auto plain = std::make_shared<PlainSgd>(model->parameters(), 0.1);
  DistributedOptimizer optimizer(plain, model->named_parameters());
  Net reference = MakeNet();
  optim::SGD reference_sgd(reference->parameters(), optim::SGDOptions(0.1));
  optim::StepLR scheduler(optimizer, 1, 0.5);
  optim::StepLR reference_scheduler(reference_sgd, 1, 0.5);
  Train(model, optimizer, 0, 3, true, &scheduler);
  Train(reference, reference_sgd, 0, 3, false, &reference_scheduler);
  Train(model, optimizer, 3, 1, true);
  Train(reference, reference_sgd, 3, 1, false);
  EXPECT_DOUBLE_EQ(Lr(*plain), 0.025);
  plain->param_groups()[0].options().set_lr(0.3);
  reference_sgd.param_groups()[0].options().set_lr(0.3);
  Train(model, optimizer, 4, 1, true);
  Train(reference, reference_sgd, 4, 1, false);
  EXPECT_DOUBLE_EQ(Lr(optimizer), 0.3);
  EXPECT_TRUE(
      AllClose(FlatParameters(*model), FlatParameters(*reference), 1e-5, 1e-7));
}

}  // namespace
}  // namespace torch
}  // namespace kolo
