// Multi-rank tests of broadcast_parameters and broadcast_optimizer_state:
// every rank ends with exactly the root's model (BatchNorm buffers included)
// and optimizer (options and per-parameter state), before and after the
// first step. Each rank replays the root's history locally to know the
// expected values.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <functional>
#include <sstream>
#include <type_traits>

#include "kolo/torch.h"
#include "test_util.h"

namespace kolo {
namespace torch {
namespace {

namespace nn = ::torch::nn;
namespace optim = ::torch::optim;
using testing::Equal;
using testing::FlatParameters;
using testing::IdenticalAcrossRanks;

struct BnNetImpl : nn::Module {
  BnNetImpl() {
    fc1 = register_module("fc1", nn::Linear(5, 8));
    bn = register_module("bn", nn::BatchNorm1d(8));
    fc2 = register_module("fc2", nn::Linear(8, 2));
  }
  at::Tensor forward(const at::Tensor& x) {
    return fc2(::torch::relu(bn(fc1(x))));
  }
  nn::Linear fc1{nullptr}, fc2{nullptr};
  nn::BatchNorm1d bn{nullptr};
};
TORCH_MODULE(BnNet);

// The model rank `who` starts from: its own seed, and who + 1 training-mode
// forward passes (so running statistics and num_batches_tracked differ).
BnNet ModelOf(int who) {
  ::torch::manual_seed(100 + who);
  BnNet net;
  for (int k = 0; k <= who; ++k) {
    net(::torch::randn({6, 5}) * (who + 1));
  }
  return net;
}

TEST(BroadcastParameters, MakesDifferentlySeededModelsIdentical) {
  for (int root : {0, size() - 1}) {
    BnNet net = ModelOf(rank());
    const BnNet expected = ModelOf(root);
    broadcast_parameters(*net, root);
    for (const auto& item : expected->named_parameters()) {
      EXPECT_TRUE(Equal(net->named_parameters()[item.key()], item.value()))
          << "parameter " << item.key() << " from root " << root;
    }
    for (const auto& item : expected->named_buffers()) {
      EXPECT_TRUE(Equal(net->named_buffers()[item.key()], item.value()))
          << "buffer " << item.key() << " from root " << root;
    }
    EXPECT_EQ(net->bn->num_batches_tracked.item<int64_t>(), root + 1);
    // The parameters still train.
    EXPECT_TRUE(net->fc1->weight.requires_grad());
  }
}

TEST(BroadcastParameters, NamedTensors) {
  ::torch::OrderedDict<std::string, at::Tensor> named;
  named.insert("a", ::torch::full({3}, rank() + 1.0));
  named.insert("b", ::torch::full({2, 2}, rank() * 7, at::kLong).t());
  broadcast_parameters(named, 1);
  EXPECT_TRUE(Equal(named["a"], ::torch::full({3}, 2.0)));
  EXPECT_TRUE(Equal(named["b"], ::torch::full({2, 2}, 7)));
}

// ---------------------------------------------------------------------------
// Optimizer state.

using OptimizerFactory = std::function<std::shared_ptr<optim::Optimizer>(
    std::vector<at::Tensor> params, int who)>;

// Trains `model` for `steps` steps on data that depends on `who`.
void Train(BnNet& model, optim::Optimizer& optimizer, int who, int steps) {
  for (int step = 0; step < steps; ++step) {
    ::torch::manual_seed(500 + 10 * who + step);
    optimizer.zero_grad();
    model(::torch::randn({6, 5})).pow(2).mean().backward();
    optimizer.step();
  }
}

// The last step every rank takes after the broadcasts: identical data.
void CommonStep(BnNet& model, optim::Optimizer& optimizer) {
  ::torch::manual_seed(999);
  optimizer.zero_grad();
  model(::torch::randn({6, 5})).pow(2).mean().backward();
  optimizer.step();
}

// Rank `who`'s model and optimizer after its own history.
struct History {
  BnNet model{nullptr};
  std::shared_ptr<optim::Optimizer> optimizer;
};
History HistoryOf(const OptimizerFactory& factory, int who, int steps) {
  History history;
  ::torch::manual_seed(42);
  history.model = BnNet();
  history.optimizer = factory(history.model->parameters(), who);
  Train(history.model, *history.optimizer, who, steps);
  return history;
}

// Broadcasts model and optimizer from rank 0, then checks that one common
// step leaves every rank exactly where rank 0's own history does.
void ExpectRootStateReproduced(const OptimizerFactory& factory, int root_steps,
                               int other_steps, const std::string& label) {
  History mine =
      HistoryOf(factory, rank(), rank() == 0 ? root_steps : other_steps);
  broadcast_parameters(*mine.model, 0);
  broadcast_optimizer_state(*mine.optimizer, 0);
  History root = HistoryOf(factory, 0, root_steps);
  EXPECT_EQ(mine.optimizer->state().size(), root.optimizer->state().size())
      << label;
  CommonStep(mine.model, *mine.optimizer);
  CommonStep(root.model, *root.optimizer);
  EXPECT_TRUE(Equal(FlatParameters(*mine.model), FlatParameters(*root.model)))
      << label;
  EXPECT_TRUE(IdenticalAcrossRanks(FlatParameters(*mine.model), label));
}

// Rank 0 and the others differ in every option, and in amsgrad.
std::shared_ptr<optim::Optimizer> AdamOf(std::vector<at::Tensor> p, int who) {
  return std::make_shared<optim::Adam>(
      p, optim::AdamOptions(who == 0 ? 0.01 : 0.3)
             .betas({who == 0 ? 0.8 : 0.9, who == 0 ? 0.99 : 0.999})
             .eps(who == 0 ? 1e-6 : 1e-8)
             .weight_decay(who == 0 ? 0.01 : 0.0)
             .amsgrad(who == 0));
}

// The state map's key: the TensorImpl address as a string in LibTorch 1.x,
// the pointer in later releases.
template <typename StateMap>
const optim::OptimizerParamState& StateOf(const StateMap& state,
                                          const at::Tensor& param) {
  if constexpr (std::is_same_v<typename StateMap::key_type, std::string>) {
    std::ostringstream key;
    key << param.unsafeGetTensorImpl();
    return *state.at(key.str());
  } else {
    return *state.at(param.unsafeGetTensorImpl());
  }
}

const optim::AdamParamState& AdamState(const optim::Optimizer& optimizer,
                                       const at::Tensor& param) {
  return static_cast<const optim::AdamParamState&>(
      StateOf(optimizer.state(), param));
}

TEST(BroadcastOptimizerState, ReproducesAdamStateExactly) {
  History mine = HistoryOf(AdamOf, rank(), rank() == 0 ? 3 : rank());
  broadcast_parameters(*mine.model, 0);
  broadcast_optimizer_state(*mine.optimizer, 0);
  const History root = HistoryOf(AdamOf, 0, 3);

  const auto& options = static_cast<const optim::AdamOptions&>(
      mine.optimizer->param_groups()[0].options());
  EXPECT_EQ(options.lr(), 0.01);
  EXPECT_EQ(std::get<0>(options.betas()), 0.8);
  EXPECT_EQ(std::get<1>(options.betas()), 0.99);
  EXPECT_EQ(options.eps(), 1e-6);
  EXPECT_EQ(options.weight_decay(), 0.01);
  EXPECT_TRUE(options.amsgrad());
  const auto& defaults =
      static_cast<const optim::AdamOptions&>(mine.optimizer->defaults());
  EXPECT_EQ(defaults.lr(), 0.01);

  const auto mine_params = mine.model->named_parameters();
  for (const auto& item : root.model->named_parameters()) {
    const auto& expected = AdamState(*root.optimizer, item.value());
    const auto& actual = AdamState(*mine.optimizer, mine_params[item.key()]);
    EXPECT_EQ(actual.step(), 3) << item.key();
    EXPECT_TRUE(Equal(actual.exp_avg(), expected.exp_avg())) << item.key();
    EXPECT_TRUE(Equal(actual.exp_avg_sq(), expected.exp_avg_sq()))
        << item.key();
    ASSERT_TRUE(actual.max_exp_avg_sq().defined()) << item.key();
    EXPECT_TRUE(Equal(actual.max_exp_avg_sq(), expected.max_exp_avg_sq()))
        << item.key();
  }
  ExpectRootStateReproduced(AdamOf, 3, 1, "adam.after");
}

TEST(BroadcastOptimizerState, BeforeTheFirstStep) {
  // Rank 0 has not stepped (no state); the others have. Afterwards no rank
  // has state, the options are rank 0's, and training proceeds identically.
  History mine = HistoryOf(AdamOf, rank(), rank() == 0 ? 0 : 2);
  broadcast_optimizer_state(*mine.optimizer, 0);
  EXPECT_TRUE(mine.optimizer->state().empty());
  EXPECT_EQ(mine.optimizer->param_groups()[0].options().get_lr(), 0.01);
  ExpectRootStateReproduced(AdamOf, 0, 2, "adam.before");
}

TEST(BroadcastOptimizerState, EveryBuiltInOptimizer) {
  struct Case {
    const char* name;
    OptimizerFactory factory;
  };
  const std::vector<Case> cases = {
      {"sgd",
       [](std::vector<at::Tensor> p, int who) {
         return std::make_shared<optim::SGD>(
             p, optim::SGDOptions(who == 0 ? 0.1 : 0.5)
                    .momentum(who == 0 ? 0.9 : 0.5)
                    .nesterov(who == 0)
                    .weight_decay(who == 0 ? 1e-3 : 0));
       }},
      {"adamw",
       [](std::vector<at::Tensor> p, int who) {
         return std::make_shared<optim::AdamW>(
             p, optim::AdamWOptions(who == 0 ? 0.02 : 0.1)
                    .weight_decay(who == 0 ? 0.1 : 0.01));
       }},
      {"adagrad",
       [](std::vector<at::Tensor> p, int who) {
         return std::make_shared<optim::Adagrad>(
             p, optim::AdagradOptions(who == 0 ? 0.05 : 0.2)
                    .lr_decay(who == 0 ? 0.01 : 0)
                    .initial_accumulator_value(who == 0 ? 0.1 : 0));
       }},
      {"rmsprop",
       [](std::vector<at::Tensor> p, int who) {
         return std::make_shared<optim::RMSprop>(
             p, optim::RMSpropOptions(who == 0 ? 0.01 : 0.05)
                    .momentum(who == 0 ? 0.5 : 0)
                    .centered(who == 0)
                    .alpha(who == 0 ? 0.9 : 0.99));
       }},
  };
  for (const Case& c : cases) {
    // The root stepped twice; the others did not (or once, for variety).
    ExpectRootStateReproduced(c.factory, 2, rank() % 2,
                              std::string("state.") + c.name);
  }
}

}  // namespace
}  // namespace torch
}  // namespace kolo
