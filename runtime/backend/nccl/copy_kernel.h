// The NCCL backend's one CUDA kernel: the batched, converting copy that
// packs tensors into the fusion buffer and unpacks them (see CopyBatch in
// nccl_plan.h). One launch per CopyBatch, whatever the number of tensors.
#ifndef KOLO_RUNTIME_BACKEND_NCCL_COPY_KERNEL_H_
#define KOLO_RUNTIME_BACKEND_NCCL_COPY_KERNEL_H_

#include <cuda_runtime_api.h>

#include "runtime/backend/nccl/nccl_plan.h"

namespace kolo {
namespace nccl {

// Queues `batch` on `stream`; returns the launch's error (cudaSuccess when
// the batch is empty).
cudaError_t LaunchCopyBatch(const CopyBatch& batch, cudaStream_t stream);

}  // namespace nccl
}  // namespace kolo

#endif  // KOLO_RUNTIME_BACKEND_NCCL_COPY_KERNEL_H_
