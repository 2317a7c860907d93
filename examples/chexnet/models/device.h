// The --device flag of chexnet_train and chexnet_predict: "cpu", "cuda"
// (GPU default_index % the GPUs LibTorch sees), "cuda:N", or "auto" (cuda
// when LibTorch sees a GPU, otherwise cpu).
#ifndef KOLO_EXAMPLES_CHEXNET_MODELS_DEVICE_H_
#define KOLO_EXAMPLES_CHEXNET_MODELS_DEVICE_H_

#include <torch/types.h>

#include <string>

#include "absl/status/statusor.h"

namespace kolo::chexnet {

// True when `spec` has one of the forms above (for command-line checks).
bool IsDeviceSpec(const std::string& spec);

// The device `spec` names on this machine. default_index picks the GPU for a
// plain "cuda" (chexnet_train passes the rank's local rank). Fails with
// FailedPrecondition, naming `flag` and the spec, when a GPU is asked for
// and LibTorch sees none (a CPU-only LibTorch, such as Debian's, or no GPU
// or driver) or fewer than N + 1; InvalidArgument for a malformed spec.
absl::StatusOr<::torch::Device> ResolveDevice(const std::string& spec,
                                              int default_index,
                                              const std::string& flag);

}  // namespace kolo::chexnet

#endif  // KOLO_EXAMPLES_CHEXNET_MODELS_DEVICE_H_
