// Multi-rank test of DistributedSampler: the ranks' shards, gathered, cover
// the data set exactly once per epoch (plus the documented padding).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "kolo/torch.h"

namespace kolo {
namespace torch {
namespace {

// Every rank's indices for `epoch`, gathered in rank order.
std::vector<int64_t> Gathered(DistributedSampler& sampler, int64_t epoch,
                              const std::string& name) {
  sampler.set_epoch(epoch);
  const std::vector<size_t> mine = sampler.indices();
  at::Tensor local = ::torch::tensor(
      std::vector<int64_t>(mine.begin(), mine.end()), at::kLong);
  at::Tensor all = allgather(local, name);
  return std::vector<int64_t>(all.data_ptr<int64_t>(),
                              all.data_ptr<int64_t>() + all.numel());
}

TEST(DistributedSamplerAcrossRanks, CoversTheDataSetOncePerEpoch) {
  const size_t n = 103;
  for (bool drop_last : {false, true}) {
    DistributedSampler sampler(n, size(), rank(), true, 17, drop_last);
    std::vector<int64_t> previous;
    for (int64_t epoch = 0; epoch < 3; ++epoch) {
      const std::string label = std::string(drop_last ? "drop" : "pad") +
                                ".epoch" + std::to_string(epoch);
      std::vector<int64_t> all = Gathered(sampler, epoch, "sampler." + label);
      ASSERT_EQ(all.size(), sampler.total_size()) << label;
      EXPECT_NE(all, previous) << label << ": the order must change";
      previous = all;
      std::vector<int> seen(n, 0);
      for (int64_t index : all) {
        ASSERT_GE(index, 0);
        ASSERT_LT(index, static_cast<int64_t>(n));
        ++seen[index];
      }
      const size_t extra =
          sampler.total_size() > n ? sampler.total_size() - n : 0;
      size_t once = 0, twice = 0, never = 0;
      for (int count : seen) {
        once += count == 1;
        twice += count == 2;
        never += count == 0;
      }
      if (drop_last) {
        EXPECT_EQ(once, sampler.total_size()) << label;
        EXPECT_EQ(never, n - sampler.total_size()) << label;
      } else {
        EXPECT_EQ(never, 0u) << label;
        EXPECT_EQ(twice, extra) << label;
        EXPECT_EQ(once + twice, n) << label;
      }
    }
  }
}

}  // namespace
}  // namespace torch
}  // namespace kolo
