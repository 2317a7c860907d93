// Tests of the reduction kernels and the float16/bfloat16 conversions.
#include "runtime/common/reduce.h"

#include <cmath>
#include <cstring>
#include <vector>

#include <gtest/gtest.h>

#include "runtime/common/half.h"
#include "tests/runtime/test_values.h"

namespace kolo {
namespace {

using testing::Buffer;

TEST(Half, RoundTripsEveryFloat16Value) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = HalfToFloat(static_cast<uint16_t>(h));
    _Float16 reference;
    std::memcpy(&reference, &h, 2);
    if (std::isnan(f)) {
      ASSERT_TRUE(std::isnan(static_cast<float>(reference))) << h;
      continue;
    }
    ASSERT_EQ(f, static_cast<float>(reference)) << "half bits " << h;
    ASSERT_EQ(FloatToHalf(f), h) << "half bits " << h;
  }
}

TEST(Half, FloatToHalfMatchesCompilerRounding) {
  uint32_t state = 12345;
  for (int i = 0; i < 2000000; ++i) {
    state = state * 1664525u + 1013904223u;
    const float f = BitsToFloat(state);
    if (std::isnan(f)) continue;
    const _Float16 reference = static_cast<_Float16>(f);
    uint16_t bits;
    std::memcpy(&bits, &reference, 2);
    ASSERT_EQ(FloatToHalf(f), bits) << "float " << f;
  }
}

TEST(Half, Bfloat16RoundsToNearestEven) {
  uint32_t state = 777;
  for (int i = 0; i < 2000000; ++i) {
    state = state * 1664525u + 1013904223u;
    const float f = BitsToFloat(state);
    if (std::isnan(f) || std::isinf(f)) continue;
    ASSERT_EQ(FloatToBfloat16(f), testing::ReferenceBfloat16(f)) << f;
  }
  EXPECT_TRUE(std::isnan(Bfloat16ToFloat(FloatToBfloat16(NAN))));
}

TEST(Reduce, EveryDtypeAndOpMatchesReference) {
  for (DataType dtype : testing::AllDataTypes()) {
    for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kMin, ReduceOp::kMax,
                        ReduceOp::kProduct}) {
      const int64_t count = 1031;
      Buffer a(dtype, count);
      Buffer b(dtype, count);
      for (int64_t i = 0; i < count; ++i) {
        a.Set(i, testing::InputValue(dtype, op, 0, i, 1));
        b.Set(i, testing::InputValue(dtype, op, 1, i, 1));
      }
      Buffer expected(dtype, count);
      for (int64_t i = 0; i < count; ++i) {
        expected.Set(i, testing::ReferenceReduce(
                            dtype, op, {a.Get(i), b.Get(i)}, 1));
      }
      ReduceInto(a.data(), b.data(), count, dtype, op);
      for (int64_t i = 0; i < count; ++i) {
        ASSERT_EQ(a.Get(i), expected.Get(i))
            << DataTypeName(dtype) << "/" << ReduceOpName(op) << " element "
            << i;
      }
    }
  }
}

TEST(Reduce, FinishDividesIntegersTowardZero) {
  std::vector<int32_t> values = {7, -7, 8, -8, 0};
  FinishReduction(values.data(), values.size(), DataType::kInt32, 3, 1.0);
  EXPECT_EQ(values, (std::vector<int32_t>{2, -2, 2, -2, 0}));
  std::vector<int8_t> small = {-5, 5};
  FinishReduction(small.data(), small.size(), DataType::kInt8, 2, 1.0);
  EXPECT_EQ(small, (std::vector<int8_t>{-2, 2}));
}

TEST(Reduce, FinishDividesFloatsThenScales) {
  std::vector<float> values = {10.0f, -1.0f};
  FinishReduction(values.data(), values.size(), DataType::kFloat32, 4, 3.0);
  EXPECT_EQ(values[0], 7.5f);
  EXPECT_EQ(values[1], -0.75f);
}

TEST(Reduce, ScaleTruncatesIntegers) {
  std::vector<int64_t> values = {5, -5};
  ScaleBuffer(values.data(), 2, DataType::kInt64, 0.5);
  EXPECT_EQ(values, (std::vector<int64_t>{2, -2}));
}

}  // namespace
}  // namespace kolo
