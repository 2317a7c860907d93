// Implementation of the helpers declared in kolo/types.h.
#include "kolo/types.h"

#include "runtime/common/dtype_dispatch.h"

namespace kolo {

int64_t DataTypeSize(DataType dtype) {
  return DispatchDtype(dtype, [](auto tag) -> int64_t {
    return sizeof(typename decltype(tag)::Type);
  });
}

const char* DataTypeName(DataType dtype) {
  const char* name =
      DispatchDtype(dtype, [](auto tag) { return decltype(tag)::kName; });
  return name != nullptr ? name : "invalid";
}

const char* ReduceOpName(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return "sum";
    case ReduceOp::kAverage: return "average";
    case ReduceOp::kMin: return "min";
    case ReduceOp::kMax: return "max";
    case ReduceOp::kProduct: return "product";
    case ReduceOp::kAdasum: return "adasum";
  }
  return "invalid";
}

bool IsValidDataType(int dtype) { return dtype >= 0 && dtype < kNumDataTypes; }

bool IsValidReduceOp(int op) { return op >= 0 && op < kNumReduceOps; }

int64_t Tensor::num_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

}  // namespace kolo
