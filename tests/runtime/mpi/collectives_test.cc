// Multi-rank tests of every collective against an independently computed
// reference. Run by ctest under mpirun at np 1-4; every rank runs the same
// test sequence. Each rank submits its tensors in its own random order (the
// seed is printed; set KOLO_TEST_SEED to reproduce).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kolo/kolo.h"
#include "tests/runtime/test_values.h"

namespace kolo::testing {
namespace {

uint64_t Seed() {
  static const uint64_t seed = [] {
    const char* env = std::getenv("KOLO_TEST_SEED");
    return env ? std::strtoull(env, nullptr, 10)
               : static_cast<uint64_t>(std::chrono::system_clock::now()
                                           .time_since_epoch()
                                           .count() %
                                       1000000);
  }();
  return seed;
}

// The same seed on every rank: rank 0's, broadcast.
uint64_t SharedSeed() {
  static const uint64_t seed = [] {
    int64_t value = static_cast<int64_t>(Seed());
    Tensor t{&value, DataType::kInt64, {1}};
    EXPECT_TRUE(Broadcast("test.seed", t, 0).ok());
    return static_cast<uint64_t>(value);
  }();
  return seed;
}

std::mt19937_64 RankRng(int salt) {
  return std::mt19937_64(SharedSeed() * 1000003 + Rank() * 7919 + salt);
}

int64_t RowElementsOf(const std::vector<int64_t>& row_shape) {
  int64_t n = 1;
  for (int64_t d : row_shape) n *= d;
  return n;
}

std::vector<int64_t> Sizes() {
  // 0, 1, odd, prime, and (with the test's KOLO_FUSION_THRESHOLD of 4 KiB)
  // larger than the fusion buffer.
  return {0, 1, 7, 13, 257, 2053};
}

struct AllreduceCase {
  std::string name;
  DataType dtype;
  ReduceOp op;
  int64_t count;
  bool in_place;
  int salt;
  Buffer input;
  Buffer output;
};

std::vector<AllreduceCase> MakeAllreduceCases(int step) {
  std::vector<AllreduceCase> cases;
  int salt = 0;
  for (DataType dtype : AllDataTypes()) {
    for (ReduceOp op : AllReduceOps()) {
      if (dtype == DataType::kBool && op == ReduceOp::kAverage) continue;
      for (int64_t count : Sizes()) {
        for (bool in_place : {false, true}) {
          ++salt;
          AllreduceCase c{
              absl::StrCat("ar.", Describe(dtype, op, count, in_place)),
              dtype,
              op,
              count,
              in_place,
              salt + step,
              Buffer(dtype, count),
              Buffer(dtype, count)};
          for (int64_t i = 0; i < count; ++i) {
            c.input.Set(i, InputValue(dtype, op, Rank(), i, c.salt));
          }
          cases.push_back(std::move(c));
        }
      }
    }
  }
  return cases;
}

void CheckAllreduce(AllreduceCase& c, int contributors) {
  const Buffer& result = c.in_place ? c.input : c.output;
  Buffer expected(c.dtype, c.count);
  for (int64_t i = 0; i < c.count; ++i) {
    std::vector<double> values;
    for (int r = 0; r < contributors; ++r) {
      values.push_back(InputValue(c.dtype, c.op, r, i, c.salt));
    }
    expected.Set(i, ReferenceReduce(c.dtype, c.op, values, contributors));
    ASSERT_EQ(result.Get(i), expected.Get(i))
        << c.name << " element " << i << " (seed " << SharedSeed() << ")";
  }
}

TEST(Collectives, AllreduceEveryDtypeOpAndSizeInRandomOrder) {
  // Several steps reuse the names, so later steps go through the response
  // cache (and, with a small KOLO_CACHE_CAPACITY, its eviction).
  for (int step = 0; step < 4; ++step) {
    std::vector<AllreduceCase> cases = MakeAllreduceCases(step);
    std::vector<size_t> order(cases.size());
    std::iota(order.begin(), order.end(), 0);
    std::mt19937_64 rng = RankRng(step);
    std::shuffle(order.begin(), order.end(), rng);
    std::vector<Handle> handles(cases.size());
    for (size_t k : order) {
      AllreduceCase& c = cases[k];
      Tensor in = c.input.tensor();
      Tensor out = c.in_place ? in : c.output.tensor();
      AllreduceOptions options;
      options.op = c.op;
      StatusOr<Handle> h = AllreduceAsync(c.name, in, out, options);
      ASSERT_TRUE(h.ok()) << c.name << ": " << h.status();
      handles[k] = *h;
    }
    for (size_t k = 0; k < cases.size(); ++k) {
      ASSERT_TRUE(handles[k].Wait().ok())
          << cases[k].name << ": " << handles[k].Wait();
      CheckAllreduce(cases[k], Size());
    }
  }
  const RuntimeStats stats = GetStats();
  EXPECT_GT(stats.cache_hits, 0) << "later steps should hit the cache";
  if (Size() > 1) EXPECT_GT(stats.tensors_fused, 0) << "small tensors fuse";
}

TEST(Collectives, AllreduceScaleFactors) {
  for (DataType dtype : {DataType::kFloat32, DataType::kFloat64,
                         DataType::kFloat16, DataType::kInt32}) {
    const int64_t count = 29;
    Buffer buffer(dtype, count);
    for (int64_t i = 0; i < count; ++i) {
      buffer.Set(i, InputValue(dtype, ReduceOp::kSum, Rank(), i, 5));
    }
    AllreduceOptions options;
    options.op = ReduceOp::kSum;
    options.prescale_factor = 0.5;
    options.postscale_factor = 3.0;
    const std::string name = absl::StrCat("scaled.", DataTypeName(dtype));
    ASSERT_TRUE(
        Allreduce(name, buffer.tensor(), buffer.tensor(), options).ok());
    for (int64_t i = 0; i < count; ++i) {
      double sum = 0;
      for (int r = 0; r < Size(); ++r) {
        const double x = InputValue(dtype, ReduceOp::kSum, r, i, 5) * 0.5;
        sum += dtype == DataType::kInt32 ? std::trunc(x) : x;
      }
      const double expected =
          dtype == DataType::kInt32 ? std::trunc(sum * 3) : sum * 3;
      EXPECT_EQ(buffer.Get(i), expected) << name << " element " << i;
    }
  }
}

TEST(Collectives, HalfPrecisionIsReducedInFloat32AndRoundedOnce) {
  // 2048 + 1 + 1 + ... : summed in float16 step by step every +1 is lost
  // (2049 rounds to 2048); kolo sums in float32 and rounds once.
  for (DataType dtype : {DataType::kFloat16, DataType::kBfloat16}) {
    const double big = dtype == DataType::kFloat16 ? 2048 : 256;
    Buffer x(dtype, 1);
    x.Set(0, Rank() == 0 ? big : 1.0);
    AllreduceOptions options;
    options.op = ReduceOp::kSum;
    const std::string name = absl::StrCat("half.once.", DataTypeName(dtype));
    ASSERT_TRUE(Allreduce(name, x.tensor(), x.tensor(), options).ok());
    Buffer expected(dtype, 1);
    expected.Set(0, big + (Size() - 1));  // exact sum, rounded once
    EXPECT_EQ(x.Get(0), expected.Get(0)) << name;
  }
}

// Above 64 KiB of float32 the ring and hierarchical planes move float16 and
// bfloat16 as 16 bits between ranks (partial sums rounded per hop). With
// small integers every partial sum is exact, so every op must give the
// exact result, the same on every rank.
TEST(Collectives, LargeHalfTensorsAreExactWithSixteenBitsOnTheWire) {
  constexpr int64_t kCount = 40009;  // 160 KiB as float32, odd
  for (DataType dtype : {DataType::kFloat16, DataType::kBfloat16}) {
    for (ReduceOp op :
         {ReduceOp::kSum, ReduceOp::kAverage, ReduceOp::kMax, ReduceOp::kMin}) {
      Buffer x(dtype, kCount);
      for (int64_t i = 0; i < kCount; ++i) x.Set(i, (Rank() + 1) * (i % 7));
      AllreduceOptions options;
      options.op = op;
      const std::string name = absl::StrCat("half.large.", DataTypeName(dtype),
                                            ".", ReduceOpName(op));
      ASSERT_TRUE(Allreduce(name, x.tensor(), x.tensor(), options).ok())
          << name;
      const int n = Size();
      int64_t wrong = 0;
      for (int64_t i = 0; i < kCount && wrong < 5; ++i) {
        const double k = i % 7;
        double expected = 0;
        switch (op) {
          case ReduceOp::kSum:
            expected = k * n * (n + 1) / 2;
            break;
          case ReduceOp::kAverage:
            expected = k * (n + 1) / 2.0;
            break;
          case ReduceOp::kMax:
            expected = k * n;
            break;
          default:
            expected = k;
            break;
        }
        Buffer rounded(dtype, 1);
        rounded.Set(0, expected);
        if (x.Get(i) != rounded.Get(0)) {
          ++wrong;
          ADD_FAILURE() << name << " element " << i << ": " << x.Get(i)
                        << ", expected " << rounded.Get(0);
        }
      }
    }
  }
}

TEST(Collectives, AllgatherWithDifferentFirstDimensions) {
  for (DataType dtype : AllDataTypes()) {
    const int64_t rows = Rank() == 0 ? 0 : Rank() + 2;  // rank 0 sends none
    const int64_t width = 3;
    Buffer input(dtype, rows * width);
    for (int64_t i = 0; i < rows * width; ++i) {
      input.Set(i, InputValue(dtype, ReduceOp::kSum, Rank(), i, 9));
    }
    Tensor t = input.tensor();
    t.shape = {rows, width};
    const std::string name = absl::StrCat("ag.", DataTypeName(dtype));
    StatusOr<Handle> h = AllgatherAsync(name, t);
    ASSERT_TRUE(h.ok()) << h.status();
    ASSERT_TRUE(h->Wait().ok()) << h->Wait();
    int64_t total_rows = 0;
    for (int r = 1; r < Size(); ++r) total_rows += r + 2;
    ASSERT_EQ(h->output_shape(), (std::vector<int64_t>{total_rows, width}));
    Buffer output(dtype, total_rows * width);
    std::memcpy(output.data(), h->output_data(),
                total_rows * width * DataTypeSize(dtype));
    int64_t offset = 0;
    for (int r = 1; r < Size(); ++r) {
      for (int64_t i = 0; i < (r + 2) * width; ++i) {
        Buffer one(dtype, 1);
        one.Set(0, InputValue(dtype, ReduceOp::kSum, r, i, 9));
        ASSERT_EQ(output.Get(offset + i), one.Get(0))
            << name << " from rank " << r << " element " << i;
      }
      offset += (r + 2) * width;
    }
  }
}

TEST(Collectives, AllgatherWithAllocator) {
  std::vector<float> storage;
  std::vector<int64_t> seen_shape;
  std::vector<float> input(2, static_cast<float>(Rank()));
  Tensor t{input.data(), DataType::kFloat32, {2}};
  StatusOr<Handle> h =
      AllgatherAsync("ag.allocator", t,
                     [&](const std::vector<int64_t>& shape) -> StatusOr<void*> {
                       seen_shape = shape;
                       storage.resize(shape[0]);
                       return storage.data();
                     });
  ASSERT_TRUE(h.ok() && h->Wait().ok());
  ASSERT_EQ(seen_shape, (std::vector<int64_t>{2 * Size()}));
  for (int r = 0; r < Size(); ++r) {
    EXPECT_EQ(storage[2 * r], r);
    EXPECT_EQ(storage[2 * r + 1], r);
  }
}

TEST(Collectives, BroadcastEveryDtypeFromEveryRoot) {
  for (DataType dtype : AllDataTypes()) {
    for (int root = 0; root < Size(); ++root) {
      for (int64_t count : {int64_t{0}, int64_t{1}, int64_t{1031}}) {
        Buffer buffer(dtype, count);
        for (int64_t i = 0; i < count; ++i) {
          buffer.Set(i, InputValue(dtype, ReduceOp::kSum, Rank(), i, root));
        }
        const std::string name =
            absl::StrCat("bc.", DataTypeName(dtype), ".", root, ".", count);
        ASSERT_TRUE(Broadcast(name, buffer.tensor(), root).ok()) << name;
        for (int64_t i = 0; i < count; ++i) {
          Buffer one(dtype, 1);
          one.Set(0, InputValue(dtype, ReduceOp::kSum, root, i, root));
          ASSERT_EQ(buffer.Get(i), one.Get(0)) << name << " element " << i;
        }
      }
    }
  }
}

TEST(Collectives, AlltoallWithUnevenSplits) {
  // Rank r sends (r + j) % 3 rows of width 2 to rank j; row values encode
  // (sender, receiver, row).
  const int size = Size();
  const int64_t width = 2;
  std::vector<int64_t> splits(size);
  int64_t rows = 0;
  for (int j = 0; j < size; ++j) rows += splits[j] = (Rank() + j) % 3;
  std::vector<int32_t> input;
  for (int j = 0; j < size; ++j) {
    for (int64_t k = 0; k < splits[j]; ++k) {
      for (int64_t w = 0; w < width; ++w) {
        input.push_back(Rank() * 10000 + j * 100 + static_cast<int>(k) * 10 +
                        w);
      }
    }
  }
  Tensor t{input.data(), DataType::kInt32, {rows, width}};
  StatusOr<Handle> h = AlltoallAsync("a2a.uneven", t, splits);
  ASSERT_TRUE(h.ok()) << h.status();
  ASSERT_TRUE(h->Wait().ok()) << h->Wait();
  std::vector<int64_t> expected_splits(size);
  int64_t received_rows = 0;
  for (int s = 0; s < size; ++s) {
    received_rows += expected_splits[s] = (s + Rank()) % 3;
  }
  EXPECT_EQ(h->received_splits(), expected_splits);
  ASSERT_EQ(h->output_shape(), (std::vector<int64_t>{received_rows, width}));
  const auto* out = static_cast<const int32_t*>(h->output_data());
  int64_t index = 0;
  for (int s = 0; s < size; ++s) {
    for (int64_t k = 0; k < expected_splits[s]; ++k) {
      for (int64_t w = 0; w < width; ++w) {
        const int expected =
            s * 10000 + Rank() * 100 + static_cast<int>(k) * 10 + w;
        ASSERT_EQ(out[index], expected) << "from rank " << s << " row " << k;
        ++index;
      }
    }
  }
}

TEST(Collectives, AlltoallEqualSplitsEveryDtype) {
  for (DataType dtype : AllDataTypes()) {
    const int64_t per_rank = 3;
    Buffer input(dtype, per_rank * Size());
    for (int64_t i = 0; i < per_rank * Size(); ++i) {
      input.Set(i, InputValue(dtype, ReduceOp::kSum, Rank(), i, 4));
    }
    const std::string name = absl::StrCat("a2a.", DataTypeName(dtype));
    StatusOr<Handle> h = AlltoallAsync(name, input.tensor());
    ASSERT_TRUE(h.ok() && h->Wait().ok()) << name;
    Buffer out(dtype, per_rank * Size());
    std::memcpy(out.data(), h->output_data(),
                per_rank * Size() * DataTypeSize(dtype));
    for (int s = 0; s < Size(); ++s) {
      for (int64_t k = 0; k < per_rank; ++k) {
        Buffer one(dtype, 1);
        one.Set(0,
                InputValue(dtype, ReduceOp::kSum, s, Rank() * per_rank + k, 4));
        ASSERT_EQ(out.Get(s * per_rank + k), one.Get(0)) << name;
      }
    }
  }
}

TEST(Collectives, ReducescatterEveryDtypeAndOp) {
  for (DataType dtype : AllDataTypes()) {
    for (ReduceOp op : AllReduceOps()) {
      if (dtype == DataType::kBool && op == ReduceOp::kAverage) continue;
      for (int64_t rows : {int64_t{0}, int64_t{1}, int64_t{7}, int64_t{13},
                           int64_t{3} * Size()}) {
        const int64_t width = 2;
        Buffer input(dtype, rows * width);
        for (int64_t i = 0; i < rows * width; ++i) {
          input.Set(i, InputValue(dtype, op, Rank(), i, 11));
        }
        Tensor t = input.tensor();
        t.shape = {rows, width};
        const std::string name =
            absl::StrCat("rs.", Describe(dtype, op, rows, false));
        StatusOr<Handle> h = ReducescatterAsync(name, t, nullptr, op);
        ASSERT_TRUE(h.ok()) << h.status();
        ASSERT_TRUE(h->Wait().ok()) << name << ": " << h->Wait();
        const int64_t mine = rows / Size() + (Rank() < rows % Size() ? 1 : 0);
        int64_t first = 0;
        for (int r = 0; r < Rank(); ++r) {
          first += rows / Size() + (r < rows % Size() ? 1 : 0);
        }
        ASSERT_EQ(h->output_shape(), (std::vector<int64_t>{mine, width}));
        Buffer out(dtype, mine * width);
        std::memcpy(out.data(), h->output_data(),
                    mine * width * DataTypeSize(dtype));
        for (int64_t i = 0; i < mine * width; ++i) {
          std::vector<double> values;
          for (int r = 0; r < Size(); ++r) {
            values.push_back(InputValue(dtype, op, r, first * width + i, 11));
          }
          Buffer expected(dtype, 1);
          expected.Set(0, ReferenceReduce(dtype, op, values, Size()));
          ASSERT_EQ(out.Get(i), expected.Get(0)) << name << " element " << i;
        }
      }
    }
  }
}

TEST(Collectives, GroupedAllreduceRunsTogether) {
  std::vector<std::vector<float>> data(5);
  std::vector<std::string> names;
  std::vector<Tensor> tensors;
  for (int k = 0; k < 5; ++k) {
    data[k].assign(k * 10 + 1, static_cast<float>(Rank() + k));
    names.push_back(absl::StrCat("group.ok.", k));
    tensors.push_back(Tensor{data[k].data(),
                             DataType::kFloat32,
                             {static_cast<int64_t>(data[k].size())}});
  }
  // Submit in a rank-specific order of groups' members is irrelevant: one call.
  AllreduceOptions options;
  options.op = ReduceOp::kSum;
  StatusOr<Handle> h = GroupedAllreduceAsync(names, tensors, tensors, options);
  ASSERT_TRUE(h.ok()) << h.status();
  ASSERT_TRUE(h->Wait().ok()) << h->Wait();
  const float base = Size() * (Size() - 1) / 2.0f;
  for (int k = 0; k < 5; ++k) {
    for (float v : data[k]) ASSERT_EQ(v, base + Size() * k) << "tensor " << k;
  }
}

TEST(Collectives, GroupedAllreduceFailsAllOrNothing) {
  if (Size() < 2) GTEST_SKIP() << "needs two ranks to disagree";
  std::vector<std::vector<float>> data(3, std::vector<float>(4, 1.0f));
  if (Rank() == 1) data[2].resize(5, 1.0f);  // one member mismatches
  std::vector<std::string> names = {"group.bad.0", "group.bad.1",
                                    "group.bad.2"};
  std::vector<Tensor> tensors;
  for (auto& d : data) {
    tensors.push_back(
        Tensor{d.data(), DataType::kFloat32, {static_cast<int64_t>(d.size())}});
  }
  StatusOr<Handle> h = GroupedAllreduceAsync(names, tensors, tensors);
  ASSERT_TRUE(h.ok());
  const Status status = h->Wait();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_NE(status.message().find("group.bad.2"), std::string::npos) << status;
  for (auto& d : data) EXPECT_EQ(d[0], 1.0f) << "no member may have run";
}

// Rows rank `rank` contributes to member k of a grouped allgather: 0 on
// some ranks, different on each.
int64_t GroupedRows(int rank, int k) {
  return (rank + k) % 3 == 0 ? 0 : rank + k;
}

TEST(Collectives, GroupedAllgatherEveryDtypeWithDifferentFirstDimensions) {
  // Member shapes: rows x 3, rows (1-d), rows x 2 x 2, and one too large to
  // fuse under the tests' 4 KiB buffer (rows x 300).
  const std::vector<std::vector<int64_t>> row_shapes = {{3}, {}, {2, 2}, {300}};
  for (DataType dtype : AllDataTypes()) {
    std::vector<Buffer> inputs;
    std::vector<Tensor> tensors;
    std::vector<std::string> names;
    for (size_t k = 0; k < row_shapes.size(); ++k) {
      std::vector<int64_t> shape = {GroupedRows(Rank(), k)};
      shape.insert(shape.end(), row_shapes[k].begin(), row_shapes[k].end());
      int64_t count = 1;
      for (int64_t d : shape) count *= d;
      inputs.emplace_back(dtype, count);
      for (int64_t i = 0; i < count; ++i) {
        inputs.back().Set(i, InputValue(dtype, ReduceOp::kSum, Rank(), i, k));
      }
      names.push_back(absl::StrCat("gag.", DataTypeName(dtype), ".", k));
    }
    for (size_t k = 0; k < row_shapes.size(); ++k) {
      Tensor t = inputs[k].tensor();
      t.shape = {GroupedRows(Rank(), k)};
      t.shape.insert(t.shape.end(), row_shapes[k].begin(), row_shapes[k].end());
      tensors.push_back(t);
    }
    // Each rank lists the members in its own order.
    std::vector<size_t> order(names.size());
    std::iota(order.begin(), order.end(), 0);
    std::mt19937_64 rng = RankRng(static_cast<int>(dtype));
    std::shuffle(order.begin(), order.end(), rng);
    std::vector<std::string> submitted_names;
    std::vector<Tensor> submitted;
    for (size_t k : order) {
      submitted_names.push_back(names[k]);
      submitted.push_back(tensors[k]);
    }
    StatusOr<Handle> h = GroupedAllgatherAsync(submitted_names, submitted);
    ASSERT_TRUE(h.ok()) << h.status();
    ASSERT_TRUE(h->Wait().ok()) << h->Wait();
    for (size_t m = 0; m < order.size(); ++m) {
      const size_t k = order[m];
      int64_t total_rows = 0;
      for (int r = 0; r < Size(); ++r) total_rows += GroupedRows(r, k);
      std::vector<int64_t> expected_shape = {total_rows};
      expected_shape.insert(expected_shape.end(), row_shapes[k].begin(),
                            row_shapes[k].end());
      ASSERT_EQ(h->output_shape(m), expected_shape) << names[k];
      const int64_t row = RowElementsOf(row_shapes[k]);
      Buffer output(dtype, total_rows * row);
      std::memcpy(output.data(), h->output_data(m),
                  total_rows * row * DataTypeSize(dtype));
      int64_t offset = 0;
      for (int r = 0; r < Size(); ++r) {
        for (int64_t i = 0; i < GroupedRows(r, k) * row; ++i) {
          Buffer one(dtype, 1);
          one.Set(0, InputValue(dtype, ReduceOp::kSum, r, i, k));
          ASSERT_EQ(output.Get(offset + i), one.Get(0))
              << names[k] << " from rank " << r << " element " << i;
        }
        offset += GroupedRows(r, k) * row;
      }
    }
  }
}

TEST(Collectives, GroupedAllgatherFusesSmallMembersIntoOneCollective) {
  std::vector<std::vector<int32_t>> data(4);
  std::vector<std::vector<int32_t>> outputs(4);
  std::vector<std::string> names;
  std::vector<Tensor> tensors;
  std::vector<OutputAllocator> allocators;
  for (int k = 0; k < 4; ++k) {
    data[k].assign(k + 1, Rank() * 100 + k);
    names.push_back(absl::StrCat("gag.fused.", k));
    tensors.push_back(Tensor{data[k].data(),
                             DataType::kInt32,
                             {static_cast<int64_t>(data[k].size())}});
    // Members 0 and 2 bring their own memory; 1 and 3 use the handle's.
    if (k % 2 == 0) {
      allocators.push_back(
          [&outputs, k](const std::vector<int64_t>& shape) -> StatusOr<void*> {
            outputs[k].resize(shape[0]);
            return outputs[k].data();
          });
    } else {
      allocators.push_back(nullptr);
    }
  }
  const RuntimeStats before = GetStats();
  StatusOr<Handle> h = GroupedAllgatherAsync(names, tensors, allocators);
  ASSERT_TRUE(h.ok()) << h.status();
  ASSERT_TRUE(h->Wait().ok()) << h->Wait();
  const RuntimeStats after = GetStats();
  EXPECT_EQ(after.collectives_executed - before.collectives_executed, 1);
  EXPECT_EQ(after.tensors_fused - before.tensors_fused, 4);
  for (int k = 0; k < 4; ++k) {
    const int32_t* out = k % 2 == 0
                             ? outputs[k].data()
                             : static_cast<const int32_t*>(h->output_data(k));
    ASSERT_EQ(h->output_shape(k), (std::vector<int64_t>{(k + 1) * Size()}));
    for (int r = 0; r < Size(); ++r) {
      for (int i = 0; i <= k; ++i) {
        ASSERT_EQ(out[r * (k + 1) + i], r * 100 + k)
            << "member " << k << " from rank " << r;
      }
    }
  }
}

TEST(Collectives, GroupedReducescatterEveryDtypeAndOp) {
  // Rows per member: 0, 1, odd, and more than every rank gets one of; the
  // last member is too large to fuse under the tests' 4 KiB buffer.
  const std::vector<std::pair<int64_t, int64_t>> shapes = {
      {0, 2}, {1, 3}, {7, 1}, {int64_t{3} * Size() + 1, 2}, {Size() * 2, 300}};
  for (DataType dtype : AllDataTypes()) {
    for (ReduceOp op : AllReduceOps()) {
      if (dtype == DataType::kBool && op == ReduceOp::kAverage) continue;
      std::vector<Buffer> inputs;
      std::vector<Tensor> tensors;
      std::vector<std::string> names;
      for (size_t k = 0; k < shapes.size(); ++k) {
        const auto [rows, width] = shapes[k];
        inputs.emplace_back(dtype, rows * width);
        for (int64_t i = 0; i < rows * width; ++i) {
          inputs.back().Set(i, InputValue(dtype, op, Rank(), i, 20 + k));
        }
        names.push_back(
            absl::StrCat("grs.", Describe(dtype, op, rows, false), ".", k));
      }
      for (size_t k = 0; k < shapes.size(); ++k) {
        Tensor t = inputs[k].tensor();
        t.shape = {shapes[k].first, shapes[k].second};
        tensors.push_back(t);
      }
      StatusOr<Handle> h = GroupedReducescatterAsync(names, tensors, op);
      ASSERT_TRUE(h.ok()) << h.status();
      ASSERT_TRUE(h->Wait().ok()) << names[0] << ": " << h->Wait();
      for (size_t k = 0; k < shapes.size(); ++k) {
        const auto [rows, width] = shapes[k];
        const int64_t mine = rows / Size() + (Rank() < rows % Size() ? 1 : 0);
        int64_t first = 0;
        for (int r = 0; r < Rank(); ++r) {
          first += rows / Size() + (r < rows % Size() ? 1 : 0);
        }
        ASSERT_EQ(h->output_shape(k), (std::vector<int64_t>{mine, width}))
            << names[k];
        Buffer out(dtype, mine * width);
        std::memcpy(out.data(), h->output_data(k),
                    mine * width * DataTypeSize(dtype));
        for (int64_t i = 0; i < mine * width; ++i) {
          std::vector<double> values;
          for (int r = 0; r < Size(); ++r) {
            values.push_back(
                InputValue(dtype, op, r, first * width + i, 20 + k));
          }
          Buffer expected(dtype, 1);
          expected.Set(0, ReferenceReduce(dtype, op, values, Size()));
          ASSERT_EQ(out.Get(i), expected.Get(0))
              << names[k] << " element " << i;
        }
      }
    }
  }
}

// Submits `names` (a grouped allgather, or reducescatter when `scatter`)
// and expects FailedPrecondition whose message contains every `needle`.
void ExpectGroupFails(const std::vector<std::string>& names, bool scatter,
                      const std::vector<std::string>& needles) {
  std::vector<std::vector<float>> data(names.size(),
                                       std::vector<float>(Size(), 1.0f));
  std::vector<Tensor> tensors;
  for (auto& d : data) {
    tensors.push_back(
        Tensor{d.data(), DataType::kFloat32, {static_cast<int64_t>(d.size())}});
  }
  StatusOr<Handle> h = scatter ? GroupedReducescatterAsync(names, tensors)
                               : GroupedAllgatherAsync(names, tensors);
  ASSERT_TRUE(h.ok()) << h.status();
  const Status status = h->Wait();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  for (const std::string& needle : needles) {
    EXPECT_NE(status.message().find(needle), std::string::npos)
        << "'" << needle << "' not in: " << status;
  }
}

TEST(Collectives, GroupedMembershipMismatchFailsOnEveryRank) {
  if (Size() < 2) GTEST_SKIP() << "needs two ranks to disagree";
  for (bool scatter : {false, true}) {
    const std::string p = scatter ? "gm.rs." : "gm.ag.";
    // Rank 1 puts 'a' with 'c'; every other rank with 'b'.
    if (Rank() == 1) {
      ExpectGroupFails({p + "a", p + "c"}, scatter,
                       {"group mismatch", "'" + p + "b'", "'" + p + "c'"});
    } else {
      ExpectGroupFails({p + "b", p + "a"}, scatter,
                       {"group mismatch", "'" + p + "b'", "'" + p + "c'"});
    }
    // Rank 0 submits 'x' alone; the others group it with 'y'.
    if (Rank() == 0) {
      ExpectGroupFails({p + "x"}, scatter, {"not grouped"});
    } else {
      ExpectGroupFails({p + "x", p + "y"}, scatter, {"not grouped"});
    }
    // One member's shape differs on rank 1: the whole group fails.
    std::vector<float> ok(2, 1.0f);
    std::vector<float> odd(2 * 3, 1.0f);
    std::vector<Tensor> tensors = {
        Tensor{ok.data(), DataType::kFloat32, {2}},
        Rank() == 1 ? Tensor{odd.data(), DataType::kFloat32, {2, 3}}
                    : Tensor{ok.data(), DataType::kFloat32, {2}}};
    const std::vector<std::string> names = {p + "s.0", p + "s.1"};
    StatusOr<Handle> h = scatter ? GroupedReducescatterAsync(names, tensors)
                                 : GroupedAllgatherAsync(names, tensors);
    ASSERT_TRUE(h.ok()) << h.status();
    EXPECT_EQ(h->Wait().code(), absl::StatusCode::kFailedPrecondition)
        << h->Wait();
  }
  // Nothing is poisoned: the same names work once the ranks agree.
  std::vector<float> value(1, static_cast<float>(Rank()));
  Tensor t{value.data(), DataType::kFloat32, {1}};
  StatusOr<Handle> h = GroupedAllgatherAsync({"gm.ag.a", "gm.ag.c"}, {t, t});
  ASSERT_TRUE(h.ok() && h->Wait().ok()) << h->Wait();
  EXPECT_EQ(h->output_shape(1), (std::vector<int64_t>{Size()}));
}

TEST(Collectives, BarrierAndManySmallTensors) {
  ASSERT_TRUE(Barrier().ok());
  // Hundreds of tiny tensors per step, like gradients of a deep network.
  for (int step = 0; step < 5; ++step) {
    std::vector<std::vector<double>> grads(300);
    std::vector<Handle> handles;
    std::vector<size_t> order(grads.size());
    std::iota(order.begin(), order.end(), 0);
    std::mt19937_64 rng = RankRng(100 + step);
    std::shuffle(order.begin(), order.end(), rng);
    for (size_t k : order) {
      grads[k].assign(k % 17 + 1, Rank() + 1.0 + k);
      Tensor t{grads[k].data(),
               DataType::kFloat64,
               {static_cast<int64_t>(grads[k].size())}};
      StatusOr<Handle> h = AllreduceAsync(absl::StrCat("grad.", k), t, t);
      ASSERT_TRUE(h.ok()) << h.status();
      handles.push_back(*h);
    }
    for (Handle& h : handles) ASSERT_TRUE(h.Wait().ok());
    for (size_t k = 0; k < grads.size(); ++k) {
      const double expected = (Size() + 1) / 2.0 + k;  // average of rank+1+k
      for (double v : grads[k]) ASSERT_DOUBLE_EQ(v, expected) << "grad " << k;
    }
  }
  ASSERT_TRUE(Barrier().ok());
}

TEST(Collectives, JoinContributesZerosAndReturnsLastRank) {
  // Rank r runs r + 2 allreduces, then joins; averages divide by the ranks
  // still contributing.
  const int steps = Rank() + 2;
  for (int step = 0; step < steps; ++step) {
    std::vector<float> x(6, static_cast<float>(Rank() + 1));
    Tensor t{x.data(), DataType::kFloat32, {6}};
    AllreduceOptions options;
    options.op = ReduceOp::kAverage;
    ASSERT_TRUE(
        Allreduce(absl::StrCat("join.step.", step), t, t, options).ok());
    // Ranks with more than `step + 1` steps are still contributing.
    float sum = 0;
    int contributors = 0;
    for (int r = 0; r < Size(); ++r) {
      if (r + 2 > step) {
        sum += r + 1;
        ++contributors;
      }
    }
    EXPECT_FLOAT_EQ(x[0], sum / contributors) << "step " << step;
  }
  StatusOr<int> last = Join();
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_EQ(*last, Size() - 1);
}

// Every rank must see the same FailedPrecondition, quickly, naming the
// tensor and both ranks; the runtime keeps working afterwards.
void ExpectMismatch(const std::string& name, const StatusOr<Handle>& handle,
                    const std::string& fragment) {
  ASSERT_TRUE(handle.ok()) << handle.status();
  const auto start = std::chrono::steady_clock::now();
  const Status status = handle->Wait();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  EXPECT_LT(seconds, 1.0) << name;
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_NE(status.message().find(name), std::string::npos) << status;
  EXPECT_NE(status.message().find(fragment), std::string::npos) << status;
  EXPECT_NE(status.message().find("rank 0"), std::string::npos) << status;
}

TEST(Collectives, MismatchesFailOnEveryRank) {
  if (Size() < 2) GTEST_SKIP() << "needs two ranks to disagree";
  const bool odd = Rank() == Size() - 1;
  std::vector<float> f(8, 1.0f);
  std::vector<int32_t> i32(8, 1);
  {
    Tensor t{f.data(), DataType::kFloat32, {odd ? 7 : 8}};
    ExpectMismatch("mm.shape", AllreduceAsync("mm.shape", t, t), "shape");
  }
  {
    Tensor t = odd ? Tensor{i32.data(), DataType::kInt32, {8}}
                   : Tensor{f.data(), DataType::kFloat32, {8}};
    ExpectMismatch("mm.dtype", AllreduceAsync("mm.dtype", t, t), "dtype");
  }
  {
    Tensor t{f.data(), DataType::kFloat32, {8}};
    AllreduceOptions options;
    options.op = odd ? ReduceOp::kMax : ReduceOp::kSum;
    ExpectMismatch("mm.op", AllreduceAsync("mm.op", t, t, options),
                   "reduce op");
  }
  {
    Tensor t{f.data(), DataType::kFloat32, {8}};
    AllreduceOptions options;
    options.prescale_factor = odd ? 2.0 : 1.0;
    ExpectMismatch("mm.scale", AllreduceAsync("mm.scale", t, t, options),
                   "prescale");
  }
  {
    Tensor t{f.data(), DataType::kFloat32, {8}};
    ExpectMismatch("mm.root", BroadcastAsync("mm.root", t, odd ? 1 : 0),
                   "root");
  }
  {
    Tensor t{f.data(), DataType::kFloat32, {2, odd ? 3 : 4}};
    ExpectMismatch("mm.gather", AllgatherAsync("mm.gather", t), "shape");
  }
  {
    Tensor t{f.data(), DataType::kFloat32, {8}};
    ExpectMismatch(
        "mm.kind",
        odd ? BroadcastAsync("mm.kind", t, 0) : AllreduceAsync("mm.kind", t, t),
        "submitted as");
  }
  // The runtime still works, with the same names.
  std::vector<float> ok(8, 1.0f);
  Tensor t{ok.data(), DataType::kFloat32, {8}};
  AllreduceOptions sum;
  sum.op = ReduceOp::kSum;
  ASSERT_TRUE(Allreduce("mm.shape", t, t, sum).ok());
  EXPECT_EQ(ok[0], Size());
}

TEST(Collectives, LocalArgumentErrors) {
  std::vector<float> f(4, 1.0f);
  Tensor t{f.data(), DataType::kFloat32, {4}};
  // A name already pending on this rank is refused. With peers, rank 0
  // submits 'dup' twice before they submit it at all (they wait in a
  // barrier that rank 0 enters only afterwards), so its first 'dup' cannot
  // have run when the second comes. (Once an operation is taken for
  // execution its name is free again: without that ordering the peers could
  // make the first run, and a second accepted, in between.) Alone, the
  // first may complete at once, so the pair is tried until the second meets
  // the first still pending.
  bool refused = false;
  if (Size() > 1) {
    if (Rank() == 0) {
      StatusOr<Handle> first = AllreduceAsync("dup", t, t);
      ASSERT_TRUE(first.ok());
      StatusOr<Handle> second = AllreduceAsync("dup", t, t);
      refused = !second.ok();
      ASSERT_FALSE(second.ok()) << "a second 'dup' was accepted at np "
                                << Size() << " while the first was pending";
      EXPECT_EQ(second.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_NE(second.status().message().find("'dup'"), std::string::npos);
      ASSERT_TRUE(Barrier().ok());
      EXPECT_TRUE(first->Wait().ok());
    } else {
      refused = true;  // checked on rank 0
      ASSERT_TRUE(Barrier().ok());
      StatusOr<Handle> only = AllreduceAsync("dup", t, t);
      ASSERT_TRUE(only.ok());
      EXPECT_TRUE(only->Wait().ok());
    }
  }
  for (int attempt = 0; Size() == 1 && attempt < 100 && !refused; ++attempt) {
    StatusOr<Handle> first = AllreduceAsync("dup", t, t);
    ASSERT_TRUE(first.ok());
    StatusOr<Handle> second = AllreduceAsync("dup", t, t);
    if (!second.ok()) {
      refused = true;
      EXPECT_EQ(second.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_NE(second.status().message().find("'dup'"), std::string::npos);
    } else {
      EXPECT_TRUE(second->Wait().ok());
    }
    EXPECT_TRUE(first->Wait().ok());
  }
  EXPECT_TRUE(refused) << "a pending name was never refused";

  std::vector<uint8_t> b(4, 1);
  Tensor bt{b.data(), DataType::kBool, {4}};
  AllreduceOptions average;
  average.op = ReduceOp::kAverage;
  EXPECT_EQ(AllreduceAsync("bool.avg", bt, bt, average).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(BroadcastAsync("bad.root", t, Size()).status().code(),
            absl::StatusCode::kInvalidArgument);
  Tensor shorter{f.data(), DataType::kFloat32, {3}};
  EXPECT_EQ(AllreduceAsync("bad.out", t, shorter).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(AlltoallAsync("bad.splits", t, {5}).status().code(),
            absl::StatusCode::kInvalidArgument);
  Tensor null_data{nullptr, DataType::kFloat32, {4}};
  EXPECT_EQ(AllreduceAsync("null", null_data, null_data).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(Collectives, StalledTensorFailsEverywhere) {
  if (std::getenv("KOLO_STALL_SHUTDOWN_TIME_SECONDS") == nullptr ||
      Size() < 2) {
    GTEST_SKIP() << "runs in the ctest variant with short stall times";
  }
  std::vector<float> f(4, 1.0f);
  Tensor t{f.data(), DataType::kFloat32, {4}};
  if (Rank() != 0) {  // rank 0 never submits it
    StatusOr<Handle> h = AllreduceAsync("stalled", t, t);
    ASSERT_TRUE(h.ok());
    const Status status = h->Wait();
    EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
    EXPECT_NE(status.message().find("not by rank 0"), std::string::npos)
        << status;
  } else {
    // Give the others' operation time to expire before rank 0 moves on.
    std::this_thread::sleep_for(std::chrono::seconds(3));
  }
  ASSERT_TRUE(Barrier().ok());
}

class KoloEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    const Status status = Init();
    ASSERT_TRUE(status.ok()) << status;
    const uint64_t seed = SharedSeed();  // collective: every rank calls it
    if (Rank() == 0) {
      std::printf(
          "kolo collectives test: %d ranks, backend %s, seed %llu "
          "(KOLO_TEST_SEED=%llu reproduces the submission orders)\n",
          Size(), BackendName().c_str(), static_cast<unsigned long long>(seed),
          static_cast<unsigned long long>(seed));
    }
    const char* wanted = std::getenv("KOLO_CPU_OPERATIONS");
    if (wanted != nullptr && std::string(wanted) != "auto") {
      EXPECT_EQ(BackendName(), wanted) << "the requested data plane runs";
    }
  }
  void TearDown() override {
    ASSERT_TRUE(Shutdown().ok());
    // After shutdown every operation is cancelled.
    float x = 0;
    Tensor t{&x, DataType::kFloat32, {1}};
    EXPECT_EQ(AllreduceAsync("after", t, t).status().code(),
              absl::StatusCode::kCancelled);
  }
};

}  // namespace
}  // namespace kolo::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::AddGlobalTestEnvironment(new kolo::testing::KoloEnvironment);
  return RUN_ALL_TESTS();
}
