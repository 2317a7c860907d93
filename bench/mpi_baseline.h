// Baselines: the MPI's own collectives on MPI_COMM_WORLD (Open MPI's, or
// MPICH's in a KOLO_MPI=mpich build; its collective component picks the
// algorithm, which Open MPI's MCA parameters can force), under the same
// measuring procedure and the same correctness check as kolo:
//   allreduce      MPI_Allreduce (out of place, and with MPI_IN_PLACE)
//   allgather      MPI_Allgather (out of place)
//   broadcast      MPI_Bcast (in place, as kolo's)
//   reducescatter  MPI_Reduce_scatter_block (out of place)
//   alltoall       MPI_Alltoall (out of place)
#ifndef KOLO_BENCH_MPI_BASELINE_H_
#define KOLO_BENCH_MPI_BASELINE_H_

#include <string>

#include "bench/collective.h"
#include "bench/measurement.h"

namespace kolo::bench {

// Empty when MPI can run this collective on this dtype with this op;
// otherwise why not (float16 and bfloat16 have no MPI datatype; MPI has no
// average).
std::string MpiUnsupported(Collective collective, DataType dtype, ReduceOp op);

// The MPI function that runs `collective`: "MPI_Allreduce", ...
const char* MpiFunctionName(Collective collective);

// REQUIRES: MpiUnsupported(layout.collective, ...) is empty; `input` holds
// layout.input_count elements and `output` layout.output_count (in place,
// only `output` is used; it must hold both counts). MPI gets the whole
// message as one call (several for an allreduce or broadcast beyond INT_MAX
// elements). Collective over all ranks.
Measurement MeasureMpi(const Layout& layout, const RunConfig& config,
                       bool in_place, void* input, void* output);

}  // namespace kolo::bench

#endif  // KOLO_BENCH_MPI_BASELINE_H_
