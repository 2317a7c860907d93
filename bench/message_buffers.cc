// Host and GPU buffers of kolo_bench (see message_buffers.h). The CUDA parts
// are compiled in builds with NCCL only (KOLO_BENCH_CUDA).
#include "bench/message_buffers.h"

#include <mpi.h>

#include <cstdio>
#include <cstdlib>
#include <utility>

#ifndef KOLO_BENCH_CUDA
#define KOLO_BENCH_CUDA 0
#endif
#if KOLO_BENCH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace kolo::bench {
namespace {

#if KOLO_BENCH_CUDA
[[noreturn]] void Fatal(const char* what, cudaError_t error) {
  std::fprintf(stderr, "kolo_bench: %s failed: %s (%s)\n", what,
               cudaGetErrorString(error), cudaGetErrorName(error));
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 1);
  std::abort();
}
#endif

}  // namespace

bool CudaBuilt() { return KOLO_BENCH_CUDA != 0; }

StatusOr<int> SelectGpu(int local_rank, int local_size) {
#if KOLO_BENCH_CUDA
  int gpus = 0;
  const cudaError_t error = cudaGetDeviceCount(&gpus);
  if (error != cudaSuccess || gpus == 0) {
    return absl::FailedPreconditionError(
        std::string("--device cuda: no CUDA device is visible (") +
        (error != cudaSuccess
             ? std::string("cudaGetDeviceCount: ") + cudaGetErrorString(error)
             : std::string("0 devices")) +
        ")");
  }
  if (local_size > gpus) {
    return absl::FailedPreconditionError(
        "--device cuda: " + std::to_string(local_size) +
        " ranks on this host share " + std::to_string(gpus) +
        " GPU(s); NCCL needs one GPU per rank");
  }
  const int gpu = local_rank % gpus;
  if (cudaError_t set = cudaSetDevice(gpu); set != cudaSuccess) {
    return absl::InternalError(std::string("--device cuda: cudaSetDevice(") +
                               std::to_string(gpu) +
                               "): " + cudaGetErrorString(set));
  }
  return gpu;
#else
  (void)local_rank;
  (void)local_size;
  return absl::FailedPreconditionError(
      "--device cuda: this kolo_bench was built without CUDA and NCCL "
      "(configure with -DKOLO_WITH_NCCL=ON on a machine with "
      "/usr/local/cuda and NCCL)");
#endif
}

std::string DescribeGpu(int gpu) {
#if KOLO_BENCH_CUDA
  int runtime = 0;
  int driver = 0;
  int gpus = 0;
  cudaRuntimeGetVersion(&runtime);
  cudaDriverGetVersion(&driver);
  cudaGetDeviceCount(&gpus);
  cudaDeviceProp properties{};
  cudaGetDeviceProperties(&properties, gpu);
  char text[512];
  std::snprintf(text, sizeof(text),
                "CUDA runtime %d.%d, driver %d.%d, %s (GPU %d of %d)",
                runtime / 1000, runtime % 1000 / 10, driver / 1000,
                driver % 1000 / 10, properties.name, gpu, gpus);
  return text;
#else
  (void)gpu;
  return "";
#endif
}

MessageBuffers::MessageBuffers(int64_t input_bytes, int64_t output_bytes,
                               int gpu)
    : host_input_(input_bytes), host_output_(output_bytes), gpu_(gpu) {}

StatusOr<std::unique_ptr<MessageBuffers>> MessageBuffers::Create(
    int64_t input_bytes, int64_t output_bytes, int gpu) {
  std::unique_ptr<MessageBuffers> buffers(
      new MessageBuffers(input_bytes, output_bytes, gpu));
  if (gpu < 0) return buffers;
#if KOLO_BENCH_CUDA
  // One byte more keeps the pointers valid (and distinct) for empty buffers.
  for (auto [pointer, bytes] : {std::pair{&buffers->device_input_, input_bytes},
                                std::pair{&buffers->device_output_,
                                          output_bytes}}) {
    const cudaError_t error = cudaMalloc(pointer, bytes + 1);
    if (error != cudaSuccess) {
      return absl::ResourceExhaustedError(
          "cudaMalloc(" + std::to_string(bytes + 1) +
          " bytes): " + cudaGetErrorString(error));
    }
    cudaMemset(*pointer, 0, bytes + 1);
  }
  return buffers;
#else
  return absl::FailedPreconditionError(
      "kolo_bench was built without CUDA");
#endif
}

MessageBuffers::~MessageBuffers() {
#if KOLO_BENCH_CUDA
  if (device_input_ != nullptr) cudaFree(device_input_);
  if (device_output_ != nullptr) cudaFree(device_output_);
#endif
}

Device MessageBuffers::device() const {
  Device device;
  if (gpu_ >= 0) {
    device.kind = Device::kCuda;
    device.index = gpu_;
  }
  return device;
}

void MessageBuffers::Upload(int64_t input_bytes, int64_t output_bytes) const {
  if (gpu_ < 0) return;
#if KOLO_BENCH_CUDA
  if (input_bytes > 0) {
    if (cudaError_t e = cudaMemcpy(device_input_, host_input(), input_bytes,
                                   cudaMemcpyHostToDevice);
        e != cudaSuccess) {
      Fatal("cudaMemcpy of the input to the GPU", e);
    }
  }
  if (output_bytes > 0) {
    if (cudaError_t e = cudaMemcpy(device_output_, host_output(), output_bytes,
                                   cudaMemcpyHostToDevice);
        e != cudaSuccess) {
      Fatal("cudaMemcpy of the output to the GPU", e);
    }
  }
#else
  (void)input_bytes;
  (void)output_bytes;
#endif
}

void MessageBuffers::Download(int64_t output_bytes) const {
  if (gpu_ < 0 || output_bytes == 0) return;
#if KOLO_BENCH_CUDA
  if (cudaError_t e = cudaMemcpy(host_output(), device_output_, output_bytes,
                                 cudaMemcpyDeviceToHost);
      e != cudaSuccess) {
    Fatal("cudaMemcpy of the output from the GPU", e);
  }
#else
  (void)output_bytes;
#endif
}

}  // namespace kolo::bench
