// Tests of the autotuner's search with synthetic throughput.
#include "runtime/core/autotune.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <random>

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
  for (int i = 0; i < 10000000 && !tuner.done(); ++i) {
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
        std::fabs(std::log(std::max<int64_t>(p.fusion_threshold_bytes, 1024) /
                           double(4 << 20)));
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

// Multiplies the model's throughput by uniform noise of +-`noise`.
std::function<double(const TunedParameters&)> Noisy(
    std::function<double(const TunedParameters&)> model, double noise,
    unsigned seed) {
  auto rng = std::make_shared<std::mt19937>(seed);
  return [=](const TunedParameters& p) {
    std::uniform_real_distribution<double> factor(1 - noise, 1 + noise);
    return model(p) * factor(*rng);
  };
}

TEST(Autotuner, NoiseDoesNotMoveItAwayFromBetterDefaults) {
  // The defaults are 10% faster than anything else; each measurement is
  // off by up to 5%.
  auto model = [](const TunedParameters& p) {
    return p.cycle_time_ms == 1.0 && p.fusion_threshold_bytes == (64 << 20)
               ? 1.1e8
               : 1e8;
  };
  for (unsigned seed = 1; seed <= 20; ++seed) {
    int changes = 0;
    const TunedParameters best = Tune(Noisy(model, 0.05, seed), &changes);
    EXPECT_EQ(best.cycle_time_ms, 1.0) << "seed " << seed;
    EXPECT_EQ(best.fusion_threshold_bytes, 64 << 20) << "seed " << seed;
  }
}

TEST(Autotuner, FindsAClearlyBetterThresholdThroughNoise) {
  // 256 KiB is 40% faster; measurements are off by up to 10%.
  auto model = [](const TunedParameters& p) {
    return p.fusion_threshold_bytes == (256 << 10) ? 1.4e8 : 1e8;
  };
  for (unsigned seed = 1; seed <= 20; ++seed) {
    int changes = 0;
    const TunedParameters best = Tune(Noisy(model, 0.10, seed), &changes);
    EXPECT_EQ(best.fusion_threshold_bytes, 256 << 10) << "seed " << seed;
  }
}

TEST(Autotuner, WindowsSpanSeveralStepsOfABurstyWorkload) {
  // Training-like: each step executes 200 lists of 10 tensors back to back
  // (20 ms at the default rate), then pauses 100 ms (forward). 256 KiB makes
  // the bursts 4x faster, the steps 14% shorter.
  auto rate = [](const TunedParameters& p) {
    return p.fusion_threshold_bytes == (256 << 10) ? 4e8 : 1e8;
  };
  Options options;
  Autotuner tuner(options);
  const absl::Time start = absl::FromUnixSeconds(100);
  absl::Time now = start;
  for (int step = 0; step < 100000 && !tuner.done(); ++step) {
    for (int list = 0; list < 200 && !tuner.done(); ++list) {
      const int64_t bytes = 10 * 1024;
      now += absl::Seconds(bytes / rate(tuner.current()));
      tuner.Record(10, bytes, now);
    }
    now += absl::Milliseconds(100);
  }
  ASSERT_TRUE(tuner.done());
  EXPECT_EQ(tuner.current().fusion_threshold_bytes, 256 << 10);
  // 7 fusion candidates and 6 cycle times, 3 windows each, and 6 windows of
  // re-measurement: 45 windows, each spanning at least 8 pauses of 100 ms.
  EXPECT_GE(now - start, 45 * 8 * absl::Milliseconds(100));
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
