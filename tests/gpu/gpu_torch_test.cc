// GPU tests of the LibTorch adapter with CUDA tensors: DistributedOptimizer
// on CUDA parameters (plain, fp16 compression, bf16 compression) ends equal
// to one process training on the whole batch; broadcast_parameters and
// broadcast_optimizer_state with CUDA state; allgather's output on the
// input's GPU; metric_average of a CUDA tensor; collectives on a non-default
// current stream.
//
// Run under mpirun with one GPU per rank (rank r uses GPU local_rank % GPUs).
// Exits 77 (ctest: skipped), saying why on every rank, when kolo has no NCCL
// backend, LibTorch sees no GPU (Debian's LibTorch is CPU-only) or this host
// has more ranks than GPUs.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdio>
#include <string>
#include <vector>

#include "kolo/torch.h"
#include "test_util.h"

#if KOLO_TORCH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace kolo {
namespace torch {
namespace {

namespace nn = ::torch::nn;
namespace optim = ::torch::optim;
using testing::AllClose;
using testing::IdenticalAcrossRanks;

constexpr int kSkipExitCode = 77;

::torch::Device Gpu() {
  return ::torch::Device(::torch::kCUDA,
                         static_cast<c10::DeviceIndex>(
                             local_rank() %
                             static_cast<int>(::torch::cuda::device_count())));
}

struct MlpImpl : nn::Module {
  MlpImpl() {
    fc1 = register_module("fc1", nn::Linear(6, 32));
    fc2 = register_module("fc2", nn::Linear(32, 3));
  }
  at::Tensor forward(const at::Tensor& x) { return fc2(::torch::tanh(fc1(x))); }
  nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(Mlp);

Mlp MakeMlp(::torch::Device device) {
  ::torch::manual_seed(7);
  Mlp model;
  model->to(device);
  return model;
}

constexpr int64_t kLocalRows = 8;
constexpr int kSteps = 4;

std::pair<at::Tensor, at::Tensor> GlobalBatch(int step, int64_t rows) {
  ::torch::manual_seed(1000 + step);
  return {::torch::randn({rows, 6}), ::torch::randn({rows, 3})};
}

// Flattened parameters (on the CPU, float64) after kSteps of SGD with
// momentum: distributed over the ranks' shards on their GPUs, or in one
// process over the whole batch on the CPU.
at::Tensor Train(bool distributed, Compression compression) {
  const ::torch::Device device = distributed ? Gpu() : ::torch::kCPU;
  Mlp model = MakeMlp(device);
  auto sgd = std::make_shared<optim::SGD>(model->parameters(),
                                          optim::SGDOptions(0.05).momentum(0.9));
  DistributedOptimizerOptions options;
  options.compression = compression;
  std::unique_ptr<DistributedOptimizer> wrapped;
  if (distributed) {
    wrapped = std::make_unique<DistributedOptimizer>(
        sgd, model->named_parameters(), options);
  }
  for (int step = 0; step < kSteps; ++step) {
    auto [x, y] = GlobalBatch(step, size() * kLocalRows);
    if (distributed) {
      x = x.narrow(0, rank() * kLocalRows, kLocalRows);
      y = y.narrow(0, rank() * kLocalRows, kLocalRows);
      wrapped->zero_grad();
    } else {
      sgd->zero_grad();
    }
    ::torch::mse_loss(model(x.to(device)), y.to(device)).backward();
    if (distributed) {
      wrapped->step();
    } else {
      sgd->step();
    }
  }
  std::vector<at::Tensor> flat;
  for (const at::Tensor& p : model->parameters()) {
    EXPECT_EQ(p.device(), device);
    flat.push_back(p.detach().to(::torch::kCPU, ::torch::kDouble).flatten());
  }
  return ::torch::cat(flat);
}

TEST(GpuTorch, DistributedOptimizerOnCudaEqualsOneProcessOnTheWholeBatch) {
  const at::Tensor reference = Train(false, Compression::kNone);
  EXPECT_TRUE(AllClose(Train(true, Compression::kNone), reference, 1e-4, 1e-5));
  // 16-bit wire formats: the average is rounded once per step.
  EXPECT_TRUE(AllClose(Train(true, Compression::kFp16), reference, 1e-2, 1e-3));
  EXPECT_TRUE(AllClose(Train(true, Compression::kBf16), reference, 5e-2, 5e-3));
}

TEST(GpuTorch, BroadcastParametersAndOptimizerStateOnCuda) {
  ::torch::manual_seed(100 + rank());  // different on every rank
  Mlp model;
  model->to(Gpu());
  auto adam = std::make_shared<optim::Adam>(model->parameters(),
                                            optim::AdamOptions(0.01));
  if (rank() == 0) {  // only the root has Adam state
    ::torch::mse_loss(model(::torch::randn({4, 6}, Gpu())),
                      ::torch::randn({4, 3}, Gpu()))
        .backward();
    adam->step();
  }
  broadcast_parameters(*model, 0);
  broadcast_optimizer_state(*adam, 0);
  for (const auto& item : model->named_parameters()) {
    EXPECT_TRUE(item.value().is_cuda()) << item.key();
    EXPECT_TRUE(IdenticalAcrossRanks(item.value().cpu(), "param." + item.key()));
  }
  // The state map's key type differs between LibTorch releases; every
  // parameter has state after the broadcast, visited in parameter order
  // (the map is keyed by TensorImpl, so the order is compared via shapes).
  ASSERT_EQ(adam->state().size(), model->parameters().size());
  int index = 0;
  for (const at::Tensor& p : model->parameters()) {
    const at::Tensor* found = nullptr;
    for (auto& [key, state] : adam->state()) {
      auto* adam_state = dynamic_cast<optim::AdamParamState*>(state.get());
      ASSERT_NE(adam_state, nullptr);
      EXPECT_EQ(adam_state->step(), 1);
      if (adam_state->exp_avg().sizes() == p.sizes()) {
        found = &adam_state->exp_avg();
      }
    }
    ASSERT_NE(found, nullptr) << "parameter " << index;
    EXPECT_TRUE(found->is_cuda());
    EXPECT_TRUE(IdenticalAcrossRanks(found->cpu(),
                                     "exp_avg." + std::to_string(index++)));
  }
}

TEST(GpuTorch, OutputsStayOnTheInputsGpuAndMetricsAverage) {
  const at::Tensor mine =
      ::torch::full({2, 3}, static_cast<float>(rank() + 1), Gpu());
  const at::Tensor gathered = allgather(mine, "gpu.torch.allgather");
  EXPECT_EQ(gathered.device(), mine.device());
  ASSERT_EQ(gathered.size(0), 2 * size());
  for (int r = 0; r < size(); ++r) {
    EXPECT_EQ(gathered[2 * r][0].item<float>(), r + 1.0f) << "rank " << r;
  }
  const at::Tensor scattered = reducescatter(
      ::torch::ones({size() * 2, 4}, Gpu()), "gpu.torch.rs", ReduceOp::kSum);
  EXPECT_EQ(scattered.device(), mine.device());
  EXPECT_TRUE(AllClose(scattered.cpu(), ::torch::full({2, 4}, size()), 0, 0));
  const at::Tensor metric = metric_average(
      ::torch::tensor({static_cast<double>(rank())}, Gpu()), "gpu.metric");
  EXPECT_EQ(metric.device(), mine.device());
  EXPECT_DOUBLE_EQ(metric.item<double>(), (size() - 1) / 2.0);
}

#if KOLO_TORCH_CUDA
// Work queued on a non-default current stream is waited for.
TEST(GpuTorch, CollectivesFollowTheCurrentStream) {
  const ::torch::Device device = Gpu();
  c10::cuda::CUDAStream stream = c10::cuda::getStreamFromPool(false, device.index());
  c10::cuda::CUDAStreamGuard guard(stream);
  // A long chain of kernels on `stream` produces the input.
  at::Tensor x = ::torch::zeros({1 << 20}, device);
  for (int i = 0; i < 200; ++i) x.add_(1.0 / 200);
  const at::Tensor sum = allreduce(x.round(), "gpu.torch.stream",
                                   AllreduceOptions{ReduceOp::kSum, 1.0, 1.0});
  EXPECT_TRUE(AllClose(sum.cpu(), ::torch::full({1 << 20}, size()), 0, 0));
}
#endif

// Why this rank cannot run the tests, or empty.
std::string WhyNoGpu() {
#if !KOLO_HAVE_NCCL
  return "kolo was built without the NCCL backend (-DKOLO_WITH_NCCL=ON)";
#endif
  if (!::torch::cuda::is_available()) {
    return std::string("LibTorch ") + TORCH_VERSION +
           " sees no CUDA device (a CPU-only LibTorch such as Debian's, or "
           "no GPU)";
  }
  const int gpus = static_cast<int>(::torch::cuda::device_count());
  if (local_size() > gpus) {
    return std::to_string(local_size()) + " ranks on this host but " +
           std::to_string(gpus) + " GPU(s): NCCL needs one GPU per rank";
  }
  return "";
}

}  // namespace
}  // namespace torch
}  // namespace kolo

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  kolo::torch::init();
  const std::string why = kolo::torch::WhyNoGpu();
  // Every rank skips if any must (max of the flags, on the CPU).
  const bool skip =
      kolo::torch::allreduce(torch::tensor({why.empty() ? 0 : 1}),
                             "gpu.torch.skip",
                             kolo::AllreduceOptions{kolo::ReduceOp::kMax})
          .item<int>() != 0;
  if (skip) {
    std::printf("[  SKIPPED ] GPU LibTorch tests, rank %d of %d: %s\n",
                kolo::torch::rank(), kolo::torch::size(),
                why.empty() ? "another rank cannot run them" : why.c_str());
    std::fflush(stdout);
    kolo::torch::shutdown();
    return kolo::torch::kSkipExitCode;
  }
  const int result = RUN_ALL_TESTS();
  kolo::torch::shutdown();
  return result;
}
