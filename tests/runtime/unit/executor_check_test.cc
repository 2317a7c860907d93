// Tests of Executor::Check: a response from the coordinator is checked
// against this rank's own submission before anything is copied, so a corrupt
// response can never make a rank read or write out of bounds.
#include <gtest/gtest.h>

#include <limits>
#include <memory>
#include <vector>

#include "runtime/core/executor.h"

namespace kolo {
namespace {

constexpr int kRank = 1;
constexpr int kSize = 3;

Request MakeRequest(OpType op, std::vector<int64_t> shape,
                    DataType dtype = DataType::kFloat32) {
  Request r;
  r.op = op;
  r.name = "t";
  r.dtype = dtype;
  r.shape = std::move(shape);
  return r;
}

struct Fixture {
  std::unique_ptr<Executor> executor;
  std::vector<Entry> entries;
  std::vector<bool> present;
  Response response;

  Status Check() { return executor->Check(response, entries, present); }
};

Fixture Make(OpType op, std::vector<Request> own, int64_t fusion = 1024) {
  Fixture f;
  StatusOr<std::unique_ptr<Executor>> executor =
      Executor::Create(nullptr, kRank, kSize, fusion);
  EXPECT_TRUE(executor.ok());
  f.executor = *std::move(executor);
  f.response.op = op;
  f.response.dtype = own.front().dtype;
  for (Request& request : own) {
    ResponseTensor tensor;
    tensor.request = request;
    tensor.request.rank = -1;
    f.response.tensors.push_back(tensor);
    Entry entry;
    entry.request = request;
    f.entries.push_back(std::move(entry));
    f.present.push_back(true);
  }
  return f;
}

void ExpectCorrupt(Fixture& f, const std::string& what) {
  const Status s = f.Check();
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal) << what;
  EXPECT_NE(s.message().find("does not match rank 1's own submission"),
            std::string::npos)
      << s;
}

TEST(ExecutorCheck, MatchingResponsesPass) {
  Fixture a = Make(OpType::kAllreduce, {MakeRequest(OpType::kAllreduce, {4, 3}),
                                        MakeRequest(OpType::kAllreduce, {5})});
  EXPECT_TRUE(a.Check().ok()) << a.Check();
  Fixture g =
      Make(OpType::kAllgather, {MakeRequest(OpType::kAllgather, {2, 3})});
  g.response.tensors[0].first_dims = {4, 2, 0};
  EXPECT_TRUE(g.Check().ok()) << g.Check();
  Request a2a = MakeRequest(OpType::kAlltoall, {3, 2});
  a2a.splits = {1, 1, 1};
  Fixture t = Make(OpType::kAlltoall, {a2a});
  t.response.tensors[0].request.shape = {6, 2};  // another rank's rows
  t.response.splits = {2, 2, 2, 1, 1, 1, 0, 0, 0};
  EXPECT_TRUE(t.Check().ok()) << t.Check();
}

TEST(ExecutorCheck, WrongDtypeShapeOrOperationIsCorrupt) {
  Fixture dtype =
      Make(OpType::kAllreduce, {MakeRequest(OpType::kAllreduce, {4})});
  dtype.response.dtype = DataType::kFloat64;
  dtype.response.tensors[0].request.dtype = DataType::kFloat64;
  ExpectCorrupt(dtype, "dtype");
  Fixture shape =
      Make(OpType::kAllreduce, {MakeRequest(OpType::kAllreduce, {4})});
  shape.response.tensors[0].request.shape = {1 << 20};
  ExpectCorrupt(shape, "shape");
  Fixture op = Make(OpType::kAllreduce, {MakeRequest(OpType::kAllreduce, {4})});
  op.response.op = OpType::kBroadcast;
  ExpectCorrupt(op, "operation");
  Fixture none =
      Make(OpType::kAllreduce, {MakeRequest(OpType::kAllreduce, {4})});
  none.response.tensors.clear();
  ExpectCorrupt(none, "no tensors");
}

TEST(ExecutorCheck, FusedBatchLargerThanTheFusionBufferIsCorrupt) {
  // 2 x 200 float32 = 1600 bytes > 1024.
  Fixture f =
      Make(OpType::kAllreduce, {MakeRequest(OpType::kAllreduce, {200}),
                                MakeRequest(OpType::kAllreduce, {200})});
  ExpectCorrupt(f, "fusion");
}

TEST(ExecutorCheck, FusedAllgatherAndReducescatterMustFitTheBuffer) {
  // Allgather: this rank's 2 + 2 rows of 4 floats in, 6 + 6 rows out:
  // (16 + 48) x 4 bytes = 256 bytes.
  auto gather = [](int64_t fusion) {
    Fixture f = Make(OpType::kAllgather,
                     {MakeRequest(OpType::kAllgather, {2, 4}),
                      MakeRequest(OpType::kAllgather, {2, 4})},
                     fusion);
    for (ResponseTensor& t : f.response.tensors) t.first_dims = {3, 2, 1};
    return f;
  };
  Fixture fits = gather(256);
  EXPECT_TRUE(fits.Check().ok()) << fits.Check();
  Fixture too_big = gather(255);
  ExpectCorrupt(too_big, "fused allgather");
  // Reducescatter: 2 x 30 floats in, this rank's 2 x 10 out: 320 bytes.
  auto scatter = [](int64_t fusion) {
    return Make(OpType::kReducescatter,
                {MakeRequest(OpType::kReducescatter, {30}),
                 MakeRequest(OpType::kReducescatter, {30})},
                fusion);
  };
  Fixture rs_fits = scatter(320);
  EXPECT_TRUE(rs_fits.Check().ok()) << rs_fits.Check();
  Fixture rs_too_big = scatter(319);
  ExpectCorrupt(rs_too_big, "fused reducescatter");
  // Other operations never come fused.
  Fixture broadcast =
      Make(OpType::kBroadcast, {MakeRequest(OpType::kBroadcast, {2}),
                                MakeRequest(OpType::kBroadcast, {2})});
  ExpectCorrupt(broadcast, "fused broadcast");
}

TEST(ExecutorCheck, OverflowingSizesAreCorrupt) {
  const int64_t huge = std::numeric_limits<int64_t>::max() / 2;
  Fixture f = Make(OpType::kAllreduce, {MakeRequest(OpType::kAllreduce, {4})});
  f.present[0] = false;  // a joined rank would allocate zeros for it
  f.response.tensors[0].request.shape = {huge, huge};
  ExpectCorrupt(f, "overflow");
  Fixture g =
      Make(OpType::kAllgather, {MakeRequest(OpType::kAllgather, {2, 3})});
  g.response.tensors[0].first_dims = {huge, 2, huge};
  ExpectCorrupt(g, "allgather rows overflow");
}

TEST(ExecutorCheck, AllgatherRowsMustMatchThisRank) {
  Fixture few =
      Make(OpType::kAllgather, {MakeRequest(OpType::kAllgather, {2, 3})});
  few.response.tensors[0].first_dims = {4, 2};  // one rank short
  ExpectCorrupt(few, "first dims count");
  Fixture mine =
      Make(OpType::kAllgather, {MakeRequest(OpType::kAllgather, {2, 3})});
  mine.response.tensors[0].first_dims = {4, 7, 0};  // not this rank's 2
  ExpectCorrupt(mine, "own rows");
  Fixture row =
      Make(OpType::kAllgather, {MakeRequest(OpType::kAllgather, {2, 3})});
  row.response.tensors[0].first_dims = {4, 2, 0};
  row.response.tensors[0].request.shape = {2, 4};
  ExpectCorrupt(row, "row shape");
}

TEST(ExecutorCheck, AlltoallSplitsMustMatchThisRank) {
  Request a2a = MakeRequest(OpType::kAlltoall, {3, 2});
  a2a.splits = {1, 1, 1};
  Fixture wrong = Make(OpType::kAlltoall, {a2a});
  wrong.response.splits = {1, 1, 1, 3, 0, 0, 1, 1, 1};  // row 1 differs
  ExpectCorrupt(wrong, "splits");
  Fixture size = Make(OpType::kAlltoall, {a2a});
  size.response.splits = {1, 1, 1};
  ExpectCorrupt(size, "split matrix size");
}

}  // namespace
}  // namespace kolo
