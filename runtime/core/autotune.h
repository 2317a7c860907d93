// Autotuner (KOLO_AUTOTUNE=1): rank 0 tunes the fusion threshold and the
// cycle time online from the throughput it measures.
//
// The search is coordinate descent over a small grid, robust to noise: each
// candidate runs for two measurement windows (a window ends after 100
// executed tensors or 2 s with at least one), scored by the median bytes
// per second. First the cycle time is tuned with the configured fusion
// threshold, then the fusion threshold with the best cycle time; the
// winner stays. Every trial and the final choice are logged at info level
// (the choice also at warning level, so it shows by default).
//
// Not thread-safe: owned by rank 0's background thread.
#ifndef KOLO_RUNTIME_CORE_AUTOTUNE_H_
#define KOLO_RUNTIME_CORE_AUTOTUNE_H_

#include <cstdint>
#include <vector>

#include "absl/time/time.h"
#include "kolo/options.h"

namespace kolo {

struct TunedParameters {
  int64_t fusion_threshold_bytes;
  double cycle_time_ms;
  bool operator==(const TunedParameters& o) const {
    return fusion_threshold_bytes == o.fusion_threshold_bytes &&
           cycle_time_ms == o.cycle_time_ms;
  }
};

class Autotuner {
 public:
  explicit Autotuner(const Options& options);

  bool done() const { return phase_ == Phase::kDone; }
  const TunedParameters& current() const { return current_; }
  // Records executed work; returns true when the parameters changed.
  bool Record(int64_t tensors, int64_t bytes, absl::Time now);

 private:
  enum class Phase { kCycle, kFusion, kDone };

  void BeginPhase(Phase phase);
  // Moves to the next candidate (or phase) after a candidate's windows.
  void Advance();

  Phase phase_ = Phase::kCycle;
  TunedParameters base_;
  TunedParameters current_;
  std::vector<TunedParameters> candidates_;
  std::vector<double> candidate_scores_;
  size_t candidate_ = 0;
  std::vector<double> window_scores_;
  absl::Time window_start_ = absl::InfinitePast();
  int64_t window_tensors_ = 0;
  int64_t window_bytes_ = 0;
};

}  // namespace kolo

#endif  // KOLO_RUNTIME_CORE_AUTOTUNE_H_
