// Dynamic loss scaling for float16 mixed precision (as torch.cuda.amp's
// GradScaler): the loss is multiplied by a scale S before backward so that
// small float16 gradients do not flush to zero; after the gradients have
// been reduced across ranks they are checked for inf/NaN and divided by S.
//
//  - A step with a non-finite gradient is skipped (the optimizer must not
//    step) and S is multiplied by backoff_factor.
//  - After growth_interval consecutive finite steps S is multiplied by
//    growth_factor.
//
// The inf/NaN verdict goes through `any_rank` (chexnet_train allreduces it
// with kolo), so every rank skips the same steps and the models stay equal
// even if one rank's reduced gradients differed. bfloat16 has float32's
// range and needs no scaler.
//
// Not safe for concurrent use.
#ifndef KOLO_EXAMPLES_CHEXNET_TRAIN_LOSS_SCALER_H_
#define KOLO_EXAMPLES_CHEXNET_TRAIN_LOSS_SCALER_H_

#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <vector>

namespace kolo::chexnet {

struct LossScalerOptions {
  double initial_scale = 65536.0;  // 2^16, torch.cuda.amp's default
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;
  double min_scale = 1.0;  // S never drops below this
};

class DynamicLossScaler {
 public:
  // any_rank(local) returns true when `local` is true on at least one rank.
  explicit DynamicLossScaler(LossScalerOptions options,
                             std::function<bool(bool)> any_rank);

  double scale() const { return scale_; }
  int64_t skipped_steps() const { return skipped_; }

  // loss * scale().
  ::torch::Tensor Scale(const ::torch::Tensor& loss) const;

  // Call once the gradients of `params` are reduced. When every gradient is
  // finite on every rank, divides them by scale() in place and returns true
  // (take the optimizer step); otherwise leaves them, lowers the scale and
  // returns false (skip the step). Undefined gradients are ignored.
  bool UnscaleOrSkip(const std::vector<::torch::Tensor>& params);

 private:
  LossScalerOptions options_;
  std::function<bool(bool)> any_rank_;
  double scale_;
  int64_t good_steps_ = 0;
  int64_t skipped_ = 0;
};

}  // namespace kolo::chexnet

#endif  // KOLO_EXAMPLES_CHEXNET_TRAIN_LOSS_SCALER_H_
