// Single-process tests of kolo::torch::elastic: ElasticSampler's shares
// (every sample of an epoch exactly once whatever world sizes and batch
// sizes the steps use, the share rule of kolo/elastic.h, save and load) and
// the environment contract with kolorun.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <torch/torch.h>

#include <algorithm>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "kolo/torch.h"
#include "test_util.h"

namespace kolo {
namespace torch {
namespace elastic {
namespace {

using testing::ThrowsWith;

// The epoch's order as DistributedSampler documents it (one replica, with
// shuffle): ElasticSampler must visit the same permutation.
std::vector<size_t> ReferenceOrder(size_t n, uint64_t seed, int64_t epoch) {
  DistributedSampler reference(n, 1, 0, /*shuffle=*/true, seed);
  reference.set_epoch(epoch);
  return reference.indices();
}

ElasticSampler Reloaded(const ElasticSampler& sampler) {
  ::torch::serialize::OutputArchive out;
  sampler.save(out);
  std::ostringstream bytes;
  out.save_to(bytes);
  std::istringstream in_bytes(bytes.str());
  ::torch::serialize::InputArchive in;
  in.load_from(in_bytes);
  ElasticSampler loaded(sampler.dataset_size(), sampler.seed());
  loaded.load(in);
  return loaded;
}

// Checks one step's shares against the rule of kolo/elastic.h.
void ExpectShareRule(const std::vector<int64_t>& shares, int64_t remaining,
                     int world, int64_t batch, const std::string& where) {
  ASSERT_EQ(static_cast<int>(shares.size()), world) << where;
  int64_t rows = 0;
  for (int64_t share : shares) rows += share;
  const int64_t plain = std::min<int64_t>(world * batch, remaining);
  EXPECT_EQ(rows, remaining - plain == 1 ? plain + 1 : plain) << where;
  EXPECT_NE(remaining - rows, 1) << where << ": one sample left behind";
  int64_t smallest = rows, largest = 0;
  for (int r = 0; r < world; ++r) {
    if (r > 0) {
      EXPECT_LE(shares[r], shares[r - 1]) << where << ": rank " << r;
    }
    if (shares[r] == 0) continue;
    if (rows >= 2) EXPECT_GE(shares[r], 2) << where << ": rank " << r;
    smallest = std::min(smallest, shares[r]);
    largest = std::max(largest, shares[r]);
  }
  if (rows > 0) EXPECT_LE(largest - smallest, 1) << where;
  if (rows >= 2 * world && world * batch < remaining) {
    EXPECT_GT(shares[world - 1], 0)
        << where << ": a full step leaves a rank out";
  }
}

TEST(ElasticSampler, EveryIndexOnceWhileTheWorldChangesAtAnyStep) {
  const uint64_t seed = std::random_device{}();
  std::mt19937_64 rng(seed);
  SCOPED_TRACE("random seed " + std::to_string(seed));
  for (int trial = 0; trial < 300; ++trial) {
    const size_t n = 1 + rng() % 200;
    const size_t epoch_samples = rng() % 3 == 0 ? 0 : 1 + rng() % n;
    const int64_t epoch = static_cast<int64_t>(rng() % 5);
    const uint64_t sampler_seed = rng() % 1000;
    const std::string where = "trial " + std::to_string(trial) + " (n " +
                              std::to_string(n) + ", epoch_samples " +
                              std::to_string(epoch_samples) + ")";
    ElasticSampler state(n, sampler_seed);
    state.set_epoch(epoch, epoch_samples);
    const size_t covered = epoch_samples == 0 ? n : epoch_samples;
    std::vector<int> seen(n, 0);
    int world = 1 + static_cast<int>(rng() % 8);
    int64_t batch = 1 + static_cast<int64_t>(rng() % 9);
    int64_t steps_at_this_size = 0;
    int64_t predicted = state.steps_left(world, batch);
    while (!state.epoch_done()) {
      if (rng() % 4 == 0) {
        // A relaunch: other world and batch sizes, the state from a
        // checkpoint.
        world = 1 + static_cast<int>(rng() % 8);
        batch = 1 + static_cast<int64_t>(rng() % 9);
        state = Reloaded(state);
        predicted = state.steps_left(world, batch);
        steps_at_this_size = 0;
      }
      const int64_t remaining =
          static_cast<int64_t>(state.epoch_samples() - state.cursor());
      ExpectShareRule(ElasticSampler::StepShares(remaining, world, batch),
                      remaining, world, batch, where);
      const int64_t plain = std::min<int64_t>(world * batch, remaining);
      const int64_t expected_rows = remaining - plain == 1 ? plain + 1 : plain;
      ElasticSampler next = state;
      int64_t rows = 0;
      for (int r = 0; r < world; ++r) {
        ElasticSampler rank_sampler = state;
        const ElasticSampler::Step step =
            rank_sampler.NextStep(world, r, batch);
        rows += static_cast<int64_t>(step.indices.size());
        ASSERT_EQ(step.rows, expected_rows) << where;
        for (size_t index : step.indices) {
          ASSERT_LT(index, n) << where;
          ++seen[index];
        }
        if (r == 0) next = rank_sampler;
        ASSERT_EQ(rank_sampler.cursor(), next.cursor())
            << where << ", rank " << r;
      }
      EXPECT_EQ(next.cursor() - state.cursor(), static_cast<size_t>(rows))
          << where;
      state = next;
      ++steps_at_this_size;
      if (state.epoch_done()) {
        EXPECT_EQ(steps_at_this_size, predicted) << where;
      }
    }
    EXPECT_EQ(state.cursor(), covered) << where;
    const std::vector<size_t> order = ReferenceOrder(n, sampler_seed, epoch);
    for (size_t position = 0; position < n; ++position) {
      EXPECT_EQ(seen[order[position]], position < covered ? 1 : 0)
          << where << ": sample " << order[position] << " at position "
          << position;
    }
    EXPECT_EQ(state.NextStep(world, 0, batch).rows, 0) << where;
  }
}

TEST(ElasticSampler, SharesFollowTheDocumentedExamples) {
  using Shares = std::vector<int64_t>;
  // Full steps: batch per rank.
  EXPECT_EQ(ElasticSampler::StepShares(100, 3, 4), (Shares{4, 4, 4}));
  // One sample would be left: rank 0 takes batch + 1.
  EXPECT_EQ(ElasticSampler::StepShares(9, 2, 4), (Shares{5, 4}));
  EXPECT_EQ(ElasticSampler::StepShares(13, 3, 4), (Shares{5, 4, 4}));
  // Two left after the step is fine.
  EXPECT_EQ(ElasticSampler::StepShares(10, 2, 4), (Shares{4, 4}));
  // The tail of an epoch: lower ranks first, never a share of one.
  EXPECT_EQ(ElasticSampler::StepShares(7, 3, 4), (Shares{3, 2, 2}));
  EXPECT_EQ(ElasticSampler::StepShares(5, 4, 4), (Shares{3, 2, 0, 0}));
  EXPECT_EQ(ElasticSampler::StepShares(3, 4, 4), (Shares{3, 0, 0, 0}));
  EXPECT_EQ(ElasticSampler::StepShares(2, 2, 8), (Shares{2, 0}));
  // Batch 1: shares of two (batch norm needs two images).
  EXPECT_EQ(ElasticSampler::StepShares(50, 4, 1), (Shares{2, 2, 0, 0}));
  // Only an epoch of one sample gives a share of one.
  EXPECT_EQ(ElasticSampler::StepShares(1, 3, 4), (Shares{1, 0, 0}));
  EXPECT_EQ(ElasticSampler::StepShares(0, 2, 4), (Shares{0, 0}));
}

TEST(ElasticSampler, NextStepGivesConsecutivePositionsInRankOrder) {
  ElasticSampler sampler(20, 7);
  sampler.set_epoch(2, 11);
  const std::vector<size_t> order = ReferenceOrder(20, 7, 2);
  // 11 = 4 + 4 + 3: the second step takes 3 (a single one would remain).
  ElasticSampler rank1 = sampler;
  const ElasticSampler::Step first = rank1.NextStep(2, 1, 2);
  EXPECT_EQ(first.rows, 4);
  EXPECT_EQ(first.indices, (std::vector<size_t>{order[2], order[3]}));
  EXPECT_EQ(rank1.cursor(), 4u);
  EXPECT_EQ(sampler.steps_left(2, 2), 3);
  EXPECT_EQ(sampler.steps_left(1, 11), 1);
  const ElasticSampler::Step all = sampler.NextStep(1, 0, 11);
  EXPECT_EQ(all.indices,
            std::vector<size_t>(order.begin(), order.begin() + 11));
  EXPECT_TRUE(sampler.epoch_done());
  EXPECT_DOUBLE_EQ(sampler.epoch_fraction(), 1.0);
}

TEST(ElasticSampler, SaveAndLoadResumeMidEpoch) {
  ElasticSampler sampler(57, 11);
  sampler.set_epoch(3, 40);
  sampler.NextStep(3, 0, 4);
  sampler.NextStep(2, 1, 5);
  ASSERT_EQ(sampler.cursor(), 22u);
  ElasticSampler loaded = Reloaded(sampler);
  EXPECT_EQ(loaded.epoch(), 3);
  EXPECT_EQ(loaded.epoch_samples(), 40u);
  EXPECT_EQ(loaded.cursor(), 22u);
  ElasticSampler restarted(57, 11);
  restarted.set_epoch(3, 40, 22);
  for (int r = 0; r < 4; ++r) {
    ElasticSampler a = sampler;
    ElasticSampler b = loaded;
    ElasticSampler c = restarted;
    const std::vector<size_t> expected = a.NextStep(4, r, 3).indices;
    EXPECT_EQ(b.NextStep(4, r, 3).indices, expected) << "rank " << r;
    EXPECT_EQ(c.NextStep(4, r, 3).indices, expected) << "rank " << r;
  }
}

TEST(ElasticSampler, LoadRefusesAnotherDataSetOrSeed) {
  ElasticSampler sampler(57, 11);
  ::torch::serialize::OutputArchive out;
  sampler.save(out);
  std::ostringstream bytes;
  out.save_to(bytes);
  const auto load_into = [&bytes](ElasticSampler& target) {
    std::istringstream in_bytes(bytes.str());
    ::torch::serialize::InputArchive in;
    in.load_from(in_bytes);
    target.load(in);
  };
  ElasticSampler other_size(58, 11);
  EXPECT_TRUE(ThrowsWith([&] { load_into(other_size); },
                         "dataset_size is 57; this sampler's is 58"));
  ElasticSampler other_seed(57, 12);
  EXPECT_TRUE(ThrowsWith([&] { load_into(other_seed); },
                         "seed is 11; this sampler's is 12"));
  ::torch::serialize::InputArchive empty;
  EXPECT_TRUE(ThrowsWith([&] { sampler.load(empty); }, "no entry"));
}

TEST(ElasticSampler, BadArgumentsAreNamed) {
  EXPECT_TRUE(ThrowsWith([] { ElasticSampler(0); }, "at least one sample"));
  ElasticSampler sampler(10);
  EXPECT_TRUE(ThrowsWith([&] { sampler.set_epoch(-1); }, "epoch"));
  EXPECT_TRUE(ThrowsWith([&] { sampler.set_epoch(0, 11); },
                         "epoch_samples 11 exceeds"));
  EXPECT_TRUE(ThrowsWith([&] { sampler.set_epoch(0, 5, 6); },
                         "cursor 6 is past the epoch's 5 samples"));
  EXPECT_TRUE(ThrowsWith([&] { sampler.NextStep(2, 2, 4); },
                         "rank 2 is not in [0, 2)"));
  EXPECT_TRUE(ThrowsWith([&] { sampler.NextStep(0, 0, 4); }, "rank 0"));
  EXPECT_TRUE(ThrowsWith([&] { sampler.NextStep(2, 0, 0); },
                         "batch_size must be at least 1, got 0"));
  EXPECT_EQ(sampler.cursor(), 0u) << "a refused step must not move the cursor";
}

// Sets an environment variable for one scope (unset when value is null).
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = ::getenv(name)) previous_ = old, had_ = true;
    if (value == nullptr) {
      ::unsetenv(name);
    } else {
      ::setenv(name, value, 1);
    }
  }
  ~ScopedEnv() {
    if (had_) {
      ::setenv(name_.c_str(), previous_.c_str(), 1);
    } else {
      ::unsetenv(name_.c_str());
    }
  }

 private:
  std::string name_;
  std::string previous_;
  bool had_ = false;
};

TEST(ElasticEnvironment, RestartCountParsesOrNamesTheVariable) {
  {
    ScopedEnv unset("KOLO_ELASTIC_RESTART", nullptr);
    EXPECT_EQ(restart_count(), 0);
  }
  {
    ScopedEnv three("KOLO_ELASTIC_RESTART", "3");
    EXPECT_EQ(restart_count(), 3);
  }
  {
    // The runtime's configuration table strips blanks, as for every KOLO_*
    // integer.
    ScopedEnv padded("KOLO_ELASTIC_RESTART", " 4");
    EXPECT_EQ(restart_count(), 4);
  }
  for (const char* bad : {"", "abc", "-1", "2x", "99999999999999999999"}) {
    ScopedEnv env("KOLO_ELASTIC_RESTART", bad);
    EXPECT_TRUE(ThrowsWith([] { restart_count(); },
                           std::string("KOLO_ELASTIC_RESTART='") + bad + "'"))
        << bad;
  }
}

TEST(ElasticEnvironment, WithoutAStopFileNoStopIsRequestedAndNothingIsSent) {
  ScopedEnv unset("KOLO_ELASTIC_STOP_FILE", nullptr);
  EXPECT_FALSE(enabled());
  // kolo is not initialised in this process: a collective would throw.
  EXPECT_FALSE(stop_requested());
  ScopedEnv empty("KOLO_ELASTIC_STOP_FILE", "");
  EXPECT_FALSE(enabled());
  EXPECT_FALSE(stop_requested());
  ScopedEnv set("KOLO_ELASTIC_STOP_FILE", "/tmp/kolo-elastic-stop");
  EXPECT_TRUE(enabled());
  EXPECT_EQ(kStoppedExitCode, 75);
}

}  // namespace
}  // namespace elastic
}  // namespace torch
}  // namespace kolo
