// CUDA autocast scopes (see mixed_precision.h). LibTorch 2.4 made the
// autocast API device-generic.
#include "examples/chexnet/train/mixed_precision.h"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

namespace kolo::chexnet {

CudaAutocast::CudaAutocast(bool enabled, at::ScalarType dtype)
    : enabled_(enabled) {
  if (!enabled_) return;
#if TORCH_VERSION_MAJOR > 2 || \
    (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  previous_enabled_ = at::autocast::is_autocast_enabled(at::kCUDA);
  previous_dtype_ = at::autocast::get_autocast_dtype(at::kCUDA);
  at::autocast::set_autocast_enabled(at::kCUDA, true);
  at::autocast::set_autocast_dtype(at::kCUDA, dtype);
#else
  previous_enabled_ = at::autocast::is_enabled();
  previous_dtype_ = at::autocast::get_autocast_gpu_dtype();
  at::autocast::set_enabled(true);
  at::autocast::set_autocast_gpu_dtype(dtype);
#endif
  at::autocast::increment_nesting();
}

CudaAutocast::~CudaAutocast() {
  if (!enabled_) return;
  // As torch.autocast's __exit__: the cast weights cached for this scope are
  // dropped when the outermost scope ends.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
#if TORCH_VERSION_MAJOR > 2 || \
    (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  at::autocast::set_autocast_enabled(at::kCUDA, previous_enabled_);
  at::autocast::set_autocast_dtype(at::kCUDA, previous_dtype_);
#else
  at::autocast::set_enabled(previous_enabled_);
  at::autocast::set_autocast_gpu_dtype(previous_dtype_);
#endif
}

}  // namespace kolo::chexnet
