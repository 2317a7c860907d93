// Multi-rank tests of broadcast_parameters and broadcast_optimizer_state:
// every rank ends with exactly the root's model (BatchNorm buffers included)
// and optimizer (options and per-parameter state, compared entry by entry),
// before and after the first step, for the optimizers the adapter knows and
// for others (the CheXNet example's Adadelta, LBFGS, a subclass). Each rank
// replays the root's history locally to know the expected values.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <functional>
#include <sstream>
#include <type_traits>

#include "examples/chexnet/train/adadelta.h"
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

// One step on a batch drawn with `seed`, in the model's dtype; through a
// closure, which LBFGS needs (it evaluates the loss several times).
void Step(BnNet& model, optim::Optimizer& optimizer, uint64_t seed) {
  ::torch::manual_seed(seed);
  const at::Tensor x =
      ::torch::randn({6, 5}).to(model->fc1->weight.scalar_type());
  optimizer.step([&] {
    optimizer.zero_grad();
    at::Tensor loss = model(x).pow(2).mean();
    loss.backward();
    return loss;
  });
}

// Trains `model` for `steps` steps on data that depends on `who`.
void Train(BnNet& model, optim::Optimizer& optimizer, int who, int steps) {
  for (int step = 0; step < steps; ++step) {
    Step(model, optimizer, 500 + 10 * who + step);
  }
}

// The last step every rank takes after the broadcasts: identical data.
void CommonStep(BnNet& model, optim::Optimizer& optimizer) {
  Step(model, optimizer, 999);
}

// Rank `who`'s model and optimizer after its own history.
struct History {
  BnNet model{nullptr};
  std::shared_ptr<optim::Optimizer> optimizer;
};
History HistoryOf(const OptimizerFactory& factory, int who, int steps,
                  at::ScalarType dtype = at::kFloat) {
  History history;
  ::torch::manual_seed(42);
  history.model = BnNet();
  history.model->to(dtype);
  history.optimizer = factory(history.model->parameters(), who);
  Train(history.model, *history.optimizer, who, steps);
  return history;
}

// Whether two IValues are equal exactly: tensors in dtype, device, shape
// and every bit of value; lists and tuples element by element.
bool Same(const c10::IValue& a, const c10::IValue& b) {
  if (a.isTensor() && b.isTensor()) {
    const at::Tensor& x = a.toTensor();
    const at::Tensor& y = b.toTensor();
    if (!x.defined() || !y.defined()) return x.defined() == y.defined();
    return x.scalar_type() == y.scalar_type() && x.device() == y.device() &&
           x.sizes() == y.sizes() && x.equal(y);
  }
  if (a.isList() && b.isList()) {
    const auto x = a.toListRef();
    const auto y = b.toListRef();
    if (x.size() != y.size()) return false;
    for (size_t i = 0; i < x.size(); ++i) {
      if (!Same(x[i], y[i])) return false;
    }
    return true;
  }
  if (a.isTuple() && b.isTuple()) {
    const auto& x = a.toTupleRef().elements();
    const auto& y = b.toTupleRef().elements();
    if (x.size() != y.size()) return false;
    for (size_t i = 0; i < x.size(); ++i) {
      if (!Same(x[i], y[i])) return false;
    }
    return true;
  }
  if (a.isDouble() && b.isDouble()) return a.toDouble() == b.toDouble();
  if (a.isInt() && b.isInt()) return a.toInt() == b.toInt();
  if (a.isBool() && b.isBool()) return a.toBool() == b.toBool();
  if (a.isString() && b.isString()) return a.toStringRef() == b.toStringRef();
  return a.isNone() && b.isNone();
}

// What `serializable` (options or a parameter's state) writes about itself,
// read back as (prefix + key, value) pairs in key order.
template <typename Serializable>
void AddContents(const std::string& prefix, const Serializable& serializable,
                 std::vector<std::pair<std::string, c10::IValue>>* contents) {
  ::torch::serialize::OutputArchive out;
  serializable.serialize(out);
  std::ostringstream bytes;
  out.save_to(bytes);
  const std::string data = bytes.str();
  ::torch::serialize::InputArchive in;
  in.load_from(data.data(), data.size());
  std::vector<std::string> keys = in.keys();
  std::sort(keys.begin(), keys.end());
  for (const std::string& key : keys) {
    c10::IValue value;
    ASSERT_TRUE(in.try_read(key, value)) << prefix << key;
    contents->emplace_back(prefix + key, value);
  }
}

// Everything `optimizer` holds: the defaults' and every group's options and
// every parameter's state, in parameter order (not by state-map key).
std::vector<std::pair<std::string, c10::IValue>> Contents(
    optim::Optimizer& optimizer) {
  std::vector<std::pair<std::string, c10::IValue>> contents;
  AddContents("defaults.", optimizer.defaults(), &contents);
  int index = 0;
  for (size_t g = 0; g < optimizer.param_groups().size(); ++g) {
    const auto& group = optimizer.param_groups()[g];
    AddContents("group" + std::to_string(g) + ".", group.options(), &contents);
    for (const at::Tensor& param : group.params()) {
      const std::string prefix = "param" + std::to_string(index++) + ".";
      std::ostringstream key;
      key << param.unsafeGetTensorImpl();
      const auto& state = optimizer.state();
      bool found = false;
      for (const auto& item : state) {
        std::ostringstream item_key;
        item_key << item.first;
        if (item_key.str() == key.str()) {
          AddContents(prefix, *item.second, &contents);
          found = true;
        }
      }
      if (!found) contents.emplace_back(prefix + "(no state)", c10::IValue());
    }
  }
  return contents;
}

::testing::AssertionResult SameContents(optim::Optimizer& actual,
                                        optim::Optimizer& expected) {
  const auto a = Contents(actual);
  const auto e = Contents(expected);
  for (size_t i = 0; i < std::max(a.size(), e.size()); ++i) {
    if (i >= a.size() || i >= e.size() || a[i].first != e[i].first ||
        !Same(a[i].second, e[i].second)) {
      return ::testing::AssertionFailure()
             << "entry " << i << ": expected "
             << (i < e.size() ? e[i].first : "nothing") << " = "
             << (i < e.size() ? e[i].second : c10::IValue()) << ", actual "
             << (i < a.size() ? a[i].first : "nothing") << " = "
             << (i < a.size() ? a[i].second : c10::IValue());
    }
  }
  return ::testing::AssertionSuccess();
}

// Broadcasts model and optimizer from rank 0, then checks that one common
// step leaves every rank exactly where rank 0's own history does.
void ExpectRootStateReproduced(const OptimizerFactory& factory, int root_steps,
                               int other_steps, const std::string& label,
                               at::ScalarType dtype = at::kFloat) {
  History mine =
      HistoryOf(factory, rank(), rank() == 0 ? root_steps : other_steps, dtype);
  broadcast_parameters(*mine.model, 0);
  broadcast_optimizer_state(*mine.optimizer, 0);
  History root = HistoryOf(factory, 0, root_steps, dtype);
  EXPECT_EQ(mine.optimizer->state().size(), root.optimizer->state().size())
      << label;
  EXPECT_TRUE(SameContents(*mine.optimizer, *root.optimizer)) << label;
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

// Optimizers the adapter has no field tables for travel as an archive.
// A subclass of one it knows: it may hold more, so it is serialized too.
class AdamWithExtras : public optim::Adam {
 public:
  using optim::Adam::Adam;
};

TEST(BroadcastOptimizerState, OptimizersTheAdapterDoesNotKnow) {
  struct Case {
    const char* name;
    OptimizerFactory factory;
  };
  const std::vector<Case> cases = {
      {"adadelta",
       [](std::vector<at::Tensor> p, int who) {
         return std::make_shared<chexnet::Adadelta>(
             p, chexnet::AdadeltaOptions(who == 0 ? 0.5 : 1.0)
                    .rho(who == 0 ? 0.8 : 0.9)
                    .eps(who == 0 ? 1e-5 : 1e-6)
                    .weight_decay(who == 0 ? 0.01 : 0));
       }},
      {"lbfgs",
       [](std::vector<at::Tensor> p, int who) {
         return std::make_shared<optim::LBFGS>(
             p, optim::LBFGSOptions(who == 0 ? 0.5 : 1.0)
                    .max_iter(who == 0 ? 3 : 4)
                    .history_size(who == 0 ? 2 : 5));
       }},
      {"adam_subclass",
       [](std::vector<at::Tensor> p, int who) {
         return std::make_shared<AdamWithExtras>(
             p, optim::AdamOptions(who == 0 ? 0.01 : 0.3).amsgrad(who == 0));
       }},
  };
  for (const Case& c : cases) {
    // The root has stepped, the others not or less.
    ExpectRootStateReproduced(c.factory, 2, rank() % 2,
                              std::string("unknown.") + c.name);
  }
  // The root has not stepped and the others have: every state must go.
  ExpectRootStateReproduced(cases[1].factory, 0, 1, "unknown.before.lbfgs");
  // State tensors keep the root's dtype.
  ExpectRootStateReproduced(cases[0].factory, 2, 1, "unknown.adadelta.f64",
                            at::kDouble);
}

TEST(BroadcastOptimizerState, EveryListedOptimizerTypeMatchesTheRootExactly) {
  // Options and state compared entry by entry, with a different root.
  const int root = size() - 1;
  for (int variant = 0; variant < 2; ++variant) {
    auto factory = [variant](std::vector<at::Tensor> p,
                             int who) -> std::shared_ptr<optim::Optimizer> {
      if (variant == 0) {
        return std::make_shared<optim::LBFGS>(
            p, optim::LBFGSOptions(0.1 * (who + 1)).history_size(3 + who));
      }
      return std::make_shared<chexnet::Adadelta>(
          p, chexnet::AdadeltaOptions(0.1 * (who + 1)).rho(0.5 + 0.1 * who));
    };
    History mine = HistoryOf(factory, rank(), rank() + 1);
    broadcast_parameters(*mine.model, root);
    broadcast_optimizer_state(*mine.optimizer, root);
    History expected = HistoryOf(factory, root, root + 1);
    EXPECT_TRUE(SameContents(*mine.optimizer, *expected.optimizer))
        << "variant " << variant;
    // The comparison covers options and state tensors.
    const auto contents = Contents(*expected.optimizer);
    for (const std::string key :
         {"defaults.lr", "group0.lr",
          variant == 0 ? "param0.old_dirs" : "param0.square_avg"}) {
      EXPECT_TRUE(
          std::any_of(contents.begin(), contents.end(),
                      [&key](const auto& entry) { return entry.first == key; }))
          << "variant " << variant << " lacks " << key;
    }
  }
}

TEST(BroadcastOptimizerState, DifferentOptimizersFailOnEveryRank) {
  if (size() < 2) GTEST_SKIP() << "needs two ranks to disagree";
  ::torch::manual_seed(42);
  BnNet model;
  std::shared_ptr<optim::Optimizer> optimizer;
  if (rank() == 1) {
    optimizer = std::make_shared<chexnet::Adadelta>(model->parameters());
  } else {
    optimizer = std::make_shared<optim::SGD>(model->parameters(),
                                             optim::SGDOptions(0.1));
  }
  EXPECT_TRUE(testing::ThrowsWith(
      [&] { broadcast_optimizer_state(*optimizer, 0); }, "Adadelta"));
  // A different parameter count, same type.
  std::vector<at::Tensor> params = model->parameters();
  if (rank() == 1) params.pop_back();
  optim::SGD sgd(params, optim::SGDOptions(0.1));
  EXPECT_TRUE(testing::ThrowsWith([&] { broadcast_optimizer_state(sgd, 0); },
                                  "parameter groups of"));
}

}  // namespace
}  // namespace torch
}  // namespace kolo
