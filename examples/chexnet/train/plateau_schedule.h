// Learning rate ÷ factor when the validation loss stops improving, as
// PyTorch's ReduceLROnPlateau(mode="min", threshold_mode="rel") does: an epoch
// improves when loss < best * (1 - threshold); after more than `patience`
// epochs without improvement the learning-rate factor is multiplied by
// `factor` and the count restarts.
//
// The state is three numbers, saved in checkpoints so that a resumed run makes
// the same decisions. Plain value type.
#ifndef KOLO_EXAMPLES_CHEXNET_TRAIN_PLATEAU_SCHEDULE_H_
#define KOLO_EXAMPLES_CHEXNET_TRAIN_PLATEAU_SCHEDULE_H_

#include <cstdint>
#include <limits>

namespace kolo::chexnet {

struct PlateauState {
  double best = std::numeric_limits<double>::infinity();
  int64_t bad_epochs = 0;
  // Multiplies the learning rate: 1, then factor, factor^2, ...
  double lr_factor = 1.0;
};

class PlateauSchedule {
 public:
  // REQUIRES: patience >= 0, 0 < factor < 1, 0 <= threshold < 1.
  PlateauSchedule(int64_t patience, double factor = 0.1,
                  double threshold = 1e-4)
      : patience_(patience), factor_(factor), threshold_(threshold) {}

  // Records an epoch's validation loss; returns true when it lowered the
  // learning-rate factor. A NaN loss counts as no improvement.
  bool Step(double validation_loss) {
    if (validation_loss < state_.best * (1 - threshold_)) {
      state_.best = validation_loss;
      state_.bad_epochs = 0;
      return false;
    }
    ++state_.bad_epochs;
    if (state_.bad_epochs > patience_) {
      state_.lr_factor *= factor_;
      state_.bad_epochs = 0;
      return true;
    }
    return false;
  }

  const PlateauState& state() const { return state_; }
  void set_state(const PlateauState& state) { state_ = state; }

 private:
  int64_t patience_;
  double factor_;
  double threshold_;
  PlateauState state_;
};

}  // namespace kolo::chexnet

#endif  // KOLO_EXAMPLES_CHEXNET_TRAIN_PLATEAU_SCHEDULE_H_
