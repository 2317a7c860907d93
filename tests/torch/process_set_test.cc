// Multi-rank tests of the LibTorch adapter on process sets: collectives,
// objects, metric averaging, parameter and optimizer-state broadcast, and a
// DistributedOptimizer per half of the ranks, each trained replica compared
// with one process training on its members' concatenated batches.
#include "kolo/process_set.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>
#include <vector>

#include "kolo/torch.h"
#include "test_util.h"

namespace kolo {
namespace torch {
namespace {

using testing::AllClose;
using testing::Equal;
using testing::ThrowsWith;

std::vector<int> LowerHalf() {
  std::vector<int> ranks;
  for (int r = 0; r < (size() + 1) / 2; ++r) ranks.push_back(r);
  return ranks;
}

std::vector<int> UpperHalf() {
  std::vector<int> ranks;
  for (int r = (size() + 1) / 2; r < size(); ++r) ranks.push_back(r);
  return ranks;
}

// Both halves as sets, removed again at the end of each test.
class TorchProcessSet : public ::testing::Test {
 protected:
  void SetUp() override {
    StatusOr<ProcessSet> lower = AddProcessSet(LowerHalf());
    ASSERT_TRUE(lower.ok()) << lower.status();
    StatusOr<ProcessSet> upper = AddProcessSet(UpperHalf());
    ASSERT_TRUE(upper.ok()) << upper.status();
    lower_ = *lower;
    upper_ = *upper;
    mine_ = lower_.Included() ? lower_ : upper_;
    members_ = mine_.ranks();
  }
  void TearDown() override {
    EXPECT_TRUE(RemoveProcessSet(lower_).ok());
    EXPECT_TRUE(RemoveProcessSet(upper_).ok());
  }

  ProcessSet lower_, upper_, mine_;
  std::vector<int> members_;
};

TEST_F(TorchProcessSet, CollectivesAmongTheMembers) {
  const int n = static_cast<int>(members_.size());
  at::Tensor x = at::full({3}, static_cast<double>(rank()), at::kDouble);
  at::Tensor sum = allreduce(x, "ps.x", {ReduceOp::kSum}, mine_);
  double expected = 0;
  for (int r : members_) expected += r;
  EXPECT_TRUE(Equal(sum, at::full({3}, expected, at::kDouble)));

  at::Tensor gathered =
      allgather(at::full({1, 2}, rank(), at::kLong), "ps.gather", mine_);
  ASSERT_EQ(gathered.size(0), n);
  for (int k = 0; k < n; ++k) {
    EXPECT_EQ(gathered[k][0].item<int64_t>(), members_[k]);
  }

  const int root = members_.back();  // a global rank
  at::Tensor b =
      broadcast(at::full({2}, rank(), at::kFloat), root, "ps.b", mine_);
  EXPECT_TRUE(Equal(b, at::full({2}, root, at::kFloat)));

  EXPECT_DOUBLE_EQ(metric_average(rank(), "ps.metric", mine_), expected / n);

  const std::string object = broadcast_object(
      "from rank " + std::to_string(rank()), root, "ps.object", mine_);
  EXPECT_EQ(object, "from rank " + std::to_string(root));
  const std::vector<std::string> objects =
      allgather_object(std::to_string(rank()), "ps.objects", mine_);
  ASSERT_EQ(objects.size(), members_.size());
  for (int k = 0; k < n; ++k)
    EXPECT_EQ(objects[k], std::to_string(members_[k]));

  // Outside the set: a clear error naming the rank and the set.
  const ProcessSet& other = lower_.Included() ? upper_ : lower_;
  if (other.Size() > 0) {
    EXPECT_TRUE(ThrowsWith([&] { allreduce(x, "ps.outside", {}, other); },
                           "rank " + std::to_string(rank()) +
                               " is not in process set " +
                               std::to_string(other.id())));
  }
}

// A small model, the same on every rank.
struct Net : ::torch::nn::Module {
  Net() {
    fc1 = register_module("fc1", ::torch::nn::Linear(4, 8));
    fc2 = register_module("fc2", ::torch::nn::Linear(8, 2));
  }
  at::Tensor forward(at::Tensor x) {
    return fc2->forward(::torch::tanh(fc1->forward(x)));
  }
  ::torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};

std::shared_ptr<Net> MakeNet() {
  ::torch::manual_seed(11);
  return std::make_shared<Net>();
}

// Global rank r's batch at `step` (different for every rank).
std::pair<at::Tensor, at::Tensor> Batch(int r, int step) {
  ::torch::manual_seed(100 * r + step);
  return {::torch::randn({5, 4}), ::torch::randn({5, 2})};
}

TEST_F(TorchProcessSet, DistributedOptimizerPerSetEqualsOneProcess) {
  constexpr int kSteps = 4;
  auto net = MakeNet();
  // Start from something other than the reference's weights on every rank
  // but the root, so that broadcast_parameters in the set matters.
  if (rank() != members_.front()) {
    at::NoGradGuard no_grad;
    for (auto& p : net->parameters()) p.add_(1.0);
  }
  broadcast_parameters(*net, members_.front(), mine_);
  auto sgd = std::make_shared<::torch::optim::SGD>(
      net->parameters(), ::torch::optim::SGDOptions(0.1).momentum(0.9));
  DistributedOptimizerOptions options;
  options.process_set = mine_;
  DistributedOptimizer optimizer(sgd, net->named_parameters(), options);
  broadcast_optimizer_state(optimizer, members_.back(), mine_);
  for (int step = 0; step < kSteps; ++step) {
    optimizer.zero_grad();
    auto [x, y] = Batch(rank(), step);
    ::torch::mse_loss(net->forward(x), y).backward();
    optimizer.step();
  }

  // One process on the members' concatenated batches (equal sizes: the
  // mean loss over them has the average of the members' gradients).
  auto reference = MakeNet();
  ::torch::optim::SGD reference_sgd(
      reference->parameters(), ::torch::optim::SGDOptions(0.1).momentum(0.9));
  for (int step = 0; step < kSteps; ++step) {
    reference_sgd.zero_grad();
    std::vector<at::Tensor> xs, ys;
    for (int r : members_) {
      auto [x, y] = Batch(r, step);
      xs.push_back(x);
      ys.push_back(y);
    }
    ::torch::mse_loss(reference->forward(::torch::cat(xs)), ::torch::cat(ys))
        .backward();
    reference_sgd.step();
  }
  const auto mine = net->named_parameters();
  const auto expected = reference->named_parameters();
  for (const auto& item : mine) {
    EXPECT_TRUE(AllClose(item.value(), expected[item.key()], 1e-5, 1e-6))
        << item.key();
  }
  // The other half trained on other data: its replica differs.
  const at::Tensor all =
      allgather(mine["fc2.bias"].detach().reshape({1, 2}), "ps.bias");
  if (!UpperHalf().empty()) {
    EXPECT_FALSE(all[0].equal(all[size() - 1]));
  }
}

TEST_F(TorchProcessSet, DistributedOptimizerRefusesANonMember) {
  const ProcessSet& other = lower_.Included() ? upper_ : lower_;
  if (other.Size() <= 0) GTEST_SKIP() << "the other half is empty";
  auto net = MakeNet();
  auto sgd = std::make_shared<::torch::optim::SGD>(
      net->parameters(), ::torch::optim::SGDOptions(0.1));
  DistributedOptimizerOptions options;
  options.process_set = other;
  EXPECT_TRUE(ThrowsWith(
      [&] { DistributedOptimizer(sgd, net->named_parameters(), options); },
      "is not a member"));
}

}  // namespace
}  // namespace torch
}  // namespace kolo
