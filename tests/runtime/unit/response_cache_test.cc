// Tests of the response cache, including eviction and retired entries.
#include "runtime/core/response_cache.h"

#include <gtest/gtest.h>

namespace kolo {
namespace {

CacheEntry Entry(const std::string& name, std::vector<int64_t> shape) {
  CacheEntry e;
  e.request.name = name;
  e.request.shape = std::move(shape);
  return e;
}

TEST(ResponseCache, FindsMatchingRequests) {
  ResponseCache cache(4);
  cache.Put(0, Entry("a", {3}), 1);
  EXPECT_EQ(cache.Find("a"), 0);
  EXPECT_EQ(cache.Find("b"), -1);
  Request same = cache.Get(0)->request;
  same.rank = 2;
  EXPECT_TRUE(cache.Matches(0, same));
  same.shape = {4};
  EXPECT_FALSE(cache.Matches(0, same));
}

TEST(ResponseCache, AllgatherRequestsCarryEachRanksFirstDimension) {
  CacheEntry e = Entry("g", {2, 5});
  e.request.op = OpType::kAllgather;
  e.first_dims = {2, 7, 0};
  EXPECT_EQ(RequestForRank(e, 1).shape, (std::vector<int64_t>{7, 5}));
  EXPECT_EQ(RequestForRank(e, 2).shape, (std::vector<int64_t>{0, 5}));
}

TEST(ResponseCache, AlltoallRequestsCarryEachRanksRowsAndSplits) {
  EXPECT_TRUE(IsCacheable(OpType::kAlltoall));
  CacheEntry e = Entry("a2a", {3, 4});
  e.request.op = OpType::kAlltoall;
  e.request.splits = {1, 2};
  e.first_dims = {3, 5};
  // Row r of the matrix is rank r's splits.
  e.splits = {1, 2, 4, 1};
  EXPECT_EQ(RequestForRank(e, 0).shape, (std::vector<int64_t>{3, 4}));
  EXPECT_EQ(RequestForRank(e, 0).splits, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(RequestForRank(e, 1).shape, (std::vector<int64_t>{5, 4}));
  EXPECT_EQ(RequestForRank(e, 1).splits, (std::vector<int64_t>{4, 1}));

  // A rank's bit stands for its own rows and splits only.
  ResponseCache cache(2);
  ResponseTensor tensor;
  tensor.request = e.request;
  tensor.first_dims = e.first_dims;
  tensor.cache_slot = 0;
  ASSERT_TRUE(cache.Follow(tensor, e.splits, 1, /*fill=*/false).ok());
  Request mine = RequestForRank(e, 1);
  mine.rank = 1;
  EXPECT_TRUE(cache.Matches(0, mine));
  mine.splits = {3, 2};
  EXPECT_FALSE(cache.Matches(0, mine));
}

TEST(ResponseCache, ChoosesFreeThenLeastRecentlyUsedSlots) {
  ResponseCache cache(2);
  EXPECT_EQ(cache.ChooseSlot("a"), 0);
  cache.Put(0, Entry("a", {1}), 1);
  EXPECT_EQ(cache.ChooseSlot("a"), 0) << "a name keeps its slot";
  EXPECT_EQ(cache.ChooseSlot("b"), 1);
  cache.Put(1, Entry("b", {1}), 2);
  cache.Prune(2);
  cache.Touch(0);  // a is now more recent than b
  EXPECT_EQ(cache.ChooseSlot("c"), 1) << "evicts b, the least recently used";
}

TEST(ResponseCache, RetiredEntriesResolveForRanksThatLag) {
  ResponseCache cache(1);
  cache.Put(0, Entry("a", {1}), 1);
  cache.Prune(1);
  cache.Put(0, Entry("b", {2}), 5);  // replaces a at response 5
  bool current = true;
  const CacheEntry* old = cache.Resolve(0, /*applied_seq=*/4, &current);
  ASSERT_NE(old, nullptr);
  EXPECT_EQ(old->request.name, "a");
  EXPECT_FALSE(current);
  const CacheEntry* now = cache.Resolve(0, 5, &current);
  EXPECT_EQ(now->request.name, "b");
  EXPECT_TRUE(current);
  EXPECT_EQ(cache.ChooseSlot("c"), -1) << "a retired slot is not reused";
  cache.Prune(5);
  EXPECT_EQ(cache.ChooseSlot("c"), 0);
  EXPECT_EQ(cache.Find("a"), -1);
}

TEST(ResponseCache, ZeroCapacityCachesNothing) {
  ResponseCache cache(0);
  EXPECT_EQ(cache.ChooseSlot("a"), -1);
  EXPECT_EQ(cache.Get(0), nullptr);
}

}  // namespace
}  // namespace kolo
