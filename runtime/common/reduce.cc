// Run-time dispatch of the reduction kernels: the AVX2/F16C build where the
// CPU has both, the generic build elsewhere.
#include "runtime/common/reduce.h"

#include <cpuid.h>

namespace kolo {

#define KOLO_DECLARE_KERNELS(isa)                                            \
  namespace isa {                                                            \
  void Reduce(void* dst, const void* a, const void* b, int64_t count,        \
              DataType dtype, ReduceOp op);                                  \
  void ScaleBuffer(void* data, int64_t count, DataType dtype, double f);     \
  void FinishReduction(void* data, int64_t count, DataType dtype,            \
                       int64_t divisor, double postscale);                   \
  void WidenToFloat(const void* src, float* dst, int64_t count,              \
                    DataType dtype);                                         \
  void NarrowFromFloat(const float* src, void* dst, int64_t count,           \
                       DataType dtype);                                      \
  }
KOLO_DECLARE_KERNELS(generic)
KOLO_DECLARE_KERNELS(avx2)
#undef KOLO_DECLARE_KERNELS

namespace {

// CPUID leaf 1: ECX bit 29 (clang 14's __builtin_cpu_supports does not know
// "f16c").
bool CpuHasF16c() {
  unsigned eax, ebx, ecx, edx;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C) != 0;
}

bool UseAvx2() {
  static const bool use = __builtin_cpu_supports("avx2") && CpuHasF16c();
  return use;
}

}  // namespace

const char* ReductionKernelIsa() { return UseAvx2() ? "avx2" : "generic"; }

void Reduce(void* dst, const void* a, const void* b, int64_t count,
            DataType dtype, ReduceOp op) {
  UseAvx2() ? avx2::Reduce(dst, a, b, count, dtype, op)
            : generic::Reduce(dst, a, b, count, dtype, op);
}

void ReduceInto(void* dst, const void* src, int64_t count, DataType dtype,
                ReduceOp op) {
  Reduce(dst, dst, src, count, dtype, op);
}

void ScaleBuffer(void* data, int64_t count, DataType dtype, double factor) {
  if (factor == 1.0) return;
  UseAvx2() ? avx2::ScaleBuffer(data, count, dtype, factor)
            : generic::ScaleBuffer(data, count, dtype, factor);
}

void FinishReduction(void* data, int64_t count, DataType dtype,
                     int64_t divisor, double postscale) {
  if (divisor == 1 && postscale == 1.0) return;
  UseAvx2() ? avx2::FinishReduction(data, count, dtype, divisor, postscale)
            : generic::FinishReduction(data, count, dtype, divisor, postscale);
}

void WidenToFloat(const void* src, float* dst, int64_t count, DataType dtype) {
  UseAvx2() ? avx2::WidenToFloat(src, dst, count, dtype)
            : generic::WidenToFloat(src, dst, count, dtype);
}

void NarrowFromFloat(const float* src, void* dst, int64_t count,
                     DataType dtype) {
  UseAvx2() ? avx2::NarrowFromFloat(src, dst, count, dtype)
            : generic::NarrowFromFloat(src, dst, count, dtype);
}

}  // namespace kolo
