// Tests of rank 0's negotiation logic, with simulated ranks.
#include "runtime/core/coordinator.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>

namespace kolo {
namespace {

const absl::Time kStart = absl::FromUnixSeconds(1000);

Request Allreduce(int rank, const std::string& name,
                  std::vector<int64_t> shape = {4}) {
  Request r;
  r.rank = rank;
  r.op = OpType::kAllreduce;
  r.name = name;
  r.dtype = DataType::kFloat32;
  r.shape = std::move(shape);
  r.reduce_op = ReduceOp::kSum;
  return r;
}

RequestList List(int rank, std::vector<Request> requests,
                 std::vector<int32_t> slots = {}, uint64_t applied = 0) {
  RequestList list;
  list.rank = rank;
  list.requests = std::move(requests);
  list.cache_slots = std::move(slots);
  list.applied_seq = applied;
  return list;
}

std::vector<std::string> TensorNames(const ResponseList& list) {
  std::vector<std::string> names;
  for (const Response& r : list.responses) {
    for (const ResponseTensor& t : r.tensors) names.push_back(t.request.name);
  }
  return names;
}

Options TestOptions() {
  Options options;
  options.cache_capacity = 8;
  options.fusion_threshold_bytes = 1 << 20;
  return options;
}

TEST(Coordinator, ReleasesATensorOnceEveryRankSubmittedIt) {
  Coordinator c(3, TestOptions());
  ASSERT_TRUE(c.HandleRequestList(List(0, {Allreduce(0, "a")}), kStart).ok());
  ASSERT_TRUE(c.HandleRequestList(List(2, {Allreduce(2, "a")}), kStart).ok());
  EXPECT_FALSE(c.NextResponses(kStart, false).has_value());
  ASSERT_TRUE(c.HandleRequestList(List(1, {Allreduce(1, "a")}), kStart).ok());
  auto list = c.NextResponses(kStart, false);
  ASSERT_TRUE(list.has_value());
  EXPECT_EQ(TensorNames(*list), std::vector<std::string>{"a"});
  EXPECT_EQ(list->responses[0].error_code, 0);
  EXPECT_EQ(list->responses[0].contributors, 3);
  EXPECT_EQ(c.pending_count(), 0u);
}

TEST(Coordinator, FusesTensorsReadyTogether) {
  Coordinator c(2, TestOptions());
  for (int rank : {1, 0}) {
    ASSERT_TRUE(c.HandleRequestList(
                     List(rank, {Allreduce(rank, "b"), Allreduce(rank, "a")}),
                     kStart)
                    .ok());
  }
  auto list = c.NextResponses(kStart, false);
  ASSERT_TRUE(list.has_value());
  ASSERT_EQ(list->responses.size(), 1u);
  EXPECT_EQ(list->responses[0].tensors.size(), 2u);
}

TEST(Coordinator, MismatchNamesTensorRanksAndValues) {
  Coordinator c(3, TestOptions());
  ASSERT_TRUE(c.HandleRequestList(List(0, {Allreduce(0, "w", {4, 3})}), kStart).ok());
  ASSERT_TRUE(c.HandleRequestList(List(1, {Allreduce(1, "w", {4, 3})}), kStart).ok());
  ASSERT_TRUE(c.HandleRequestList(List(2, {Allreduce(2, "w", {4, 4})}), kStart).ok());
  auto list = c.NextResponses(kStart, false);
  ASSERT_TRUE(list.has_value());
  const Response& r = list->responses[0];
  EXPECT_EQ(r.error_code, static_cast<int>(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(r.error_message,
            "allreduce 'w': shape mismatch: rank 0 has [4, 3] but rank 2 has "
            "[4, 4]");
}

Request OnCuda(Request r, int index) {
  r.device = {Device::kCuda, index};
  return r;
}

// Submits `requests(rank)` from every rank of a 2-rank job.
void SubmitFromBoth(Coordinator& c,
                    const std::function<std::vector<Request>(int)>& requests) {
  for (int rank : {0, 1}) {
    ASSERT_TRUE(c.HandleRequestList(List(rank, requests(rank)), kStart).ok());
  }
}

TEST(Coordinator, DeviceKindMismatchNamesBothDevices) {
  Coordinator c(2, TestOptions());
  SubmitFromBoth(c, [](int rank) {
    Request r = Allreduce(rank, "w");
    return std::vector<Request>{rank == 1 ? OnCuda(r, 1) : r};
  });
  auto list = c.NextResponses(kStart, false);
  ASSERT_TRUE(list.has_value());
  const Response& r = list->responses[0];
  EXPECT_EQ(r.error_code,
            static_cast<int>(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(r.error_message,
            "allreduce 'w': device mismatch: rank 0 has cpu but rank 1 has "
            "cuda:1");
  EXPECT_TRUE(list->nccl_unique_id.empty());
}

TEST(Coordinator, CudaIndexesMayDifferAcrossRanks) {
  Coordinator c(2, TestOptions());
  c.set_nccl_unique_id_generator(
      [] { return std::string(kNcclUniqueIdBytes, 'u'); });
  SubmitFromBoth(c, [](int rank) {
    return std::vector<Request>{OnCuda(Allreduce(rank, "w"), rank)};
  });
  auto list = c.NextResponses(kStart, false);
  ASSERT_TRUE(list.has_value());
  ASSERT_EQ(list->responses.size(), 1u);
  EXPECT_EQ(list->responses[0].error_code, 0)
      << list->responses[0].error_message;
  EXPECT_TRUE(IsCudaResponse(list->responses[0]));
}

TEST(Coordinator, AttachesTheNcclUniqueIdToTheFirstCudaListOnly) {
  Coordinator c(2, TestOptions());
  int generated = 0;
  c.set_nccl_unique_id_generator([&generated]() -> StatusOr<std::string> {
    ++generated;
    return std::string(kNcclUniqueIdBytes, static_cast<char>(generated));
  });
  // CPU work first: no id.
  SubmitFromBoth(c, [](int rank) {
    return std::vector<Request>{Allreduce(rank, "cpu")};
  });
  auto list = c.NextResponses(kStart, false);
  ASSERT_TRUE(list.has_value());
  EXPECT_TRUE(list->nccl_unique_id.empty());
  EXPECT_EQ(generated, 0);
  // The first CUDA tensor brings the id, once.
  SubmitFromBoth(c, [](int rank) {
    return std::vector<Request>{OnCuda(Allreduce(rank, "gpu.a"), rank),
                                Allreduce(rank, "cpu2")};
  });
  list = c.NextResponses(kStart, false);
  ASSERT_TRUE(list.has_value());
  EXPECT_EQ(list->nccl_unique_id, std::string(kNcclUniqueIdBytes, '\1'));
  EXPECT_EQ(generated, 1);
  for (const Response& r : list->responses) {
    EXPECT_EQ(r.error_code, 0) << r.error_message;
  }
  // Later CUDA lists (heartbeats too) carry none.
  SubmitFromBoth(c, [](int rank) {
    return std::vector<Request>{OnCuda(Allreduce(rank, "gpu.b"), rank)};
  });
  list = c.NextResponses(kStart, false);
  ASSERT_TRUE(list.has_value());
  EXPECT_TRUE(list->nccl_unique_id.empty());
  list = c.NextResponses(kStart, true);
  ASSERT_TRUE(list.has_value());
  EXPECT_TRUE(list->nccl_unique_id.empty());
  EXPECT_EQ(generated, 1);
}

TEST(Coordinator, CudaResponsesFailWhenNoUniqueIdCanBeMade) {
  Coordinator c(2, TestOptions());
  bool fail = true;
  c.set_nccl_unique_id_generator([&fail]() -> StatusOr<std::string> {
    if (fail) return absl::InternalError("ncclGetUniqueId failed: no network");
    return std::string(kNcclUniqueIdBytes, 'u');
  });
  SubmitFromBoth(c, [](int rank) {
    return std::vector<Request>{OnCuda(Allreduce(rank, "g"), rank),
                                Allreduce(rank, "c")};
  });
  auto list = c.NextResponses(kStart, false);
  ASSERT_TRUE(list.has_value());
  EXPECT_TRUE(list->nccl_unique_id.empty());
  ASSERT_EQ(list->responses.size(), 2u);
  for (const Response& r : list->responses) {
    const bool cuda = r.tensors.front().request.device.kind == Device::kCuda;
    if (cuda) {
      EXPECT_EQ(r.error_code, static_cast<int>(absl::StatusCode::kInternal));
      EXPECT_EQ(r.error_message,
                "allreduce 'g' on CUDA: ncclGetUniqueId failed: no network");
    } else {
      EXPECT_EQ(r.error_code, 0) << r.error_message;
    }
  }
  // The next CUDA response tries again.
  fail = false;
  SubmitFromBoth(c, [](int rank) {
    return std::vector<Request>{OnCuda(Allreduce(rank, "g"), rank)};
  });
  list = c.NextResponses(kStart, false);
  ASSERT_TRUE(list.has_value());
  EXPECT_EQ(list->nccl_unique_id.size(), kNcclUniqueIdBytes);
  EXPECT_EQ(list->responses[0].error_code, 0);
}

TEST(Coordinator, CudaResponsesFailWithoutAGenerator) {
  Coordinator c(2, TestOptions());
  SubmitFromBoth(c, [](int rank) {
    return std::vector<Request>{OnCuda(Allreduce(rank, "g"), 0)};
  });
  auto list = c.NextResponses(kStart, false);
  ASSERT_TRUE(list.has_value());
  EXPECT_EQ(list->responses[0].error_code,
            static_cast<int>(absl::StatusCode::kFailedPrecondition));
  EXPECT_NE(list->responses[0].error_message.find("no NCCL backend"),
            std::string::npos);
}

TEST(Coordinator, CachedTensorsAreAgreedBySlot) {
  Coordinator c(2, TestOptions());
  for (int rank : {0, 1}) {
    ASSERT_TRUE(c.HandleRequestList(List(rank, {Allreduce(rank, "a")}), kStart).ok());
  }
  auto first = c.NextResponses(kStart, false);
  ASSERT_TRUE(first.has_value());
  const int32_t slot = first->responses[0].tensors[0].cache_slot;
  ASSERT_GE(slot, 0) << "the first response assigns a cache slot";
  EXPECT_FALSE(first->responses[0].tensors[0].cached);
  for (int rank : {0, 1}) {
    ASSERT_TRUE(c.HandleRequestList(List(rank, {}, {slot}, first->seq), kStart).ok());
  }
  auto second = c.NextResponses(kStart, false);
  ASSERT_TRUE(second.has_value());
  ASSERT_EQ(second->responses.size(), 1u);
  EXPECT_TRUE(second->responses[0].tensors[0].cached);
  EXPECT_EQ(second->responses[0].tensors[0].cache_slot, slot);
}

TEST(Coordinator, BitsFromALaggingRankResolveToTheEntryItKnew) {
  Options options = TestOptions();
  options.cache_capacity = 1;
  Coordinator c(2, options);
  auto run = [&](const std::string& name) {
    for (int rank : {0, 1}) {
      // Rank 1 lags: it has applied no response yet.
      EXPECT_TRUE(c.HandleRequestList(
                       List(rank, {Allreduce(rank, name)}, {}, rank == 0 ? 100 : 0),
                       kStart)
                      .ok());
    }
    return *c.NextResponses(kStart, false);
  };
  const ResponseList a = run("a");  // slot 0 = a
  const ResponseList b = run("b");  // slot 0 = b, a retired until rank 1 acks
  ASSERT_EQ(b.responses[0].tensors[0].cache_slot, 0);
  // Rank 1 had applied only `a`'s response when it sent bit 0: it means a.
  ASSERT_TRUE(c.HandleRequestList(List(1, {}, {0}, a.seq), kStart).ok());
  ASSERT_TRUE(c.HandleRequestList(List(0, {Allreduce(0, "a")}, {}, b.seq), kStart).ok());
  auto list = c.NextResponses(kStart, false);
  ASSERT_TRUE(list.has_value());
  EXPECT_EQ(TensorNames(*list), std::vector<std::string>{"a"});
  EXPECT_EQ(list->responses[0].error_code, 0);
}

TEST(Coordinator, UnknownCacheSlotIsAProtocolError) {
  Coordinator c(2, TestOptions());
  EXPECT_EQ(c.HandleRequestList(List(1, {}, {3}), kStart).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(Coordinator, JoinedRanksContributeZerosUntilAllJoin) {
  Coordinator c(3, TestOptions());
  Request join;
  join.rank = 2;
  join.op = OpType::kJoin;
  join.name = "kolo.join";
  ASSERT_TRUE(c.HandleRequestList(List(2, {join}), kStart).ok());
  ASSERT_TRUE(c.HandleRequestList(List(0, {Allreduce(0, "x")}), kStart).ok());
  ASSERT_TRUE(c.HandleRequestList(List(1, {Allreduce(1, "x")}), kStart).ok());
  auto list = c.NextResponses(kStart, false);
  ASSERT_TRUE(list.has_value());
  EXPECT_EQ(list->responses[0].contributors, 2);
  EXPECT_EQ(list->responses[0].error_code, 0);

  Request gather = Allreduce(0, "g");
  gather.op = OpType::kAllgather;
  Request gather1 = gather;
  gather1.rank = 1;
  ASSERT_TRUE(c.HandleRequestList(List(0, {gather}), kStart).ok());
  ASSERT_TRUE(c.HandleRequestList(List(1, {gather1}), kStart).ok());
  list = c.NextResponses(kStart, false);
  EXPECT_EQ(list->responses[0].error_code,
            static_cast<int>(absl::StatusCode::kFailedPrecondition));
  EXPECT_NE(list->responses[0].error_message.find("joined"), std::string::npos);

  for (int rank : {1, 0}) {
    join.rank = rank;
    ASSERT_TRUE(c.HandleRequestList(List(rank, {join}), kStart).ok());
  }
  list = c.NextResponses(kStart, false);
  ASSERT_EQ(list->responses.size(), 1u);
  EXPECT_EQ(list->responses[0].op, OpType::kJoin);
  EXPECT_EQ(list->responses[0].last_joined_rank, 0);
}

TEST(Coordinator, GroupsAreReleasedTogetherOrFailTogether) {
  Coordinator c(2, TestOptions());
  auto member = [](int rank, const std::string& name, int64_t n) {
    Request r = Allreduce(rank, name, {n});
    r.group_key = "g.0";
    r.group_size = 2;
    return r;
  };
  ASSERT_TRUE(c.HandleRequestList(List(0, {member(0, "g.0", 4)}), kStart).ok());
  ASSERT_TRUE(c.HandleRequestList(List(1, {member(1, "g.0", 4)}), kStart).ok());
  EXPECT_FALSE(c.NextResponses(kStart, false).has_value())
      << "half a group is not released";
  ASSERT_TRUE(c.HandleRequestList(List(0, {member(0, "g.1", 4)}), kStart).ok());
  ASSERT_TRUE(c.HandleRequestList(List(1, {member(1, "g.1", 5)}), kStart).ok());
  auto list = c.NextResponses(kStart, false);
  ASSERT_TRUE(list.has_value());
  ASSERT_EQ(TensorNames(*list).size(), 2u);
  for (const Response& r : list->responses) {
    EXPECT_EQ(r.error_code,
              static_cast<int>(absl::StatusCode::kFailedPrecondition));
  }
}

TEST(Coordinator, DifferentGroupMembershipFailsEveryMemberOnEveryRank) {
  // Ranks 0 and 2 group allgathers 'a' and 'b'; rank 1 groups 'a' and 'c'.
  Coordinator c(3, TestOptions());
  auto member = [](int rank, const std::string& name, const std::string& key) {
    Request r = Allreduce(rank, name, {2, 3});
    r.op = OpType::kAllgather;
    r.group_key = key;
    r.group_size = 2;
    return r;
  };
  for (int rank : {0, 2}) {
    ASSERT_TRUE(c.HandleRequestList(List(rank, {member(rank, "a", "ab"),
                                                member(rank, "b", "ab")}),
                                    kStart)
                    .ok());
  }
  EXPECT_FALSE(c.NextResponses(kStart, false).has_value());
  ASSERT_TRUE(
      c.HandleRequestList(List(1, {member(1, "a", "ac"), member(1, "c", "ac")}),
                          kStart)
          .ok());
  auto list = c.NextResponses(kStart, false);
  ASSERT_TRUE(list.has_value());
  std::vector<std::string> names = TensorNames(*list);
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"a", "b", "c"}));
  for (const Response& r : list->responses) {
    EXPECT_EQ(r.error_code,
              static_cast<int>(absl::StatusCode::kFailedPrecondition));
    EXPECT_NE(r.error_message.find("group mismatch: rank 0 grouped it with "
                                   "'a', 'b' but rank 1 grouped it with 'a', "
                                   "'c'"),
              std::string::npos)
        << r.error_message;
  }
  EXPECT_EQ(c.pending_count(), 0u) << "nothing may be left to stall";
}

TEST(Coordinator, AGroupedTensorSubmittedAloneSomewhereFails) {
  Coordinator c(2, TestOptions());
  Request x0 = Allreduce(0, "x");
  Request x1 = Allreduce(1, "x");
  Request y1 = Allreduce(1, "y");
  x1.group_key = y1.group_key = "xy";
  x1.group_size = y1.group_size = 2;
  ASSERT_TRUE(c.HandleRequestList(List(1, {x1, y1}), kStart).ok());
  ASSERT_TRUE(c.HandleRequestList(List(0, {x0}), kStart).ok());
  auto list = c.NextResponses(kStart, false);
  ASSERT_TRUE(list.has_value());
  ASSERT_EQ(TensorNames(*list).size(), 2u);
  for (const Response& r : list->responses) {
    EXPECT_NE(r.error_message.find("rank 0 submitted it alone (not grouped)"),
              std::string::npos)
        << r.error_message;
  }
  EXPECT_EQ(c.pending_count(), 0u);
}

Request Prioritized(int rank, const std::string& name, int32_t priority) {
  Request r = Allreduce(rank, name);  // 4 floats: 16 bytes
  r.priority = priority;
  return r;
}

TEST(Coordinator, PrioritizedTensorsRunHighestFirstWithinTheCycleBudget) {
  Options options = TestOptions();
  options.priority_cycle_bytes = 40;  // two 16-byte tensors per list
  Coordinator c(2, options);
  for (int rank : {0, 1}) {
    ASSERT_TRUE(c.HandleRequestList(List(rank, {Prioritized(rank, "a", 1),
                                                Prioritized(rank, "b", 3),
                                                Prioritized(rank, "c", 2),
                                                Prioritized(rank, "d", 4)}),
                                    kStart)
                    .ok());
  }
  auto first = c.NextResponses(kStart, false);
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(TensorNames(*first), (std::vector<std::string>{"d", "b"}));
  EXPECT_EQ(c.pending_count(), 2u) << "c and a wait for the next list";
  // A tensor that becomes ready meanwhile overtakes the backlog.
  for (int rank : {1, 0}) {
    ASSERT_TRUE(
        c.HandleRequestList(List(rank, {Prioritized(rank, "e", 5)}), kStart)
            .ok());
  }
  auto second = c.NextResponses(kStart, false);
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(TensorNames(*second), (std::vector<std::string>{"e", "c"}));
  auto third = c.NextResponses(kStart, false);
  ASSERT_TRUE(third.has_value());
  EXPECT_EQ(TensorNames(*third), std::vector<std::string>{"a"});
  EXPECT_FALSE(c.NextResponses(kStart, false).has_value());
  EXPECT_EQ(c.pending_count(), 0u);
}

TEST(Coordinator, WithoutPrioritiesEveryReadyTensorRunsInReadyOrder) {
  Options options = TestOptions();
  options.priority_cycle_bytes = 16;
  options.fusion_threshold_bytes = 0;  // one response per tensor, in order
  Coordinator c(2, options);
  for (int rank : {0, 1}) {
    ASSERT_TRUE(c.HandleRequestList(List(rank, {Allreduce(rank, "z"),
                                                Allreduce(rank, "y"),
                                                Allreduce(rank, "x")}),
                                    kStart)
                    .ok());
  }
  auto list = c.NextResponses(kStart, false);
  ASSERT_TRUE(list.has_value());
  EXPECT_EQ(TensorNames(*list), (std::vector<std::string>{"z", "y", "x"}));
}

TEST(Coordinator, ABudgetOfZeroOrdersByPriorityWithoutSplittingTheList) {
  Options options = TestOptions();
  options.priority_cycle_bytes = 0;
  options.fusion_threshold_bytes = 0;
  Coordinator c(2, options);
  for (int rank : {0, 1}) {
    ASSERT_TRUE(c.HandleRequestList(List(rank, {Prioritized(rank, "low", 1),
                                                Allreduce(rank, "none"),
                                                Prioritized(rank, "high", 9)}),
                                    kStart)
                    .ok());
  }
  auto list = c.NextResponses(kStart, false);
  ASSERT_TRUE(list.has_value());
  EXPECT_EQ(TensorNames(*list),
            (std::vector<std::string>{"high", "low", "none"}));
}

TEST(Coordinator, APrioritizedGroupIsNeverSplitAcrossLists) {
  Options options = TestOptions();
  options.priority_cycle_bytes = 16;  // one tensor
  Coordinator c(2, options);
  auto member = [](int rank, const std::string& name) {
    Request r = Prioritized(rank, name, 7);
    r.group_key = "g";
    r.group_size = 2;
    return r;
  };
  for (int rank : {0, 1}) {
    ASSERT_TRUE(c.HandleRequestList(
                     List(rank, {Prioritized(rank, "solo", 3),
                                 member(rank, "g.0"), member(rank, "g.1")}),
                     kStart)
                    .ok());
  }
  auto first = c.NextResponses(kStart, false);
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(TensorNames(*first), (std::vector<std::string>{"g.0", "g.1"}))
      << "the group goes whole, over the budget";
  auto second = c.NextResponses(kStart, false);
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(TensorNames(*second), std::vector<std::string>{"solo"});
}

TEST(Coordinator, AJoinIsAnsweredAfterEveryPrioritizedTensorReadyBeforeIt) {
  Options options = TestOptions();
  options.priority_cycle_bytes = 16;  // one tensor per list without joins
  Coordinator c(2, options);
  for (int rank : {0, 1}) {
    ASSERT_TRUE(c.HandleRequestList(List(rank, {Prioritized(rank, "p", 3),
                                                Prioritized(rank, "q", 2),
                                                Prioritized(rank, "r", 1)}),
                                    kStart)
                    .ok());
  }
  auto first = c.NextResponses(kStart, false);
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(TensorNames(*first), std::vector<std::string>{"p"});
  Request join;
  join.op = OpType::kJoin;
  join.name = "kolo.join";
  for (int rank : {0, 1}) {
    join.rank = rank;
    ASSERT_TRUE(c.HandleRequestList(List(rank, {join}), kStart).ok());
  }
  // q and r were ready before the join: they run in the join's list, ahead
  // of it, not after the join has completed.
  auto list = c.NextResponses(kStart, false);
  ASSERT_TRUE(list.has_value());
  ASSERT_EQ(list->responses.size(), 2u);  // q and r fused, then the join
  EXPECT_EQ(TensorNames(*list), (std::vector<std::string>{"q", "r"}));
  EXPECT_EQ(list->responses.back().op, OpType::kJoin);
  EXPECT_EQ(c.pending_count(), 0u);
}

TEST(Coordinator, AHeldBackTensorThatFailsWithItsGroupIsForgotten) {
  Options options = TestOptions();
  options.priority_cycle_bytes = 16;  // one tensor per list
  Coordinator c(2, options);
  // Rank 0 groups m1 and m2 as "g", rank 1 as "h": both are released at
  // once (to fail), with x between them, all behind "hi".
  auto member = [](int rank, const std::string& name) {
    Request r = Prioritized(rank, name, 1);
    r.group_key = rank == 0 ? "g" : "h";
    r.group_size = 2;
    return r;
  };
  for (int rank : {0, 1}) {
    ASSERT_TRUE(c.HandleRequestList(
                     List(rank, {Prioritized(rank, "hi", 5), member(rank, "m1"),
                                 Prioritized(rank, "x", 1), member(rank, "m2")}),
                     kStart)
                    .ok());
  }
  auto first = c.NextResponses(kStart, false);
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(TensorNames(*first), std::vector<std::string>{"hi"});
  // m1 fails, and with it its group's m2, which was still held back.
  auto second = c.NextResponses(kStart, false);
  ASSERT_TRUE(second.has_value());
  std::vector<std::string> failed = TensorNames(*second);
  std::sort(failed.begin(), failed.end());
  EXPECT_EQ(failed, (std::vector<std::string>{"m1", "m2"}));
  for (const Response& r : second->responses) EXPECT_NE(r.error_code, 0);
  // The next list runs x and does not look for the forgotten m2.
  auto third = c.NextResponses(kStart, false);
  ASSERT_TRUE(third.has_value());
  EXPECT_EQ(TensorNames(*third), std::vector<std::string>{"x"});
  EXPECT_EQ(third->responses[0].error_code, 0);
  EXPECT_EQ(c.pending_count(), 0u);
}

TEST(Coordinator, APrioritizedBacklogIsNotReportedAsStalled) {
  Options options = TestOptions();
  options.stall_check_seconds = 1;
  options.stall_shutdown_seconds = 2;
  options.priority_cycle_bytes = 16;
  Coordinator c(2, options);
  for (int rank : {0, 1}) {
    ASSERT_TRUE(c.HandleRequestList(List(rank, {Prioritized(rank, "p", 2),
                                                Prioritized(rank, "q", 1)}),
                                    kStart)
                    .ok());
  }
  auto first = c.NextResponses(kStart, false);
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(TensorNames(*first), std::vector<std::string>{"p"});
  // Long after the shutdown time, q is still ready, not stalled.
  auto second = c.NextResponses(kStart + absl::Seconds(10), false);
  ASSERT_TRUE(second.has_value());
  ASSERT_EQ(TensorNames(*second), std::vector<std::string>{"q"});
  EXPECT_EQ(second->responses[0].error_code, 0);
}

TEST(Coordinator, StalledTensorsFailAfterTheShutdownTime) {
  Options options = TestOptions();
  options.stall_check_seconds = 1;
  options.stall_shutdown_seconds = 2;
  Coordinator c(3, options);
  ASSERT_TRUE(c.HandleRequestList(List(0, {Allreduce(0, "s")}), kStart).ok());
  ASSERT_TRUE(c.HandleRequestList(List(1, {Allreduce(1, "s")}), kStart).ok());
  EXPECT_FALSE(c.NextResponses(kStart + absl::Seconds(1.5), false).has_value());
  auto list = c.NextResponses(kStart + absl::Seconds(2.5), false);
  ASSERT_TRUE(list.has_value());
  const Response& r = list->responses[0];
  EXPECT_EQ(r.error_code, static_cast<int>(absl::StatusCode::kDeadlineExceeded));
  EXPECT_NE(r.error_message.find("not by rank 2"), std::string::npos)
      << r.error_message;
  EXPECT_EQ(c.pending_count(), 0u);
}

TEST(Coordinator, ShutdownFromAnyRankEndsTheJob) {
  Coordinator c(3, TestOptions());
  RequestList list = List(1, {});
  list.shutdown = true;
  ASSERT_TRUE(c.HandleRequestList(list, kStart).ok());
  auto responses = c.NextResponses(kStart, false);
  ASSERT_TRUE(responses.has_value());
  EXPECT_TRUE(responses->shutdown);
  EXPECT_EQ(responses->shutdown_rank, 1);
}

}  // namespace
}  // namespace kolo
