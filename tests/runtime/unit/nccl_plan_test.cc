// Tests of the NCCL backend's host-side plans (no GPU needed).
#include "runtime/backend/nccl/nccl_plan.h"

#include <gtest/gtest.h>

namespace kolo {
namespace nccl {
namespace {

TEST(NcclPlan, AverageUsesNcclAvgOnlyWhenEveryRankContributesToAFloatSum) {
  ReductionPlan plan = PlanReduction(DataType::kFloat32, ReduceOp::kAverage,
                                     1.0, 1.0, 4, 4, /*avg_allowed=*/true);
  EXPECT_EQ(plan.op, NcclOp::kAvg);
  EXPECT_EQ(plan.divisor, 1);
  EXPECT_TRUE(plan.direct);

  // A rank joined: three contributors, divide the sum by 3 in the unpack.
  plan = PlanReduction(DataType::kFloat32, ReduceOp::kAverage, 1.0, 1.0, 3, 4,
                       true);
  EXPECT_EQ(plan.op, NcclOp::kSum);
  EXPECT_EQ(plan.divisor, 3);
  EXPECT_FALSE(plan.direct);

  // Integers divide the exact sum, truncating toward zero.
  plan =
      PlanReduction(DataType::kInt32, ReduceOp::kAverage, 1.0, 1.0, 4, 4, true);
  EXPECT_EQ(plan.op, NcclOp::kSum);
  EXPECT_EQ(plan.divisor, 4);

  // Three ranks: ncclAvg would premultiply by the rounded 1/3, not divide
  // the sum; the unpack copy divides instead.
  plan = PlanReduction(DataType::kFloat32, ReduceOp::kAverage, 1.0, 1.0, 3, 3,
                       true);
  EXPECT_EQ(plan.op, NcclOp::kSum);
  EXPECT_EQ(plan.divisor, 3);
  EXPECT_FALSE(plan.direct);
  EXPECT_EQ(PlanReduction(DataType::kFloat64, ReduceOp::kAverage, 1.0, 1.0, 1,
                          1, true)
                .op,
            NcclOp::kAvg);

  // Hierarchical: NCCL's stage covers one host only.
  plan = PlanReduction(DataType::kFloat64, ReduceOp::kAverage, 1.0, 1.0, 4, 4,
                       /*avg_allowed=*/false);
  EXPECT_EQ(plan.op, NcclOp::kSum);
  EXPECT_EQ(plan.divisor, 4);
}

TEST(NcclPlan, HalfTypesAreReducedInFloat32) {
  for (DataType dtype : {DataType::kFloat16, DataType::kBfloat16}) {
    const ReductionPlan plan =
        PlanReduction(dtype, ReduceOp::kSum, 1.0, 1.0, 2, 2, true);
    EXPECT_EQ(plan.wire_dtype, DataType::kFloat32) << DataTypeName(dtype);
    EXPECT_EQ(plan.op, NcclOp::kSum);
    EXPECT_FALSE(plan.direct) << DataTypeName(dtype);
    // ncclAvg on the widened values.
    EXPECT_EQ(PlanReduction(dtype, ReduceOp::kAverage, 1.0, 1.0, 2, 2, true).op,
              NcclOp::kAvg);
  }
}

TEST(NcclPlan, BoolReducesAsUint8WithMaxOrMin) {
  const std::pair<ReduceOp, NcclOp> cases[] = {
      {ReduceOp::kSum, NcclOp::kMax},
      {ReduceOp::kMax, NcclOp::kMax},
      {ReduceOp::kMin, NcclOp::kMin},
      {ReduceOp::kProduct, NcclOp::kMin}};
  for (const auto& [op, expected] : cases) {
    const ReductionPlan plan =
        PlanReduction(DataType::kBool, op, 1.0, 1.0, 3, 3, true);
    EXPECT_EQ(plan.wire_dtype, DataType::kUint8);
    EXPECT_EQ(plan.op, expected) << ReduceOpName(op);
    EXPECT_TRUE(plan.direct);
  }
}

TEST(NcclPlan, ScalingIsFusedIntoTheCopies) {
  const ReductionPlan plan =
      PlanReduction(DataType::kFloat32, ReduceOp::kMax, 0.5, 2.0, 2, 2, true);
  EXPECT_EQ(plan.op, NcclOp::kMax);
  EXPECT_EQ(plan.prescale, 0.5);
  EXPECT_EQ(plan.postscale, 2.0);
  EXPECT_TRUE(plan.has_pack_scaling());
  EXPECT_TRUE(plan.has_unpack_scaling());
  EXPECT_FALSE(plan.direct);
  EXPECT_EQ(
      PlanReduction(DataType::kInt64, ReduceOp::kProduct, 1.0, 1.0, 2, 2, true)
          .op,
      NcclOp::kProd);
}

TEST(NcclPlan, CopyBatchesHoldAtMostTheParameterLimit) {
  std::vector<float> data(1000);
  std::vector<CopyTask> tasks;
  for (int i = 0; i < 2 * kMaxCopyTasks + 5; ++i) {
    // Every seventh task is empty and dropped.
    tasks.push_back({&data[i % 1000], &data[(i + 1) % 1000], i % 7 ? i : 0});
  }
  const std::vector<CopyBatch> batches =
      BuildCopyBatches(tasks, DataType::kFloat16, DataType::kFloat32, 0.25, 3);
  int64_t copied = 0;
  size_t next = 0;
  for (const CopyBatch& batch : batches) {
    EXPECT_LE(batch.num_tasks, kMaxCopyTasks);
    EXPECT_EQ(batch.src_dtype, static_cast<int>(DataType::kFloat16));
    EXPECT_EQ(batch.dst_dtype, static_cast<int>(DataType::kFloat32));
    EXPECT_EQ(batch.scale, 0.25);
    EXPECT_EQ(batch.divisor, 3);
    int64_t largest = 0;
    for (int t = 0; t < batch.num_tasks; ++t, ++next) {
      while (tasks[next].count == 0) ++next;
      EXPECT_EQ(batch.tasks[t].src, tasks[next].src) << "task " << next;
      EXPECT_EQ(batch.tasks[t].dst, tasks[next].dst) << "task " << next;
      EXPECT_EQ(batch.tasks[t].count, tasks[next].count) << "task " << next;
      largest = std::max(largest, batch.tasks[t].count);
      copied += batch.tasks[t].count;
    }
    EXPECT_EQ(batch.max_count, largest);
  }
  int64_t expected = 0;
  for (const CopyTask& task : tasks) expected += task.count;
  EXPECT_EQ(copied, expected);
  EXPECT_EQ(next, tasks.size());
  EXPECT_EQ(batches.size(), 2u);  // 223 non-empty tasks: 128 + 95
  EXPECT_TRUE(BuildCopyBatches({{nullptr, nullptr, 0}}, DataType::kInt8,
                               DataType::kInt8, 1.0, 1)
                  .empty());
}

TEST(NcclPlan, PackOffsetsAndPadding) {
  EXPECT_EQ(PackOffsets({3, 0, 5}), (std::vector<int64_t>{0, 3, 3, 8}));
  EXPECT_EQ(PackOffsets({}), (std::vector<int64_t>{0}));
  EXPECT_EQ(PaddedCount(10, 4), 12);
  EXPECT_EQ(PaddedCount(12, 4), 12);
  EXPECT_EQ(PaddedCount(0, 4), 0);
  EXPECT_EQ(PaddedCount(7, 1), 7);
}

TEST(NcclPlan, AllgatherLayoutIsEqualOnlyForEqualRows) {
  RankLayout layout = AllgatherLayout({2, 2, 2}, 12);
  EXPECT_TRUE(layout.equal);
  EXPECT_EQ(layout.sizes, (std::vector<int64_t>{24, 24, 24}));
  EXPECT_EQ(layout.offsets, (std::vector<int64_t>{0, 24, 48}));
  EXPECT_EQ(layout.total, 72);
  layout = AllgatherLayout({1, 0, 3}, 8);
  EXPECT_FALSE(layout.equal);
  EXPECT_EQ(layout.sizes, (std::vector<int64_t>{8, 0, 24}));
  EXPECT_EQ(layout.offsets, (std::vector<int64_t>{0, 8, 8}));
  EXPECT_EQ(layout.total, 32);
}

TEST(NcclPlan, AlltoallLayoutReadsTheSplitMatrix) {
  // 3 ranks; row = sender. Rank 1 sends {4, 0, 1} rows and receives
  // column 1: {2, 0, 5}.
  const std::vector<int64_t> splits = {1, 2, 3,  //
                                       4, 0, 1,  //
                                       0, 5, 2};
  const AlltoallLayout layout = PlanAlltoall(splits, 3, 1, 10);
  EXPECT_EQ(layout.send.sizes, (std::vector<int64_t>{40, 0, 10}));
  EXPECT_EQ(layout.send.offsets, (std::vector<int64_t>{0, 40, 40}));
  EXPECT_EQ(layout.recv.sizes, (std::vector<int64_t>{20, 0, 50}));
  EXPECT_EQ(layout.recv.offsets, (std::vector<int64_t>{0, 20, 20}));
  EXPECT_EQ(layout.received_rows, (std::vector<int64_t>{2, 0, 5}));
  EXPECT_EQ(layout.output_rows, 7);
}

TEST(NcclPlan, ReducescatterSharesFollowTheCpuRule) {
  // 10 rows over 4 ranks: 3, 3, 2, 2 rows of 5 elements.
  RankLayout layout = ReducescatterLayout(10, 5, 4);
  EXPECT_FALSE(layout.equal);
  EXPECT_EQ(layout.sizes, (std::vector<int64_t>{15, 15, 10, 10}));
  EXPECT_EQ(layout.offsets, (std::vector<int64_t>{0, 15, 30, 40}));
  EXPECT_EQ(layout.total, 50);
  layout = ReducescatterLayout(8, 5, 4);
  EXPECT_TRUE(layout.equal);
  EXPECT_EQ(layout.sizes, (std::vector<int64_t>{10, 10, 10, 10}));
}

}  // namespace
}  // namespace nccl
}  // namespace kolo
