// Tests of the negotiation wire codec.
#include "runtime/wire/codec.h"

#include <random>
#include <string>

#include <gtest/gtest.h>

namespace kolo {
namespace {

const WireLimits kLimits{4, 64};

Request SampleRequest(int rank) {
  Request r;
  r.rank = rank;
  r.op = OpType::kAlltoall;
  r.name = "layer1.weight";
  r.dtype = DataType::kBfloat16;
  r.shape = {8, 3, 2};
  r.reduce_op = ReduceOp::kMax;
  r.root = 2;
  r.prescale = 0.25;
  r.postscale = 4.0;
  r.splits = {1, 2, 3, 2};
  r.group_key = "g";
  r.group_size = 3;
  r.priority = -7;
  return r;
}

TEST(Codec, RequestListRoundTrips) {
  RequestList list;
  list.rank = 3;
  list.applied_seq = 99;
  list.requests = {SampleRequest(3)};
  list.cache_slots = {0, 5, 63};
  list.shutdown = true;
  StatusOr<RequestList> decoded =
      DecodeRequestList(EncodeRequestList(list), kLimits);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->rank, 3);
  EXPECT_EQ(decoded->applied_seq, 99u);
  ASSERT_EQ(decoded->requests.size(), 1u);
  EXPECT_TRUE(decoded->requests[0].SameAs(list.requests[0]));
  EXPECT_EQ(decoded->requests[0].rank, 3);
  EXPECT_EQ(decoded->requests[0].priority, -7);
  EXPECT_EQ(decoded->cache_slots, list.cache_slots);
  EXPECT_TRUE(decoded->shutdown);
  EXPECT_FALSE(decoded->goodbye);
}

TEST(Codec, ResponseListRoundTrips) {
  ResponseList list;
  list.seq = 7;
  Response r;
  r.op = OpType::kAllgather;
  ResponseTensor full;
  full.request = SampleRequest(0);
  full.request.rank = -1;
  full.cache_slot = 2;
  full.first_dims = {1, 0, 4, 2};
  ResponseTensor cached;
  cached.cached = true;
  cached.cache_slot = 9;
  r.tensors = {full, cached};
  r.dtype = DataType::kInt64;
  r.contributors = 3;
  r.splits = std::vector<int64_t>(16, 1);
  r.error_code = 9;
  r.error_message = "boom";
  list.responses = {r};
  list.shutdown = true;
  list.shutdown_rank = 2;
  StatusOr<ResponseList> decoded =
      DecodeResponseList(EncodeResponseList(list), kLimits);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  ASSERT_EQ(decoded->responses.size(), 1u);
  const Response& d = decoded->responses[0];
  EXPECT_EQ(d.op, OpType::kAllgather);
  ASSERT_EQ(d.tensors.size(), 2u);
  EXPECT_TRUE(d.tensors[0].request.SameAs(full.request));
  EXPECT_EQ(d.tensors[0].first_dims, full.first_dims);
  EXPECT_EQ(d.tensors[0].cache_slot, 2);
  EXPECT_TRUE(d.tensors[1].cached);
  EXPECT_EQ(d.tensors[1].cache_slot, 9);
  EXPECT_EQ(d.splits, r.splits);
  EXPECT_EQ(d.error_code, 9);
  EXPECT_EQ(d.error_message, "boom");
  EXPECT_EQ(decoded->shutdown_rank, 2);
}

TEST(Codec, NcclUniqueIdRoundTripsOnlyAt128Bytes) {
  ResponseList list;
  list.seq = 3;
  // Every byte value, zeros included: the id is binary.
  for (int i = 0; i < 128; ++i) {
    list.nccl_unique_id.push_back(static_cast<char>(i * 2));
  }
  StatusOr<ResponseList> decoded =
      DecodeResponseList(EncodeResponseList(list), kLimits);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->nccl_unique_id, list.nccl_unique_id);

  list.nccl_unique_id.clear();
  decoded = DecodeResponseList(EncodeResponseList(list), kLimits);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_TRUE(decoded->nccl_unique_id.empty());

  for (size_t bytes : {1, 127, 129, 256}) {
    list.nccl_unique_id.assign(bytes, 'x');
    decoded = DecodeResponseList(EncodeResponseList(list), kLimits);
    ASSERT_FALSE(decoded.ok()) << bytes << " bytes";
    EXPECT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(decoded.status().message().find("NCCL unique id"),
              std::string::npos)
        << decoded.status();
  }
}

TEST(Codec, DevicesRoundTripAndIndexesMayDifferAcrossRanks) {
  RequestList list;
  list.rank = 1;
  Request cuda = SampleRequest(1);
  cuda.device = {Device::kCuda, 3};
  list.requests = {cuda};
  StatusOr<RequestList> decoded =
      DecodeRequestList(EncodeRequestList(list), kLimits);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->requests[0].device, cuda.device);
  // Another rank's request for the same tensor on its own GPU is the same
  // request; a CPU one is not.
  Request other_gpu = cuda;
  other_gpu.device.index = 0;
  EXPECT_TRUE(cuda.SameAs(other_gpu));
  Request cpu = cuda;
  cpu.device = {};
  EXPECT_FALSE(cuda.SameAs(cpu));

  Request bad_kind = cuda;
  bad_kind.device.kind = static_cast<Device::Kind>(2);
  list.requests = {bad_kind};
  EXPECT_FALSE(DecodeRequestList(EncodeRequestList(list), kLimits).ok());
}

TEST(Codec, RejectsOutOfRangeFields) {
  RequestList list;
  list.rank = 1;
  Request bad_rank = SampleRequest(1);
  bad_rank.root = 4;  // world size is 4
  list.requests = {bad_rank};
  EXPECT_FALSE(DecodeRequestList(EncodeRequestList(list), kLimits).ok());

  list.requests = {SampleRequest(2)};  // differs from the list's rank
  EXPECT_FALSE(DecodeRequestList(EncodeRequestList(list), kLimits).ok());

  list.requests = {};
  list.cache_slots = {64};  // capacity is 64
  EXPECT_FALSE(DecodeRequestList(EncodeRequestList(list), kLimits).ok());

  Request negative = SampleRequest(1);
  negative.shape = {-3};
  list.cache_slots = {};
  list.requests = {negative};
  const StatusOr<RequestList> decoded =
      DecodeRequestList(EncodeRequestList(list), kLimits);
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(decoded.status().message().find("negative dimension"),
            std::string::npos);
}

TEST(Codec, SurvivesRandomAndTruncatedBytes) {
  RequestList list;
  list.rank = 2;
  list.requests = {SampleRequest(2), SampleRequest(2)};
  const std::string good = EncodeRequestList(list);
  std::mt19937 rng(42);
  for (int trial = 0; trial < 20000; ++trial) {
    std::string bytes = good.substr(0, rng() % (good.size() + 1));
    for (int flips = rng() % 4; flips > 0 && !bytes.empty(); --flips) {
      bytes[rng() % bytes.size()] = static_cast<char>(rng());
    }
    // Must not crash; any result is acceptable as long as it is validated.
    StatusOr<RequestList> r = DecodeRequestList(bytes, kLimits);
    if (r.ok()) {
      for (const Request& q : r->requests) {
        EXPECT_TRUE(q.rank >= 0 && q.rank < 4);
        for (int64_t d : q.shape) EXPECT_GE(d, 0);
      }
    }
    (void)DecodeResponseList(bytes, kLimits);
  }
}

}  // namespace
}  // namespace kolo
