// Multi-rank tests of ReduceOp::kAdasum against an independent reference:
// every rank generates every rank's (deterministic) input and computes the
// paper's recursive formula in double precision, splitting the ranks into
// halves recursively (the runtime instead halves vectors level by level).
// Run by ctest under mpirun at np 2 and 4 on the data planes, and at np 3,
// where every submission must fail with InvalidArgument on every rank.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kolo/kolo.h"
#include "tests/runtime/test_values.h"

namespace kolo::testing {
namespace {

bool PowerOfTwo(int n) { return n > 0 && (n & (n - 1)) == 0; }

// A deterministic value in [-1, 1) for (rank, tensor salt, element).
double Noise(int rank, int salt, int64_t i) {
  uint64_t x = (static_cast<uint64_t>(rank) + 1) * 0x9e3779b97f4a7c15u ^
               (static_cast<uint64_t>(salt) + 7) * 0xbf58476d1ce4e5b9u ^
               (static_cast<uint64_t>(i) + 3) * 0x94d049bb133111ebu;
  x ^= x >> 31;
  x *= 0xd6e8feb8a5b6a4f5u;
  x ^= x >> 29;
  return static_cast<double>(x >> 11) / 4503599627370496.0 - 1.0;
}

// What one tensor looks like on every rank. A shared direction plus a
// rank's own noise, at a rank- and tensor-dependent scale, so that the
// coefficients differ from rank pair to rank pair and from tensor to
// tensor; `zero_rank` contributes zeros (-1: nobody; `size`: everybody).
struct TensorSpec {
  std::string name;
  int64_t count;
  int salt;
  double shared;  // weight of the direction every rank shares
  int zero_rank = -1;
};

// Rank r's input for `spec`, already rounded to dtype (the reference uses
// exactly what the runtime sees).
std::vector<double> Input(const TensorSpec& spec, DataType dtype, int rank,
                          int size) {
  Buffer rounded(dtype, spec.count);
  const bool zero = spec.zero_rank == rank || spec.zero_rank == size;
  const double scale = (1 + rank % 3) * (1 + spec.salt % 5) * 0.25;
  for (int64_t i = 0; i < spec.count; ++i) {
    const double value = spec.shared * Noise(-1, spec.salt, i) +
                         (1 - spec.shared) * Noise(rank, spec.salt, i);
    rounded.Set(i, zero ? 0.0 : scale * value);
  }
  std::vector<double> out(spec.count);
  for (int64_t i = 0; i < spec.count; ++i) out[i] = rounded.Get(i);
  return out;
}

// The paper's two-vector rule, in double.
std::vector<double> Combine(const std::vector<double>& a,
                            const std::vector<double>& b) {
  double dot = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    dot += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  if (aa == 0) return b;
  if (bb == 0) return a;
  std::vector<double> out(a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    out[i] = (1 - dot / (2 * aa)) * a[i] + (1 - dot / (2 * bb)) * b[i];
  }
  return out;
}

// Adasum of ranks [first, first + n): the left half's result with the
// right half's.
std::vector<double> Reference(const std::vector<std::vector<double>>& inputs,
                              int first, int n) {
  if (n == 1) return inputs[first];
  return Combine(Reference(inputs, first, n / 2),
                 Reference(inputs, first + n / 2, n / 2));
}

std::vector<double> Expected(const TensorSpec& spec, DataType dtype,
                             double scale = 1.0) {
  std::vector<std::vector<double>> inputs;
  for (int r = 0; r < Size(); ++r) {
    inputs.push_back(Input(spec, dtype, r, Size()));
    for (double& x : inputs.back()) x *= scale;
  }
  return Reference(inputs, 0, Size());
}

// Relative to the tensor's largest result: float32 is the arithmetic of
// the 16-bit types, which round once at the end.
double Tolerance(DataType dtype) {
  switch (dtype) {
    case DataType::kFloat64:
      return 1e-12;
    case DataType::kFloat32:
      return 2e-6;
    case DataType::kFloat16:
      return 2e-3;
    case DataType::kBfloat16:
      return 1.6e-2;
    default:
      return 0;
  }
}

void ExpectNear(const Buffer& got, const std::vector<double>& expected,
                const std::string& what) {
  double largest = 0;
  for (double x : expected) largest = std::max(largest, std::fabs(x));
  const double tolerance = Tolerance(got.dtype()) * std::max(largest, 1e-300);
  int reported = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    if (std::fabs(got.Get(i) - expected[i]) > tolerance && reported++ < 5) {
      ADD_FAILURE() << what << " element " << i << ": expected " << expected[i]
                    << ", got " << got.Get(i) << " (tolerance " << tolerance
                    << ")";
    }
  }
}

const std::vector<DataType>& FloatTypes() {
  static const std::vector<DataType> types = {
      DataType::kFloat32, DataType::kFloat64, DataType::kFloat16,
      DataType::kBfloat16};
  return types;
}

AllreduceOptions Adasum() {
  AllreduceOptions options;
  options.op = ReduceOp::kAdasum;
  return options;
}

class AdasumTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!PowerOfTwo(Size())) GTEST_SKIP() << "adasum needs 2^k ranks";
  }
};

TEST_F(AdasumTest, SingleTensorsEveryDtypeAndSize) {
  // 1, odd, prime, and (with the test's 4 KiB fusion buffer) larger than
  // the fusion buffer; each alone, in place and out of place.
  int salt = 0;
  for (DataType dtype : FloatTypes()) {
    for (int64_t count : {1, 7, 257, 3001}) {
      for (bool in_place : {true, false}) {
        const TensorSpec spec{absl::StrCat("adasum.", DataTypeName(dtype), ".",
                                           count, in_place ? ".in" : ".out"),
                              count, ++salt, 0.5};
        Buffer input(dtype, count);
        Buffer output(dtype, count);
        const std::vector<double> mine = Input(spec, dtype, Rank(), Size());
        for (int64_t i = 0; i < count; ++i) input.Set(i, mine[i]);
        Buffer& result = in_place ? input : output;
        const Status s =
            Allreduce(spec.name, input.tensor(), result.tensor(), Adasum());
        ASSERT_TRUE(s.ok()) << spec.name << ": " << s;
        ExpectNear(result, Expected(spec, dtype), spec.name);
      }
    }
  }
}

TEST_F(AdasumTest, FusedTensorsKeepTheirOwnCoefficients) {
  // Nearly parallel, unrelated, and a tensor one rank (or every rank) holds
  // zeros in, fused into one batch: each must come out as if reduced alone.
  // Submitted asynchronously four times, so later steps run from the
  // response cache (and, on one host, the fast lane).
  const RuntimeStats before = GetStats();
  for (int step = 0; step < 4; ++step) {
    for (DataType dtype : FloatTypes()) {
      const std::string base = absl::StrCat("fused.", DataTypeName(dtype));
      const std::vector<TensorSpec> specs = {
          {base + ".parallel", 40, 11, 0.95},
          {base + ".unrelated", 33, 12, 0.0},
          {base + ".rank0zero", 17, 13, 0.3, 0},
          {base + ".allzero", 9, 14, 0.3, Size()},
          {base + ".one", 1, 15, 0.5},
          {base + ".empty", 0, 16, 0.5}};
      std::vector<Buffer> buffers;
      std::vector<Handle> handles;
      for (const TensorSpec& spec : specs) {
        buffers.emplace_back(dtype, spec.count);
        const std::vector<double> mine = Input(spec, dtype, Rank(), Size());
        for (int64_t i = 0; i < spec.count; ++i) buffers.back().Set(i, mine[i]);
      }
      for (size_t k = 0; k < specs.size(); ++k) {
        Tensor t = buffers[k].tensor();
        StatusOr<Handle> h = AllreduceAsync(specs[k].name, t, t, Adasum());
        ASSERT_TRUE(h.ok()) << specs[k].name << ": " << h.status();
        handles.push_back(*h);
      }
      for (size_t k = 0; k < specs.size(); ++k) {
        const Status s = handles[k].Wait();
        ASSERT_TRUE(s.ok()) << specs[k].name << ": " << s;
        ExpectNear(buffers[k], Expected(specs[k], dtype),
                   absl::StrCat(specs[k].name, " step ", step));
      }
    }
  }
  const RuntimeStats after = GetStats();
  EXPECT_GT(after.tensors_fused, before.tensors_fused)
      << "the small tensors should have been fused";
  // On one host the later steps run in the fast lane (unless switched off).
  const char* lane = std::getenv("KOLO_FAST_LANE");
  if (BackendName() == "shm" && (lane == nullptr || lane[0] != '0')) {
    EXPECT_GT(after.fast_operations, before.fast_operations);
  }
}

TEST_F(AdasumTest, GroupedAllreduceIsFusedPerTensor) {
  const DataType dtype = DataType::kFloat32;
  const std::vector<TensorSpec> specs = {{"group.0", 64, 21, 0.9},
                                         {"group.1", 5, 22, 0.1},
                                         {"group.2", 100, 23, 0.6, 0}};
  std::vector<Buffer> buffers;
  std::vector<std::string> names;
  std::vector<Tensor> tensors;
  for (const TensorSpec& spec : specs) {
    buffers.emplace_back(dtype, spec.count);
    const std::vector<double> mine = Input(spec, dtype, Rank(), Size());
    for (int64_t i = 0; i < spec.count; ++i) buffers.back().Set(i, mine[i]);
  }
  for (size_t k = 0; k < specs.size(); ++k) {
    names.push_back(specs[k].name);
    tensors.push_back(buffers[k].tensor());
  }
  const int64_t fused_before = GetStats().tensors_fused;
  StatusOr<Handle> h = GroupedAllreduceAsync(names, tensors, tensors, Adasum());
  ASSERT_TRUE(h.ok()) << h.status();
  ASSERT_TRUE(h->Wait().ok());
  EXPECT_EQ(GetStats().tensors_fused - fused_before, 3);
  for (size_t k = 0; k < specs.size(); ++k) {
    ExpectNear(buffers[k], Expected(specs[k], dtype), specs[k].name);
  }
}

TEST_F(AdasumTest, ScaleFactorsApplyBeforeAndAfter) {
  const TensorSpec spec{"scaled", 50, 31, 0.4};
  const DataType dtype = DataType::kFloat64;
  Buffer buffer(dtype, spec.count);
  const std::vector<double> mine = Input(spec, dtype, Rank(), Size());
  for (int64_t i = 0; i < spec.count; ++i) buffer.Set(i, mine[i]);
  AllreduceOptions options = Adasum();
  options.prescale_factor = 0.5;
  options.postscale_factor = 3.0;
  ASSERT_TRUE(
      Allreduce(spec.name, buffer.tensor(), buffer.tensor(), options).ok());
  std::vector<double> expected = Expected(spec, dtype, 0.5);
  for (double& x : expected) x *= 3.0;
  ExpectNear(buffer, expected, spec.name);
}

TEST_F(AdasumTest, EveryRankHoldsTheSameBytes) {
  const TensorSpec spec{"same.bytes", 1001, 41, 0.3};
  const DataType dtype = DataType::kFloat32;
  Buffer result(dtype, spec.count);
  const std::vector<double> mine = Input(spec, dtype, Rank(), Size());
  for (int64_t i = 0; i < spec.count; ++i) result.Set(i, mine[i]);
  ASSERT_TRUE(
      Allreduce(spec.name, result.tensor(), result.tensor(), Adasum()).ok());
  Buffer low(dtype, spec.count);
  Buffer high(dtype, spec.count);
  AllreduceOptions min;
  min.op = ReduceOp::kMin;
  AllreduceOptions max;
  max.op = ReduceOp::kMax;
  ASSERT_TRUE(Allreduce("same.min", result.tensor(), low.tensor(), min).ok());
  ASSERT_TRUE(Allreduce("same.max", result.tensor(), high.tensor(), max).ok());
  for (int64_t i = 0; i < spec.count; ++i) {
    ASSERT_EQ(low.Get(i), high.Get(i)) << "element " << i;
  }
}

TEST_F(AdasumTest, AJoinedRankContributesZeros) {
  const TensorSpec spec{"joined", 30, 51, 0.5, 0};
  const DataType dtype = DataType::kFloat32;
  Buffer buffer(dtype, spec.count);
  if (Rank() != 0) {
    const std::vector<double> mine = Input(spec, dtype, Rank(), Size());
    for (int64_t i = 0; i < spec.count; ++i) buffer.Set(i, mine[i]);
    const Status s =
        Allreduce(spec.name, buffer.tensor(), buffer.tensor(), Adasum());
    ASSERT_TRUE(s.ok()) << s;
  }
  StatusOr<int> last = Join();
  ASSERT_TRUE(last.ok()) << last.status();
  if (Rank() != 0) ExpectNear(buffer, Expected(spec, dtype), spec.name);
}

TEST_F(AdasumTest, RefusedInputsFailAtSubmission) {
  std::vector<int32_t> ints(4, 1);
  Tensor t{ints.data(), DataType::kInt32, {4}};
  Status s = Allreduce("bad.int", t, t, Adasum());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("int32"), std::string::npos) << s;

  std::vector<float> floats(4, 1);
  Tensor f{floats.data(), DataType::kFloat32, {4}};
  StatusOr<Handle> rs =
      ReducescatterAsync("bad.rs", f, nullptr, ReduceOp::kAdasum);
  EXPECT_EQ(rs.status().code(), absl::StatusCode::kInvalidArgument)
      << rs.status();
  EXPECT_NE(rs.status().message().find("adasum"), std::string::npos);
}

TEST(AdasumSize, NonPowerOfTwoFailsOnEveryRank) {
  if (PowerOfTwo(Size())) GTEST_SKIP() << Size() << " ranks are a power of two";
  std::vector<float> x(8, 1.0f);
  Tensor t{x.data(), DataType::kFloat32, {8}};
  const Status s = Allreduce("npot", t, t, Adasum());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find(absl::StrCat("this job has ", Size())),
            std::string::npos)
      << s;
  // Nothing was queued: the runtime carries on.
  AllreduceOptions sum;
  sum.op = ReduceOp::kSum;
  ASSERT_TRUE(Allreduce("after.npot", t, t, sum).ok());
  EXPECT_EQ(x[0], Size());
}

class KoloEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    const Status status = Init();
    ASSERT_TRUE(status.ok()) << status;
    if (Rank() == 0) {
      std::printf("kolo adasum test: %d ranks, backend %s\n", Size(),
                  BackendName().c_str());
    }
  }
  void TearDown() override { ASSERT_TRUE(Shutdown().ok()); }
};

}  // namespace
}  // namespace kolo::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::AddGlobalTestEnvironment(new kolo::testing::KoloEnvironment);
  return RUN_ALL_TESTS();
}
