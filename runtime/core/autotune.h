// Autotuner (KOLO_AUTOTUNE=1): rank 0 tunes the fusion threshold and the
// cycle time online from the throughput it measures (bytes of executed
// tensors per second of wall time).
//
// The search is coordinate descent over log-spaced grids, built to be robust
// to the noise of shared machines:
//  1. Fusion threshold first (with the configured cycle time): it is the
//     larger effect on a CPU data plane, where copying large gradients into
//     the fusion buffer can cost more than the per-collective overhead that
//     fusing saves. Every candidate runs kWindowsPerCandidate measurement
//     windows and is scored by their median (a window ends once it lasted
//     kWindowTime, covered kWindowTensors executed tensors and spanned
//     several of the workload's pauses; see below).
//  2. If a candidate scored better than the incumbent (the configured
//     value), the two are measured again, alternating window by window
//     kConfirmRounds times each, so that slow drift of the machine's load
//     hits both alike. The challenger wins only when its median beats the
//     incumbent's by kMinGain (5%); otherwise the incumbent stays. Noise alone
//     therefore does not move the choice away from the defaults.
//  3. The same for the cycle time, with the chosen fusion threshold.
// Every candidate's score and each decision are logged at info level; the
// final choice also at warning level, so it shows by default. The tuned
// values then stay for the rest of the job.
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
  // Measurement windows: at least kWindowTime and kWindowTensors, and at
  // least kGapsPerWindow times the longest pause between executions seen in
  // the previous window (at most kMaxWindowTime). Training steps execute in
  // bursts (backward) separated by pauses (forward, data loading); a window
  // that spans many steps measures throughput, one that spans about one
  // step measures where the step boundaries fell.
  static constexpr absl::Duration kWindowTime = absl::Milliseconds(400);
  static constexpr absl::Duration kMaxWindowTime = absl::Seconds(10);
  static constexpr int kGapsPerWindow = 8;
  static constexpr int64_t kWindowTensors = 200;
  static constexpr int kWindowsPerCandidate = 3;
  static constexpr int kConfirmRounds = 3;
  static constexpr double kMinGain = 0.05;

  explicit Autotuner(const Options& options);

  bool done() const { return phase_ == Phase::kDone; }
  const TunedParameters& current() const { return current_; }
  // Records executed work; returns true when the parameters changed.
  bool Record(int64_t tensors, int64_t bytes, absl::Time now);

 private:
  enum class Phase { kFusion, kConfirmFusion, kCycle, kConfirmCycle, kDone };

  // Schedules the grid of `phase` around the incumbent.
  void BeginGrid(Phase phase);
  // Schedules incumbent and challenger alternately.
  void BeginConfirm(Phase phase, const TunedParameters& challenger);
  // Called when the schedule is exhausted: decides and moves on.
  void FinishPhase();
  void Finish();

  Phase phase_ = Phase::kFusion;
  TunedParameters incumbent_;
  TunedParameters current_;
  // Distinct parameter sets of this phase and their window scores.
  std::vector<TunedParameters> candidates_;
  std::vector<std::vector<double>> scores_;
  // Candidate index of each window still to measure, in order.
  std::vector<size_t> schedule_;
  size_t next_ = 0;
  absl::Time window_start_ = absl::InfinitePast();
  absl::Time last_record_ = absl::InfinitePast();
  absl::Duration window_gap_;    // longest pause in the current window
  absl::Duration previous_gap_;  // ... in the previous window
  int64_t window_tensors_ = 0;
  int64_t window_bytes_ = 0;
};

}  // namespace kolo

#endif  // KOLO_RUNTIME_CORE_AUTOTUNE_H_
