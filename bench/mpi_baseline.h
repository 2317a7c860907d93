// Baseline: the MPI's own MPI_Allreduce on MPI_COMM_WORLD (Open MPI's, or
// MPICH's in a KOLO_MPI=mpich build; its collective component picks the
// algorithm), out of place or with MPI_IN_PLACE, under the same measuring
// procedure as kolo.
#ifndef KOLO_BENCH_MPI_BASELINE_H_
#define KOLO_BENCH_MPI_BASELINE_H_

#include <string>

#include "bench/collective.h"
#include "bench/measurement.h"

namespace kolo::bench {

// Empty when MPI can reduce this dtype with this op; otherwise why not
// (float16 and bfloat16 have no MPI datatype; MPI has no average).
std::string MpiAllreduceUnsupported(DataType dtype, ReduceOp op);

// REQUIRES: MpiAllreduceUnsupported(...) is empty; layout is an allreduce
// (one part: MPI gets the whole message). Collective over all ranks.
Measurement MeasureMpiAllreduce(const Layout& layout, const RunConfig& config,
                                bool in_place, void* input, void* output);

}  // namespace kolo::bench

#endif  // KOLO_BENCH_MPI_BASELINE_H_
