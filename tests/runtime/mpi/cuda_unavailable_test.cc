// CUDA tensors where they cannot run: on a machine without a GPU (builds
// with NCCL) or in a build without NCCL, submitting one fails at once with a
// message that says why, and the runtime keeps working for CPU tensors.
// One process (MPI singleton); a machine with a GPU skips the GPU-less case.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "kolo/kolo.h"

#ifdef KOLO_TEST_HAVE_CUDART
#include <cuda_runtime_api.h>
#endif

namespace kolo {
namespace {

bool GpuVisible() {
#ifdef KOLO_TEST_HAVE_CUDART
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
#else
  return false;
#endif
}

// A CUDA tensor description; the memory is never touched.
Tensor CudaTensor(std::vector<float>& host, int index = 0) {
  Tensor t;
  t.data = host.data();
  t.dtype = DataType::kFloat32;
  t.shape = {static_cast<int64_t>(host.size())};
  t.device = {Device::kCuda, index};
  return t;
}

Tensor CpuTensor(std::vector<float>& host) {
  Tensor t;
  t.data = host.data();
  t.shape = {static_cast<int64_t>(host.size())};
  return t;
}

class CudaUnavailable : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { ASSERT_TRUE(Init().ok()); }
  static void TearDownTestSuite() { Shutdown().IgnoreError(); }
};

TEST_F(CudaUnavailable, SubmissionFailsWithAClearMessage) {
  if (NcclBuilt() && GpuVisible()) GTEST_SKIP() << "a GPU is visible";
  std::vector<float> data(8, 1.0f);
  const Tensor cuda = CudaTensor(data);
  std::vector<Status> failures = {
      AllreduceAsync("cuda.allreduce", cuda, cuda).status(),
      AllgatherAsync("cuda.allgather", cuda).status(),
      BroadcastAsync("cuda.broadcast", cuda, 0).status(),
      AlltoallAsync("cuda.alltoall", cuda).status(),
      ReducescatterAsync("cuda.reducescatter", cuda).status()};
  const char* names[] = {"cuda.allreduce", "cuda.allgather", "cuda.broadcast",
                         "cuda.alltoall", "cuda.reducescatter"};
  for (size_t i = 0; i < failures.size(); ++i) {
    const Status& s = failures[i];
    ASSERT_FALSE(s.ok()) << names[i];
    const std::string message(s.message());
    EXPECT_NE(message.find(std::string("'") + names[i] + "'"),
              std::string::npos)
        << message;
    if (NcclBuilt()) {
      EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << message;
      EXPECT_NE(message.find("no CUDA device is visible"), std::string::npos)
          << message;
      EXPECT_NE(message.find("cuda:0"), std::string::npos) << message;
    } else {
      EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << message;
      EXPECT_NE(message.find("this kolo build has no NCCL backend"),
                std::string::npos)
          << message;
    }
  }
}

TEST_F(CudaUnavailable, InputAndOutputMustShareADevice) {
  std::vector<float> a(4, 1.0f);
  std::vector<float> b(4, 0.0f);
  const Status s =
      AllreduceAsync("mixed", CpuTensor(a), CudaTensor(b, 1)).status();
  if (!NcclBuilt()) {
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    return;
  }
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(),
            "allreduce 'mixed': output is on cuda:1 but input is on cpu; both "
            "must be on one device");
}

TEST_F(CudaUnavailable, InvalidDevicesAreRejected) {
  std::vector<float> data(4, 1.0f);
  Tensor bad_kind = CpuTensor(data);
  bad_kind.device.kind = static_cast<Device::Kind>(7);
  Status s = AllreduceAsync("bad.kind", bad_kind, bad_kind).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("invalid device kind 7"), std::string::npos) << s;
  if (NcclBuilt()) {
    const Tensor negative = CudaTensor(data, -1);
    s = AllreduceAsync("bad.index", negative, negative).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find("invalid CUDA device index -1"),
              std::string::npos)
        << s;
  }
}

TEST_F(CudaUnavailable, CpuTensorsStillWork) {
  std::vector<float> data(16, 2.0f);
  const Tensor t = CpuTensor(data);
  ASSERT_TRUE(Allreduce("cpu.after.cuda", t, t, {ReduceOp::kSum}).ok());
  for (size_t i = 0; i < data.size(); ++i) {
    EXPECT_EQ(data[i], 2.0f * Size()) << "index " << i;
  }
}

}  // namespace
}  // namespace kolo
