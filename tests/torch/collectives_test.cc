// Multi-rank tests of the collectives on torch tensors: results for every
// supported dtype, in-place and non-contiguous tensors, asynchronous handles,
// metric averaging, and runtime errors surfacing as c10::Error.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>

#include "kolo/torch.h"
#include "test_util.h"

namespace kolo {
namespace torch {
namespace {

using testing::AllClose;
using testing::Equal;
using testing::ThrowsWith;

// Sum over ranks of (r + 1).
double RankSum() { return size() * (size() + 1) / 2.0; }

TEST(TorchAllreduce, AverageAndSumForEveryDtype) {
  const double mine = rank() + 1;
  for (at::ScalarType dtype :
       {at::kFloat, at::kDouble, at::kHalf, at::kBFloat16, at::kInt, at::kLong,
        at::kChar, at::kByte}) {
    const std::string type_name = c10::toString(dtype);
    const at::Tensor input = ::torch::full({3, 5}, mine, dtype);
    AllreduceOptions sum;
    sum.op = ReduceOp::kSum;
    const at::Tensor summed = allreduce(input, "sum." + type_name, sum);
    EXPECT_EQ(summed.scalar_type(), dtype);
    EXPECT_TRUE(Equal(summed, ::torch::full({3, 5}, RankSum()))) << type_name;
    EXPECT_TRUE(Equal(input, ::torch::full({3, 5}, mine)))
        << type_name << ": the input must be left alone";
    if (at::isFloatingType(dtype)) {
      const at::Tensor average = allreduce(input, "avg." + type_name);
      EXPECT_TRUE(Equal(average, ::torch::full({3, 5}, RankSum() / size())))
          << type_name;
    }
  }
}

TEST(TorchAllreduce, MinMaxAndBool) {
  AllreduceOptions max;
  max.op = ReduceOp::kMax;
  EXPECT_TRUE(allreduce(::torch::tensor({rank(), -rank()}), "max", max)
                  .equal(::torch::tensor({size() - 1, 0})));
  const at::Tensor flags = ::torch::tensor({rank() == 0, false});
  AllreduceOptions any;
  any.op = ReduceOp::kSum;  // logical or
  EXPECT_TRUE(
      allreduce(flags, "bool.or", any).equal(::torch::tensor({true, false})));
}

TEST(TorchAllreduce, InPlaceOnANonContiguousTensor) {
  // A transposed view: the adapter reduces a contiguous copy and writes the
  // result back through the view.
  const at::Tensor base = ::torch::arange(12, at::kFloat).reshape({3, 4});
  const at::Tensor view = (base * (rank() + 1)).t();
  ASSERT_FALSE(view.is_contiguous());
  AllreduceOptions sum;
  sum.op = ReduceOp::kSum;
  const at::Tensor result = allreduce_(view, "noncontiguous", sum);
  EXPECT_TRUE(result.is_same(view));
  EXPECT_FALSE(view.is_contiguous());
  EXPECT_TRUE(Equal(view, base.t() * RankSum()));
}

TEST(TorchAllreduce, ScaleFactors) {
  AllreduceOptions scaled;
  scaled.op = ReduceOp::kSum;
  scaled.prescale_factor = 0.5;
  scaled.postscale_factor = 4.0;
  const at::Tensor result = allreduce(
      ::torch::full({4}, rank() + 1.0, at::kDouble), "scaled", scaled);
  EXPECT_TRUE(Equal(result, ::torch::full({4}, 2.0 * RankSum())));
}

TEST(TorchAllreduce, HandlesCompleteInAnyOrder) {
  std::vector<Handle> handles;
  for (int i = 0; i < 8; ++i) {
    handles.push_back(allreduce_async(
        ::torch::full({16 + i}, static_cast<double>(i * (rank() + 1))),
        "async." + std::to_string(i)));
  }
  for (int i = 7; i >= 0; --i) {
    const at::Tensor result = handles[i].wait();
    EXPECT_TRUE(handles[i].poll());
    EXPECT_TRUE(Equal(result, ::torch::full({16 + i}, i * RankSum() / size())))
        << "handle " << i;
  }
  // A handle dropped unfinished waits for its operation: the name is free
  // again afterwards.
  allreduce_async(::torch::ones({1000}), "dropped");
  EXPECT_TRUE(
      Equal(allreduce(::torch::ones({3}), "dropped"), ::torch::ones({3})));
}

TEST(TorchAllreduce, GroupedInPlace) {
  std::vector<at::Tensor> tensors = {
      ::torch::full({2, 3}, rank() + 1.0),
      ::torch::full({7}, 2.0 * (rank() + 1)),
      ::torch::full({5, 2}, 3.0 * (rank() + 1)).t()};
  AllreduceOptions sum;
  sum.op = ReduceOp::kSum;
  grouped_allreduce_(tensors, "grouped", sum);
  EXPECT_TRUE(Equal(tensors[0], ::torch::full({2, 3}, RankSum())));
  EXPECT_TRUE(Equal(tensors[1], ::torch::full({7}, 2.0 * RankSum())));
  EXPECT_TRUE(Equal(tensors[2], ::torch::full({2, 5}, 3.0 * RankSum())));
  const std::vector<at::Tensor> copies =
      grouped_allreduce({::torch::ones({3}), ::torch::ones({1})}, "grouped2");
  ASSERT_EQ(copies.size(), 2u);
  EXPECT_TRUE(Equal(copies[1], ::torch::ones({1})));
}

TEST(TorchGrouped, AllgatherOfSeveralDtypesAndLayouts) {
  // Rank r: r + 1 rows of int64, 2 rows of float32 (transposed, so not
  // contiguous), and no rows of float64 on even ranks.
  const std::vector<at::Tensor> mine = {
      ::torch::full({rank() + 1, 2}, rank(), at::kLong),
      ::torch::arange(6, at::kFloat).reshape({3, 2}).t() + rank(),
      ::torch::full({rank() % 2 == 0 ? 0 : 3}, rank() * 0.5, at::kDouble)};
  const std::vector<at::Tensor> gathered =
      grouped_allgather(mine, "grouped.allgather");
  ASSERT_EQ(gathered.size(), 3u);
  for (size_t k = 0; k < mine.size(); ++k) {
    std::vector<at::Tensor> expected;
    for (int r = 0; r < size(); ++r) {
      if (k == 0) expected.push_back(::torch::full({r + 1, 2}, r, at::kLong));
      if (k == 1) {
        expected.push_back(::torch::arange(6, at::kFloat).reshape({3, 2}).t() +
                           r);
      }
      if (k == 2) {
        expected.push_back(
            ::torch::full({r % 2 == 0 ? 0 : 3}, r * 0.5, at::kDouble));
      }
    }
    EXPECT_EQ(gathered[k].scalar_type(), mine[k].scalar_type()) << k;
    EXPECT_TRUE(Equal(gathered[k], ::torch::cat(expected))) << "member " << k;
  }
}

TEST(TorchGrouped, ReducescatterReturnsThisRanksShareOfEach) {
  const std::vector<at::Tensor> mine = {
      ::torch::arange(4 * size(), at::kFloat).reshape({2 * size(), 2}) + rank(),
      ::torch::full({size() + 1}, rank() + 1, at::kInt)};
  const std::vector<at::Tensor> shares =
      grouped_reducescatter(mine, "grouped.reducescatter", ReduceOp::kSum);
  ASSERT_EQ(shares.size(), 2u);
  const at::Tensor sum0 =
      ::torch::arange(4 * size(), at::kFloat).reshape({2 * size(), 2}) *
          size() +
      (RankSum() - size());
  EXPECT_TRUE(Equal(shares[0], sum0.slice(0, 2 * rank(), 2 * rank() + 2)));
  // size() + 1 rows: rank 0 gets two, the others one.
  const int64_t rows = rank() == 0 ? 2 : 1;
  EXPECT_TRUE(Equal(shares[1], ::torch::full({rows}, RankSum(), at::kInt)));
  EXPECT_EQ(shares[1].scalar_type(), at::kInt);
}

TEST(TorchGrouped, MismatchedMembershipThrowsOnEveryRank) {
  if (size() < 2) GTEST_SKIP() << "needs two ranks to disagree";
  // Rank 1 groups two tensors under the name, the others three.
  std::vector<at::Tensor> tensors(rank() == 1 ? 2 : 3, ::torch::ones({2}));
  EXPECT_TRUE(ThrowsWith([&] { grouped_allgather(tensors, "grouped.bad"); },
                         "group mismatch"));
  EXPECT_TRUE(ThrowsWith(
      [&] { grouped_reducescatter(tensors, "grouped.bad.rs"); }, "group"));
}

TEST(TorchAllgather, RanksContributeDifferentRowCounts) {
  const at::Tensor mine =
      ::torch::full({rank() + 1, 3}, static_cast<double>(rank()), at::kLong);
  const at::Tensor gathered = allgather(mine, "allgather");
  ASSERT_EQ(gathered.size(0), size() * (size() + 1) / 2);
  ASSERT_EQ(gathered.size(1), 3);
  EXPECT_EQ(gathered.scalar_type(), at::kLong);
  int64_t row = 0;
  for (int r = 0; r < size(); ++r) {
    for (int k = 0; k <= r; ++k, ++row) {
      EXPECT_TRUE(Equal(gathered[row], ::torch::full({3}, r)))
          << "row " << row << " should come from rank " << r;
    }
  }
}

TEST(TorchBroadcast, FromEveryRoot) {
  for (int root = 0; root < size(); ++root) {
    const at::Tensor mine = ::torch::full({4, 2}, rank() * 10.0);
    const at::Tensor copy =
        broadcast(mine, root, "bcast.copy." + std::to_string(root));
    EXPECT_TRUE(Equal(copy, ::torch::full({4, 2}, root * 10.0)));
    EXPECT_TRUE(Equal(mine, ::torch::full({4, 2}, rank() * 10.0)));
    broadcast_(mine, root, "bcast.inplace." + std::to_string(root));
    EXPECT_TRUE(Equal(mine, ::torch::full({4, 2}, root * 10.0)));
  }
}

TEST(TorchAlltoall, UnevenSplits) {
  // Rank r sends j + 1 rows of value 10 r + j to rank j.
  std::vector<at::Tensor> parts;
  std::vector<int64_t> splits;
  for (int j = 0; j < size(); ++j) {
    parts.push_back(::torch::full({j + 1, 2}, 10.0 * rank() + j));
    splits.push_back(j + 1);
  }
  std::vector<int64_t> received;
  const at::Tensor result =
      alltoall(::torch::cat(parts), "alltoall", splits, &received);
  EXPECT_EQ(received, std::vector<int64_t>(size(), rank() + 1));
  ASSERT_EQ(result.size(0), size() * (rank() + 1));
  for (int i = 0; i < size(); ++i) {
    EXPECT_TRUE(Equal(result.narrow(0, i * (rank() + 1), rank() + 1),
                      ::torch::full({rank() + 1, 2}, 10.0 * i + rank())))
        << "rows from rank " << i;
  }
}

TEST(TorchReducescatter, SharesOfTheFirstDimension) {
  const int64_t rows = 2 * size() + 1;
  const at::Tensor input =
      ::torch::arange(rows * 3, at::kFloat).reshape({rows, 3}) * (rank() + 1);
  const at::Tensor share =
      reducescatter(input, "reducescatter", ReduceOp::kSum);
  const int64_t mine = rows / size() + (rank() < rows % size() ? 1 : 0);
  const int64_t first =
      rank() * (rows / size()) + std::min<int64_t>(rank(), rows % size());
  ASSERT_EQ(share.size(0), mine);
  EXPECT_TRUE(Equal(share, ::torch::arange(rows * 3, at::kFloat)
                                   .reshape({rows, 3})
                                   .narrow(0, first, mine) *
                               RankSum()));
}

TEST(TorchJoin, JoinedRanksContributeZeros) {
  // Only rank 0 has data left: the others join at once and take part in its
  // allreduce with zeros.
  if (rank() == 0) {
    AllreduceOptions sum;
    sum.op = ReduceOp::kSum;
    EXPECT_TRUE(Equal(allreduce(::torch::ones({3}), "join.work", sum),
                      ::torch::ones({3})));
  }
  const int last = join();
  EXPECT_EQ(last, 0);
}

TEST(TorchMetricAverage, ExactForScalarsAndTensors) {
  // Dyadic values: every partial sum is exact in float64, whatever the order.
  const double value = 1000.25 * (rank() + 1);
  EXPECT_EQ(metric_average(value, "metric.loss"), 1000.25 * RankSum() / size());
  const at::Tensor per_class =
      ::torch::tensor({0.5, 0.25, 0.125}, at::kDouble) * (rank() + 1);
  const at::Tensor average = metric_average(per_class, "metric.auroc");
  EXPECT_TRUE(Equal(
      average, ::torch::tensor({0.5, 0.25, 0.125}) * (RankSum() / size())));
  EXPECT_THROW(metric_average(::torch::ones({2}, at::kLong), "metric.int"),
               c10::Error);
}

TEST(TorchErrors, MismatchCarriesTheRuntimeMessage) {
  // Shapes differ between ranks: the runtime fails the operation on every
  // rank. The adapter's c10::Error must carry exactly the runtime's message.
  const at::Tensor mine = ::torch::ones({rank() + 2});
  kolo::Tensor raw{mine.data_ptr(), DataType::kFloat32, {rank() + 2}, {}};
  StatusOr<kolo::Handle> direct = kolo::AllreduceAsync("mismatch", raw, raw);
  ASSERT_TRUE(direct.ok()) << direct.status();
  const Status runtime_status = direct->Wait();
  ASSERT_FALSE(runtime_status.ok());
  try {
    allreduce(mine, "mismatch");
    ADD_FAILURE() << "no c10::Error for a shape mismatch";
  } catch (const c10::Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(std::string(runtime_status.message())),
              std::string::npos)
        << "runtime: " << runtime_status.message() << "\nadapter: " << message;
    EXPECT_NE(message.find("mismatch"), std::string::npos) << message;
  }
  // The runtime stays usable.
  EXPECT_TRUE(Equal(allreduce(::torch::ones({2}), "after.mismatch"),
                    ::torch::ones({2})));
}

TEST(TorchErrors, DtypeMismatchAndLocalErrors) {
  const at::Tensor mine = rank() == 0 ? ::torch::ones({3}, at::kFloat)
                                      : ::torch::ones({3}, at::kDouble);
  EXPECT_THROW(allreduce(mine, "dtype.mismatch"), c10::Error);
  // Rejected on this rank before anything is sent.
  EXPECT_THROW(allreduce(::torch::ones({2}, at::kShort), "int16"), c10::Error);
  EXPECT_THROW(allreduce(at::Tensor(), "undefined"), c10::Error);
  EXPECT_THROW(allreduce(::torch::ones({2}), ""), c10::Error);
}

}  // namespace
}  // namespace torch
}  // namespace kolo
