// Implementation of the autotuner.
#include "runtime/core/autotune.h"

#include <algorithm>

#include "runtime/common/logging.h"

namespace kolo {
namespace {

constexpr int64_t kWindowTensors = 100;
constexpr absl::Duration kWindowTime = absl::Seconds(2);
constexpr int kWindowsPerCandidate = 2;

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

}  // namespace

Autotuner::Autotuner(const Options& options)
    : base_{options.fusion_threshold_bytes, options.cycle_time_ms},
      current_(base_) {
  BeginPhase(Phase::kCycle);
}

void Autotuner::BeginPhase(Phase phase) {
  phase_ = phase;
  candidates_.clear();
  candidate_scores_.clear();
  candidate_ = 0;
  if (phase == Phase::kCycle) {
    for (double cycle : {base_.cycle_time_ms, 0.1, 0.25, 0.5, 2.0, 5.0}) {
      TunedParameters p{base_.fusion_threshold_bytes, cycle};
      if (std::find(candidates_.begin(), candidates_.end(), p) ==
          candidates_.end()) {
        candidates_.push_back(p);
      }
    }
  } else if (phase == Phase::kFusion) {
    // Never above the configured size: the fusion buffers have that size.
    for (int64_t mib : {int64_t{0}, int64_t{1}, int64_t{4}, int64_t{16}}) {
      TunedParameters p{mib == 0 ? base_.fusion_threshold_bytes : mib << 20,
                        base_.cycle_time_ms};
      if (p.fusion_threshold_bytes <= base_.fusion_threshold_bytes &&
          std::find(candidates_.begin(), candidates_.end(), p) ==
              candidates_.end()) {
        candidates_.push_back(p);
      }
    }
  }
  if (!candidates_.empty()) current_ = candidates_.front();
}

bool Autotuner::Record(int64_t tensors, int64_t bytes, absl::Time now) {
  if (done() || tensors == 0) return false;
  if (window_start_ == absl::InfinitePast()) {
    // The first work after a change only starts the clock.
    window_start_ = now;
    return false;
  }
  window_tensors_ += tensors;
  window_bytes_ += bytes;
  const absl::Duration elapsed = now - window_start_;
  if (window_tensors_ < kWindowTensors && elapsed < kWindowTime) return false;
  window_scores_.push_back(static_cast<double>(window_bytes_) /
                           std::max(absl::ToDoubleSeconds(elapsed), 1e-9));
  window_start_ = now;
  window_tensors_ = 0;
  window_bytes_ = 0;
  if (static_cast<int>(window_scores_.size()) < kWindowsPerCandidate) {
    return false;
  }
  const TunedParameters before = current_;
  Advance();
  window_start_ = absl::InfinitePast();
  return !(before == current_);
}

void Autotuner::Advance() {
  const double score = Median(window_scores_);
  window_scores_.clear();
  candidate_scores_.push_back(score);
  Log().info("autotune: fusion threshold {} bytes, cycle time {} ms: {:.3g} "
             "bytes/s",
             current_.fusion_threshold_bytes, current_.cycle_time_ms, score);
  if (++candidate_ < candidates_.size()) {
    current_ = candidates_[candidate_];
    return;
  }
  const size_t best = std::max_element(candidate_scores_.begin(),
                                       candidate_scores_.end()) -
                      candidate_scores_.begin();
  base_ = candidates_[best];
  if (phase_ == Phase::kCycle) {
    BeginPhase(Phase::kFusion);
    return;
  }
  phase_ = Phase::kDone;
  current_ = base_;
  Log().warn("autotune chose fusion threshold {} bytes and cycle time {} ms "
             "({:.3g} bytes/s)",
             current_.fusion_threshold_bytes, current_.cycle_time_ms,
             candidate_scores_[best]);
}

}  // namespace kolo
