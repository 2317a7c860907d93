// Input values of kolo_bench and the independent reference its results are
// checked against.
//
// Every element is a small integer picked by hashing (rank, index, seed), so
// sums, minima, maxima and products over the ranks are exact in every dtype
// (float16 and bfloat16 included) and a result must match bit for bit; only
// averages, which divide, are compared within one rounding of the dtype. The
// reference recomputes every rank's inputs from the same formula in double
// precision: it never reads another rank's data and shares no code with
// kolo's kernels. A new seed per check iteration gives new inputs.
#ifndef KOLO_BENCH_VALUES_H_
#define KOLO_BENCH_VALUES_H_

#include <cstdint>

#include "bench/collective.h"
#include "kolo/types.h"

namespace kolo::bench {

// The value range a collective's inputs are drawn from.
enum class ValueKind {
  kMoved,       // copied only: [-30, 30] (unsigned [0, 60], bool {0, 1})
  kReduced,     // summed, averaged, min, max: [-3, 3] ([0, 3], {0, 1})
  kMultiplied,  // multiplied: {-2, -1, 1, 2} ({1, 2}, {0, 1})
};

ValueKind ValueKindFor(Collective collective, ReduceOp op);

// The inputs of one check iteration.
class ValueModel {
 public:
  ValueModel(DataType dtype, ValueKind kind, int seed)
      : dtype_(dtype), kind_(kind), seed_(seed) {}

  DataType dtype() const { return dtype_; }
  // Element `index` of `rank`'s input buffer.
  double Input(int rank, int64_t index) const;

 private:
  DataType dtype_;
  ValueKind kind_;
  int seed_;
};

// Writes rank's input elements [offset, offset + count) to data, which
// points at element `offset` of the rank's input buffer.
void FillInput(const ValueModel& model, int rank, void* data, int64_t offset,
               int64_t count);
// Writes a value no input has (77, or the byte 0xaa for one-byte types), so
// an output that an operation failed to write is counted wrong.
void Poison(DataType dtype, void* data, int64_t count);

// Counts the elements of this rank's output buffer that differ from the
// reference result of `layout` for these inputs.
int64_t CountWrong(const Layout& layout, const ValueModel& model, ReduceOp op,
                   int root, int rank, const void* output);

}  // namespace kolo::bench

#endif  // KOLO_BENCH_VALUES_H_
