// Implementation of the autotuner.
#include "runtime/core/autotune.h"

#include <algorithm>

#include "runtime/common/logging.h"

namespace kolo {
namespace {

double Median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t half = values.size() / 2;
  return values.size() % 2 == 1 ? values[half]
                                : (values[half - 1] + values[half]) / 2;
}

}  // namespace

Autotuner::Autotuner(const Options& options)
    : incumbent_{options.fusion_threshold_bytes, options.cycle_time_ms},
      current_(incumbent_) {
  BeginGrid(Phase::kFusion);
}

void Autotuner::BeginGrid(Phase phase) {
  phase_ = phase;
  candidates_ = {incumbent_};
  auto add = [&](const TunedParameters& p) {
    if (std::find(candidates_.begin(), candidates_.end(), p) ==
        candidates_.end()) {
      candidates_.push_back(p);
    }
  };
  if (phase == Phase::kFusion) {
    // Never above the configured size: the fusion buffers have that size.
    // 0 disables fusion (every tensor runs alone, with no copies).
    for (int64_t kib : {0, 64, 256, 1024, 4096, 16384}) {
      if (kib * 1024 <= incumbent_.fusion_threshold_bytes) {
        add({kib * 1024, incumbent_.cycle_time_ms});
      }
    }
  } else {
    for (double ms : {0.1, 0.25, 0.5, 2.0, 5.0}) {
      add({incumbent_.fusion_threshold_bytes, ms});
    }
  }
  scores_.assign(candidates_.size(), {});
  schedule_.clear();
  for (size_t i = 0; i < candidates_.size(); ++i) {
    for (int w = 0; w < kWindowsPerCandidate; ++w) schedule_.push_back(i);
  }
  next_ = 0;
  current_ = candidates_[schedule_[0]];
}

void Autotuner::BeginConfirm(Phase phase, const TunedParameters& challenger) {
  phase_ = phase;
  candidates_ = {incumbent_, challenger};
  scores_.assign(2, {});
  schedule_.clear();
  for (int round = 0; round < kConfirmRounds; ++round) {
    schedule_.push_back(0);
    schedule_.push_back(1);
  }
  next_ = 0;
  current_ = candidates_[schedule_[0]];
}

bool Autotuner::Record(int64_t tensors, int64_t bytes, absl::Time now) {
  if (done() || tensors == 0) return false;
  if (last_record_ != absl::InfinitePast()) {
    window_gap_ = std::max(window_gap_, now - last_record_);
  }
  last_record_ = now;
  if (window_start_ == absl::InfinitePast()) {
    // The first work after a change only starts the clock: it may have
    // been negotiated under the previous parameters.
    window_start_ = now;
    return false;
  }
  window_tensors_ += tensors;
  window_bytes_ += bytes;
  const absl::Duration elapsed = now - window_start_;
  const absl::Duration needed = std::min(
      std::max(kWindowTime, kGapsPerWindow * previous_gap_), kMaxWindowTime);
  if (window_tensors_ < kWindowTensors || elapsed < needed) return false;
  scores_[schedule_[next_]].push_back(static_cast<double>(window_bytes_) /
                                      absl::ToDoubleSeconds(elapsed));
  window_start_ = now;
  window_tensors_ = 0;
  window_bytes_ = 0;
  previous_gap_ = window_gap_;
  window_gap_ = absl::ZeroDuration();
  const TunedParameters before = current_;
  if (++next_ < schedule_.size()) {
    current_ = candidates_[schedule_[next_]];
  } else {
    FinishPhase();
  }
  if (before == current_) return false;
  window_start_ = absl::InfinitePast();
  return true;
}

void Autotuner::FinishPhase() {
  const bool fusion =
      phase_ == Phase::kFusion || phase_ == Phase::kConfirmFusion;
  const char* what = fusion ? "fusion threshold" : "cycle time";
  if (phase_ == Phase::kFusion || phase_ == Phase::kCycle) {
    size_t best = 0;
    for (size_t i = 0; i < candidates_.size(); ++i) {
      const double score = Median(scores_[i]);
      Log().info(
          "autotune: fusion threshold {} bytes, cycle time {} ms: "
          "{:.4g} bytes/s",
          candidates_[i].fusion_threshold_bytes, candidates_[i].cycle_time_ms,
          score);
      if (score > Median(scores_[best])) best = i;
    }
    if (best != 0) {
      BeginConfirm(fusion ? Phase::kConfirmFusion : Phase::kConfirmCycle,
                   candidates_[best]);
      return;
    }
    Log().info("autotune: keeping {} (no candidate beat it)", what);
  } else {
    const double incumbent = Median(scores_[0]);
    const double challenger = Median(scores_[1]);
    const bool wins = challenger > incumbent * (1 + kMinGain);
    Log().info(
        "autotune: {} re-measured: incumbent {:.4g} bytes/s, "
        "challenger {:.4g} bytes/s: {}",
        what, incumbent, challenger,
        wins ? "challenger wins" : "incumbent stays");
    if (wins) incumbent_ = candidates_[1];
  }
  if (fusion) {
    BeginGrid(Phase::kCycle);
  } else {
    Finish();
  }
}

void Autotuner::Finish() {
  phase_ = Phase::kDone;
  current_ = incumbent_;
  Log().warn("autotune chose fusion threshold {} bytes and cycle time {} ms",
             current_.fusion_threshold_bytes, current_.cycle_time_ms);
}

}  // namespace kolo
