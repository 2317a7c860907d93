// Single-process tests of LearningRateWarmup's formula and its effect on the
// optimizer's parameter groups.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "kolo/torch.h"

namespace kolo {
namespace torch {
namespace {

std::shared_ptr<::torch::optim::SGD> TwoGroupSgd() {
  std::vector<::torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(std::vector<at::Tensor>{::torch::zeros({2})},
                      std::make_unique<::torch::optim::SGDOptions>(0.1));
  groups.emplace_back(std::vector<at::Tensor>{::torch::zeros({3})},
                      std::make_unique<::torch::optim::SGDOptions>(0.02));
  return std::make_shared<::torch::optim::SGD>(groups,
                                               ::torch::optim::SGDOptions(1));
}

double Lr(const ::torch::optim::Optimizer& optimizer, size_t group) {
  return optimizer.param_groups()[group].options().get_lr();
}

TEST(LearningRateWarmup, MultiplierRisesLinearlyPerBatch) {
  auto sgd = TwoGroupSgd();
  LearningRateWarmup warmup(*sgd, /*warmup_epochs=*/2, /*steps_per_epoch=*/10,
                            /*size=*/5);
  EXPECT_DOUBLE_EQ(warmup.multiplier(0, 0), 1.0);
  EXPECT_DOUBLE_EQ(warmup.multiplier(0, 5), 1.0 + 4 * 0.25);  // t = 0.5
  EXPECT_DOUBLE_EQ(warmup.multiplier(1, 0), 1.0 + 4 * 0.5);   // t = 1
  EXPECT_DOUBLE_EQ(warmup.multiplier(1, 9), 1.0 + 4 * 0.95);  // t = 1.9
  EXPECT_DOUBLE_EQ(warmup.multiplier(2, 0), 5.0);
  EXPECT_DOUBLE_EQ(warmup.multiplier(7, 3), 5.0);
}

// Elastic training's fractional progress: the same formula at any t, so a
// rate computed from samples consumed matches the per-batch one.
TEST(LearningRateWarmup, MultiplierAtFractionalProgressIsTheFormula) {
  auto sgd = TwoGroupSgd();
  LearningRateWarmup warmup(*sgd, /*warmup_epochs=*/2, /*steps_per_epoch=*/10,
                            /*size=*/5);
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    for (int64_t batch = 0; batch < 10; ++batch) {
      EXPECT_DOUBLE_EQ(warmup.multiplier_at(epoch + batch / 10.0),
                       warmup.multiplier(epoch, batch))
          << "epoch " << epoch << ", batch " << batch;
    }
  }
  EXPECT_DOUBLE_EQ(warmup.multiplier_at(0.25), 1.0 + 4 * 0.25 / 2);
  EXPECT_DOUBLE_EQ(warmup.multiplier_at(7.5), 5.0);
}

TEST(LearningRateWarmup, AdjustScalesEveryGroupFromItsBaseRate) {
  auto sgd = TwoGroupSgd();
  LearningRateWarmup warmup(*sgd, 1, 4, 3);
  EXPECT_TRUE(warmup.adjust(0, 0));
  EXPECT_DOUBLE_EQ(Lr(*sgd, 0), 0.1);
  EXPECT_DOUBLE_EQ(Lr(*sgd, 1), 0.02);
  EXPECT_TRUE(warmup.adjust(0, 2));  // t = 0.5: factor 2
  EXPECT_DOUBLE_EQ(Lr(*sgd, 0), 0.2);
  EXPECT_DOUBLE_EQ(Lr(*sgd, 1), 0.04);
  EXPECT_TRUE(warmup.adjust(1, 0));  // warm-up done: factor 3, once
  EXPECT_DOUBLE_EQ(Lr(*sgd, 0), 0.1 * 3);
  EXPECT_DOUBLE_EQ(Lr(*sgd, 1), 0.02 * 3);
  // Afterwards the learning rate belongs to the user's schedule.
  sgd->param_groups()[0].options().set_lr(0.05);
  EXPECT_FALSE(warmup.adjust(1, 1));
  EXPECT_DOUBLE_EQ(Lr(*sgd, 0), 0.05);
}

TEST(LearningRateWarmup, OneRankKeepsTheBaseRate) {
  auto sgd = TwoGroupSgd();
  LearningRateWarmup warmup(*sgd, 3, 7, 1);
  for (int64_t batch = 0; batch < 7; ++batch) {
    warmup.adjust(1, batch);
    EXPECT_DOUBLE_EQ(Lr(*sgd, 0), 0.1) << "batch " << batch;
  }
}

TEST(LearningRateWarmup, RejectsInvalidArguments) {
  auto sgd = TwoGroupSgd();
  EXPECT_THROW(LearningRateWarmup(*sgd, 0, 10, 2), c10::Error);
  EXPECT_THROW(LearningRateWarmup(*sgd, 1, 0, 2), c10::Error);
  EXPECT_THROW(LearningRateWarmup(*sgd, 1, 10, 0), c10::Error);
}

}  // namespace
}  // namespace torch
}  // namespace kolo
