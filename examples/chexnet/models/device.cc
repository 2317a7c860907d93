// --device resolution (see device.h).
#include "examples/chexnet/models/device.h"

#include <torch/cuda.h>
#include <torch/version.h>

#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace kolo::chexnet {
namespace {

constexpr char kCudaPrefix[] = "cuda:";

// The N of "cuda:N", or -1 when spec has no (valid) index.
int CudaIndex(const std::string& spec) {
  if (spec.rfind(kCudaPrefix, 0) != 0) return -1;
  int index = -1;
  if (!absl::SimpleAtoi(spec.substr(sizeof(kCudaPrefix) - 1), &index) ||
      index < 0) {
    return -1;
  }
  return index;
}

}  // namespace

bool IsDeviceSpec(const std::string& spec) {
  return spec == "cpu" || spec == "cuda" || spec == "auto" ||
         CudaIndex(spec) >= 0;
}

absl::StatusOr<torch::Device> ResolveDevice(const std::string& spec,
                                            int default_index,
                                            const std::string& flag) {
  if (!IsDeviceSpec(spec)) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " ", spec, ": expected cpu, cuda, cuda:N or auto"));
  }
  if (spec == "cpu") return torch::Device(torch::kCPU);
  const int gpus = torch::cuda::is_available()
                       ? static_cast<int>(torch::cuda::device_count())
                       : 0;
  if (spec == "auto" && gpus == 0) return torch::Device(torch::kCPU);
  if (gpus == 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        flag, " ", spec, ": LibTorch ", TORCH_VERSION,
        " sees no CUDA device (a CPU-only LibTorch such as Debian's "
        "libtorch-dev, or no GPU or driver on this machine); use ",
        flag, " cpu, or build against a CUDA LibTorch (CMAKE_PREFIX_PATH)"));
  }
  int index = CudaIndex(spec);
  if (index < 0) {
    index = std::abs(default_index) % gpus;
  } else if (index >= gpus) {
    return absl::FailedPreconditionError(
        absl::StrCat(flag, " ", spec, ": LibTorch sees only ", gpus,
                     " CUDA device(s) (indices 0..", gpus - 1, ")"));
  }
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
}

}  // namespace kolo::chexnet
