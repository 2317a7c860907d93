// Tests of the autotuner's search with synthetic throughput.
#include "runtime/core/autotune.h"

#include <cmath>
#include <functional>

#include <gtest/gtest.h>

namespace kolo {
namespace {

// Drives the tuner with a throughput model until it settles; returns its
// choice and how many parameter changes it announced.
TunedParameters Tune(const std::function<double(const TunedParameters&)>& model,
                    int* changes) {
  Options options;
  options.autotune = true;
  Autotuner tuner(options);
  absl::Time now = absl::FromUnixSeconds(100);
  *changes = 0;
  for (int i = 0; i < 100000 && !tuner.done(); ++i) {
    // 10 tensors of 1 KiB per response list; lists take 10 KiB / throughput.
    const int64_t bytes = 10 * 1024;
    now += absl::Seconds(bytes / model(tuner.current()));
    if (tuner.Record(10, bytes, now)) ++*changes;
  }
  EXPECT_TRUE(tuner.done());
  return tuner.current();
}

TEST(Autotuner, FindsTheBestCycleTimeAndFusionThreshold) {
  // Throughput peaks at a 0.25 ms cycle and a 4 MiB buffer.
  auto model = [](const TunedParameters& p) {
    const double cycle_penalty = std::fabs(std::log(p.cycle_time_ms / 0.25));
    const double fusion_penalty =
        std::fabs(std::log(p.fusion_threshold_bytes / double(4 << 20)));
    return 1e8 / (1 + cycle_penalty + 0.5 * fusion_penalty);
  };
  int changes = 0;
  const TunedParameters best = Tune(model, &changes);
  EXPECT_EQ(best.cycle_time_ms, 0.25);
  EXPECT_EQ(best.fusion_threshold_bytes, 4 << 20);
  EXPECT_GT(changes, 3);
}

TEST(Autotuner, KeepsTheDefaultsWhenTheyAreBest) {
  auto model = [](const TunedParameters& p) {
    return p.cycle_time_ms == 1.0 && p.fusion_threshold_bytes == (64 << 20)
               ? 2e8
               : 1e8;
  };
  int changes = 0;
  const TunedParameters best = Tune(model, &changes);
  EXPECT_EQ(best.cycle_time_ms, 1.0);
  EXPECT_EQ(best.fusion_threshold_bytes, 64 << 20);
}

TEST(Autotuner, NeverExceedsTheConfiguredFusionBuffer) {
  Options options;
  options.fusion_threshold_bytes = 2 << 20;
  Autotuner tuner(options);
  absl::Time now = absl::FromUnixSeconds(1);
  for (int i = 0; i < 100000 && !tuner.done(); ++i) {
    now += absl::Milliseconds(1);
    tuner.Record(10, 10 * 1024, now);
    EXPECT_LE(tuner.current().fusion_threshold_bytes, 2 << 20);
  }
  EXPECT_TRUE(tuner.done());
}

}  // namespace
}  // namespace kolo
