// Tests of the fusion planner.
#include "runtime/core/fusion_planner.h"

#include <gtest/gtest.h>

namespace kolo {
namespace {

Response Single(const std::string& name, int64_t elements,
                DataType dtype = DataType::kFloat32,
                OpType op = OpType::kAllreduce) {
  Response r;
  r.op = op;
  r.dtype = dtype;
  r.contributors = 2;
  ResponseTensor t;
  t.request.name = name;
  t.request.dtype = dtype;
  t.request.shape = {elements};
  r.tensors.push_back(t);
  return r;
}

std::vector<std::vector<std::string>> Names(const std::vector<Response>& plan) {
  std::vector<std::vector<std::string>> names;
  for (const Response& r : plan) {
    names.emplace_back();
    for (const ResponseTensor& t : r.tensors) {
      names.back().push_back(t.request.name);
    }
  }
  return names;
}

TEST(FusionPlanner, PacksCompatibleTensorsUpToTheThreshold) {
  // 100 floats = 400 bytes each; a 1000-byte buffer holds two.
  std::vector<Response> singles = {Single("a", 100), Single("b", 100),
                                   Single("c", 100), Single("d", 100),
                                   Single("e", 100)};
  const auto plan = PlanFusion(singles, 1000);
  EXPECT_EQ(Names(plan), (std::vector<std::vector<std::string>>{
                             {"a", "b"}, {"c", "d"}, {"e"}}));
}

TEST(FusionPlanner, KeepsDtypesOpsAndScalesApart) {
  Response scaled = Single("s", 1);
  scaled.postscale = 2.0;
  Response maxed = Single("m", 1);
  maxed.reduce_op = ReduceOp::kMax;
  std::vector<Response> singles = {Single("a", 1), Single("i", 1, DataType::kInt32),
                                   scaled, maxed, Single("b", 1),
                                   Single("g", 1, DataType::kFloat32,
                                          OpType::kAllgather)};
  const auto plan = PlanFusion(singles, 1 << 20);
  EXPECT_EQ(Names(plan), (std::vector<std::vector<std::string>>{
                             {"a", "b"}, {"i"}, {"s"}, {"m"}, {"g"}}));
}

TEST(FusionPlanner, LargeTensorsAndDisabledFusionRunAlone) {
  std::vector<Response> singles = {Single("small", 10), Single("huge", 1000),
                                   Single("small2", 10)};
  EXPECT_EQ(Names(PlanFusion(singles, 1000)),
            (std::vector<std::vector<std::string>>{{"small", "small2"},
                                                   {"huge"}}));
  EXPECT_EQ(Names(PlanFusion(singles, 0)),
            (std::vector<std::vector<std::string>>{{"small"}, {"huge"},
                                                   {"small2"}}));
}

TEST(FusionPlanner, NeverMixesCpuAndCudaTensors) {
  auto on = [](Response r, Device::Kind kind, int index) {
    r.tensors.front().request.device = {kind, index};
    return r;
  };
  std::vector<Response> singles = {
      on(Single("c1", 1), Device::kCpu, 0),
      on(Single("g1", 1), Device::kCuda, 0),
      on(Single("c2", 1), Device::kCpu, 0),
      on(Single("g2", 1), Device::kCuda, 0),
      // The reference rank's index does not matter: every rank uses its own
      // GPU, so CUDA tensors fuse whatever index the request names.
      on(Single("g3", 1), Device::kCuda, 1)};
  EXPECT_EQ(Names(PlanFusion(singles, 1 << 20)),
            (std::vector<std::vector<std::string>>{{"c1", "c2"},
                                                   {"g1", "g2", "g3"}}));
}

TEST(FusionPlanner, GroupedAllgathersFuseWithinTheirGroupOnly) {
  auto member = [](const std::string& name, const std::string& group,
                   int64_t rows_per_rank) {
    Response r = Single(name, 0, DataType::kFloat32, OpType::kAllgather);
    r.tensors[0].request.op = OpType::kAllgather;
    r.tensors[0].request.shape = {rows_per_rank, 10};
    r.tensors[0].request.group_key = group;
    r.tensors[0].request.group_size = 3;
    r.tensors[0].first_dims = {rows_per_rank, rows_per_rank};
    return r;
  };
  // Gathered bytes: 2 ranks x rows x 40; a batch takes twice that.
  const auto plan = PlanFusion(
      {member("a", "g1", 1), member("x", "g2", 1), member("b", "g1", 1),
       member("c", "g1", 20), member("y", "g2", 1),
       Single("lone", 4, DataType::kFloat32, OpType::kAllgather)},
      1000);
  EXPECT_EQ(Names(plan), (std::vector<std::vector<std::string>>{
                             {"a", "b"}, {"x", "y"}, {"c"}, {"lone"}}));
}

TEST(FusionPlanner, FailedResponsesAreNotFused) {
  Response failed = Single("f", 1);
  failed.error_code = 9;
  std::vector<Response> singles = {Single("a", 1), failed, Single("b", 1)};
  EXPECT_EQ(Names(PlanFusion(singles, 1 << 20)),
            (std::vector<std::vector<std::string>>{{"a", "b"}, {"f"}}));
}

}  // namespace
}  // namespace kolo
