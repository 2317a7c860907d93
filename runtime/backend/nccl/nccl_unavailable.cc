// Builds without CUDA or NCCL: no GPU executor. CUDA tensors are refused at
// submission (runtime/api/api.cc).
#include "kolo/kolo.h"
#include "runtime/backend/gpu_executor.h"

namespace kolo {

bool NcclBuilt() { return false; }

std::unique_ptr<GpuExecutor> MakeGpuExecutor(GpuExecutorConfig) {
  return nullptr;
}

}  // namespace kolo
