// Single-process tests of DistributedOptimizer's argument checks: they fail
// before anything is registered or communicated, so no runtime is needed.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>

#include "kolo/torch.h"
#include "test_util.h"

namespace kolo {
namespace torch {
namespace {

using testing::ThrowsWith;

class DistributedOptimizerOptionsTest : public ::testing::Test {
 protected:
  ::torch::nn::Linear model{4, 2};
};

TEST_F(DistributedOptimizerOptionsTest, RejectsLbfgs) {
  auto lbfgs = std::make_shared<::torch::optim::LBFGS>(model->parameters());
  EXPECT_TRUE(ThrowsWith(
      [&] { DistributedOptimizer(lbfgs, model->named_parameters()); },
      "does not support LBFGS"));
}

TEST_F(DistributedOptimizerOptionsTest, RejectsInvalidOptions) {
  auto sgd = std::make_shared<::torch::optim::SGD>(
      model->parameters(), ::torch::optim::SGDOptions(0.1));
  DistributedOptimizerOptions passes;
  passes.backward_passes_per_step = 0;
  EXPECT_TRUE(ThrowsWith(
      [&] { DistributedOptimizer(sgd, model->named_parameters(), passes); },
      "backward_passes_per_step"));
  DistributedOptimizerOptions max;
  max.op = ReduceOp::kMax;
  EXPECT_TRUE(ThrowsWith(
      [&] { DistributedOptimizer(sgd, model->named_parameters(), max); },
      "average, sum or adasum"));
  DistributedOptimizerOptions predivide_sum;
  predivide_sum.op = ReduceOp::kSum;
  predivide_sum.gradient_predivide_factor = 2;
  EXPECT_TRUE(ThrowsWith(
      [&] {
        DistributedOptimizer(sgd, model->named_parameters(), predivide_sum);
      },
      "gradient_predivide_factor"));
}

TEST_F(DistributedOptimizerOptionsTest, RejectsParametersWithoutNames) {
  auto sgd = std::make_shared<::torch::optim::SGD>(
      model->parameters(), ::torch::optim::SGDOptions(0.1));
  ::torch::OrderedDict<std::string, at::Tensor> only_weight;
  only_weight.insert("weight", model->weight);
  EXPECT_TRUE(ThrowsWith([&] { DistributedOptimizer(sgd, only_weight); },
                         "not in named_parameters"));
}

}  // namespace
}  // namespace torch
}  // namespace kolo
