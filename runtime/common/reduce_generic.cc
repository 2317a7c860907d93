// Reduction kernels for any x86-64 (or other) CPU.
#define KOLO_KERNEL_NAMESPACE generic
#define KOLO_KERNEL_F16C 0
#include "runtime/common/reduce_kernels.inc"
