// chexnet_train's --mixed-precision: what forward passes autocast to, and the
// scope that turns CUDA autocast on around them.
#ifndef KOLO_EXAMPLES_CHEXNET_TRAIN_MIXED_PRECISION_H_
#define KOLO_EXAMPLES_CHEXNET_TRAIN_MIXED_PRECISION_H_

#include <c10/core/ScalarType.h>

namespace kolo::chexnet {

// --mixed-precision: whether forward passes autocast, and to what.
struct MixedPrecision {
  bool enabled = false;
  at::ScalarType dtype = at::kFloat;
  bool loss_scaling = false;  // fp16 only
};

// torch.autocast("cuda", dtype) for LibTorch: CUDA ops inside the scope run
// in `dtype` where autocast's policy allows (convolutions, matmuls), in
// float32 where precision matters (losses, reductions). Does nothing when
// not enabled.
class CudaAutocast {
 public:
  CudaAutocast(bool enabled, at::ScalarType dtype);
  ~CudaAutocast();
  CudaAutocast(const CudaAutocast&) = delete;
  CudaAutocast& operator=(const CudaAutocast&) = delete;

 private:
  const bool enabled_;
  bool previous_enabled_ = false;
  at::ScalarType previous_dtype_ = at::kHalf;
};

}  // namespace kolo::chexnet

#endif  // KOLO_EXAMPLES_CHEXNET_TRAIN_MIXED_PRECISION_H_
