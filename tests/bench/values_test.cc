// Tests of kolo_bench's layouts and reference: a result produced by
// simulating each collective on every rank's inputs checks out, and any
// element changed, left unwritten or misplaced is counted wrong.
#include "bench/values.h"

#include <cstring>
#include <vector>

#include "bench/collective.h"
#include "gtest/gtest.h"

namespace kolo::bench {
namespace {

// Every rank's input buffer, filled as kolo_bench fills them.
template <typename T>
std::vector<std::vector<T>> Inputs(const Layout& layout, DataType dtype,
                                   const ValueModel& model) {
  std::vector<std::vector<T>> inputs(layout.ranks,
                                     std::vector<T>(layout.input_count));
  for (int r = 0; r < layout.ranks; ++r) {
    FillInput(model, r, inputs[r].data(), 0, layout.input_count);
  }
  return inputs;
}

// What `rank` should hold after the collective, computed by moving and
// adding elements part by part (root 0, sum).
template <typename T>
std::vector<T> Simulate(const Layout& layout,
                        const std::vector<std::vector<T>>& in, int rank) {
  std::vector<T> out(layout.output_count);
  const int n = layout.ranks;
  for (const Part& p : layout.parts) {
    switch (layout.collective) {
      case Collective::kAllreduce:
        for (int64_t i = 0; i < p.input_count; ++i) {
          T sum = 0;
          for (int r = 0; r < n; ++r) sum += in[r][p.input_offset + i];
          out[p.output_offset + i] = sum;
        }
        break;
      case Collective::kBroadcast:
        for (int64_t i = 0; i < p.input_count; ++i) {
          out[p.output_offset + i] = in[0][p.input_offset + i];
        }
        break;
      case Collective::kAllgather:
        for (int r = 0; r < n; ++r) {
          std::memcpy(&out[p.output_offset + r * p.input_count],
                      &in[r][p.input_offset], p.input_count * sizeof(T));
        }
        break;
      case Collective::kAlltoall: {
        const int64_t chunk = p.input_count / n;
        for (int j = 0; j < n; ++j) {
          std::memcpy(&out[p.output_offset + j * chunk],
                      &in[j][p.input_offset + rank * chunk], chunk * sizeof(T));
        }
        break;
      }
      case Collective::kReducescatter:
        for (int64_t i = 0; i < p.output_count; ++i) {
          T sum = 0;
          for (int r = 0; r < n; ++r) {
            sum += in[r][p.input_offset + rank * p.output_count + i];
          }
          out[p.output_offset + i] = sum;
        }
        break;
    }
  }
  return out;
}

class ReferenceTest
    : public ::testing::TestWithParam<std::tuple<Collective, int, int>> {};

TEST_P(ReferenceTest, SimulatedResultChecksOutAndCorruptionIsCounted) {
  const auto [collective, ranks, tensors] = GetParam();
  // 1003 bytes of float32: an odd count, rounded per collective.
  const int64_t count = CountForBytes(collective, 1003, 4, ranks);
  const Layout layout = MakeLayout(collective, count, ranks, tensors);
  const ValueModel model(DataType::kFloat32,
                         ValueKindFor(collective, ReduceOp::kSum), 3);
  const auto inputs = Inputs<float>(layout, DataType::kFloat32, model);
  for (int rank = 0; rank < ranks; ++rank) {
    std::vector<float> out = Simulate(layout, inputs, rank);
    EXPECT_EQ(CountWrong(layout, model, ReduceOp::kSum, 0, rank, out.data()), 0)
        << "rank " << rank;
    out[out.size() / 2] += 1;
    EXPECT_EQ(CountWrong(layout, model, ReduceOp::kSum, 0, rank, out.data()), 1)
        << "rank " << rank;
    Poison(DataType::kFloat32, out.data(), layout.output_count);
    EXPECT_EQ(CountWrong(layout, model, ReduceOp::kSum, 0, rank, out.data()),
              layout.output_count)
        << "rank " << rank;
  }
  // Another seed's inputs give another result.
  const ValueModel next(DataType::kFloat32,
                        ValueKindFor(collective, ReduceOp::kSum), 4);
  const std::vector<float> stale = Simulate(layout, inputs, 0);
  EXPECT_GT(CountWrong(layout, next, ReduceOp::kSum, 0, 0, stale.data()),
            layout.output_count / 2);
}

INSTANTIATE_TEST_SUITE_P(
    Collectives, ReferenceTest,
    ::testing::Combine(::testing::ValuesIn(AllCollectives()),
                       ::testing::Values(1, 2, 3, 4), ::testing::Values(1, 3)));

TEST(Layout, PartsTileTheBuffersInOrder) {
  for (Collective collective : AllCollectives()) {
    for (int ranks : {1, 2, 3, 5}) {
      for (int tensors : {1, 2, 7, 1000}) {
        const int64_t count = CountForBytes(collective, 4 * 1001, 4, ranks);
        const Layout layout = MakeLayout(collective, count, ranks, tensors);
        int64_t input = 0;
        int64_t output = 0;
        for (const Part& part : layout.parts) {
          EXPECT_EQ(part.input_offset, input);
          EXPECT_EQ(part.output_offset, output);
          EXPECT_GT(part.input_count, 0);
          input += part.input_count;
          output += part.output_count;
        }
        EXPECT_EQ(input, layout.input_count) << CollectiveName(collective);
        EXPECT_EQ(output, layout.output_count) << CollectiveName(collective);
        EXPECT_LE(static_cast<int>(layout.parts.size()), tensors);
      }
    }
  }
}

TEST(Layout, PartitionedCountsAreMultiplesOfTheRanks) {
  EXPECT_EQ(CountForBytes(Collective::kAllgather, 1003, 4, 3), 249);
  EXPECT_EQ(CountForBytes(Collective::kAlltoall, 4, 4, 3), 3);
  EXPECT_EQ(CountForBytes(Collective::kAllreduce, 1003, 4, 3), 250);
  EXPECT_EQ(CountForBytes(Collective::kBroadcast, 1, 4, 3), 1);
}

TEST(Reference, AverageAllowsOneRoundingOfFloat16) {
  const Layout layout = MakeLayout(Collective::kAllreduce, 64, 3, 1);
  const ValueModel model(
      DataType::kFloat16,
      ValueKindFor(Collective::kAllreduce, ReduceOp::kAverage), 1);
  std::vector<_Float16> out(64);
  std::vector<_Float16> exact(64);
  for (int64_t i = 0; i < 64; ++i) {
    double sum = 0;
    for (int r = 0; r < 3; ++r) sum += model.Input(r, i);
    exact[i] = static_cast<_Float16>(sum / 3);
    // One float32 rounding before the float16 one, as kolo computes.
    out[i] = static_cast<_Float16>(static_cast<float>(sum) / 3.0f);
  }
  EXPECT_EQ(CountWrong(layout, model, ReduceOp::kAverage, 0, 0, out.data()), 0);
  out[5] = static_cast<_Float16>(static_cast<float>(exact[5]) + 0.5f);
  EXPECT_EQ(CountWrong(layout, model, ReduceOp::kAverage, 0, 0, out.data()), 1);
}

TEST(Reference, BoolSumIsLogicalOrAndPoisonIsNeverTrue) {
  const Layout layout = MakeLayout(Collective::kAllreduce, 100, 2, 1);
  const ValueModel model(DataType::kBool, ValueKind::kReduced, 2);
  std::vector<uint8_t> out(100);
  for (int64_t i = 0; i < 100; ++i) {
    out[i] = (model.Input(0, i) != 0 || model.Input(1, i) != 0) ? 1 : 0;
  }
  EXPECT_EQ(CountWrong(layout, model, ReduceOp::kSum, 0, 0, out.data()), 0);
  Poison(DataType::kBool, out.data(), 100);
  EXPECT_EQ(CountWrong(layout, model, ReduceOp::kSum, 0, 0, out.data()), 100);
}

TEST(Reference, ProductsWrapLikeTheIntegerType) {
  // int8 products of 8 factors of +-2 reach 256 and wrap to 0.
  const int ranks = 8;
  const Layout layout = MakeLayout(Collective::kAllreduce, 256, ranks, 1);
  const ValueModel model(DataType::kInt8, ValueKind::kMultiplied, 5);
  std::vector<int8_t> out(256);
  for (int64_t i = 0; i < 256; ++i) {
    int8_t product = 1;
    for (int r = 0; r < ranks; ++r) {
      product =
          static_cast<int8_t>(product * static_cast<int8_t>(model.Input(r, i)));
    }
    out[i] = product;
  }
  EXPECT_EQ(CountWrong(layout, model, ReduceOp::kProduct, 0, 0, out.data()), 0);
}

}  // namespace
}  // namespace kolo::bench
