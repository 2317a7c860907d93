// Reduction kernels for CPUs with AVX2 and F16C (built with -mavx2 -mf16c).
#define KOLO_KERNEL_NAMESPACE avx2
#define KOLO_KERNEL_F16C 1
#include "runtime/common/reduce_kernels.inc"
