// LearningRateWarmup: Goyal et al.'s gradual warm-up of the learning rate to
// base_lr * size (see kolo/torch.h for the formula).
#include <algorithm>

#include "kolo/torch.h"

namespace kolo {
namespace torch {

LearningRateWarmup::LearningRateWarmup(::torch::optim::Optimizer& optimizer,
                                       double warmup_epochs,
                                       int64_t steps_per_epoch, int size)
    : optimizer_(optimizer),
      warmup_epochs_(warmup_epochs),
      steps_per_epoch_(steps_per_epoch),
      size_(size) {
  TORCH_CHECK(warmup_epochs > 0, "kolo: warmup_epochs must be positive, got ",
              warmup_epochs);
  TORCH_CHECK(steps_per_epoch > 0,
              "kolo: steps_per_epoch must be positive, got ", steps_per_epoch);
  TORCH_CHECK(size >= 1, "kolo: size must be at least 1, got ", size);
  for (const auto& group : optimizer_.param_groups()) {
    TORCH_CHECK(group.has_options(),
                "kolo: a parameter group has no options (no learning rate)");
    base_lrs_.push_back(group.options().get_lr());
  }
}

double LearningRateWarmup::Progress(int64_t epoch, int64_t batch) const {
  return static_cast<double>(epoch) +
         static_cast<double>(batch) / static_cast<double>(steps_per_epoch_);
}

double LearningRateWarmup::multiplier(int64_t epoch, int64_t batch) const {
  return multiplier_at(Progress(epoch, batch));
}

double LearningRateWarmup::multiplier_at(double progress) const {
  return 1.0 +
         (size_ - 1) * std::min(progress, warmup_epochs_) / warmup_epochs_;
}

bool LearningRateWarmup::adjust(int64_t epoch, int64_t batch) {
  if (finished_) return false;
  const double factor = multiplier(epoch, batch);
  auto& groups = optimizer_.param_groups();
  TORCH_CHECK(groups.size() == base_lrs_.size(),
              "kolo: the optimizer's parameter groups changed after the "
              "LearningRateWarmup was created");
  for (size_t i = 0; i < groups.size(); ++i) {
    groups[i].options().set_lr(base_lrs_[i] * factor);
  }
  finished_ = Progress(epoch, batch) >= warmup_epochs_;
  return true;
}

}  // namespace torch
}  // namespace kolo
