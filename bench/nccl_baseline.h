// Baseline for --device cuda: NCCL's own collectives on a communicator of
// all ranks (one GPU each), called directly on a stream of this process and
// waited for with cudaStreamSynchronize, under the same measuring procedure
// and reference check as kolo. What kolo's NCCL backend adds on top of these
// calls (negotiation, fusion, events) is the difference between the tables.
// Built only with CUDA and NCCL (KOLO_BENCH_CUDA).
#ifndef KOLO_BENCH_NCCL_BASELINE_H_
#define KOLO_BENCH_NCCL_BASELINE_H_

#include <memory>
#include <string>

#include "bench/collective.h"
#include "bench/measurement.h"
#include "bench/message_buffers.h"
#include "kolo/status.h"

namespace kolo::bench {

class NcclBaseline {
 public:
  // Collective over MPI_COMM_WORLD: rank 0's unique id is broadcast and every
  // rank joins the communicator on `gpu`.
  static StatusOr<std::unique_ptr<NcclBaseline>> Create(int rank, int ranks,
                                                        int gpu);
  ~NcclBaseline();
  NcclBaseline(const NcclBaseline&) = delete;
  NcclBaseline& operator=(const NcclBaseline&) = delete;

  // "NCCL 2.28.3".
  static std::string Version();
  // Empty when NCCL can run the collective with this dtype and op on
  // `ranks` ranks as kolo defines it; otherwise why not (adasum; average of
  // integers or bool; ncclAvg of floats premultiplies by a rounded 1/ranks,
  // which differs from kolo's sum-then-divide unless ranks is a power of 2).
  // bool runs as ncclUint8 with ncclMax (sum, max) and ncclMin (min,
  // product), as kolo's NCCL backend runs it.
  static std::string Unsupported(Collective collective, DataType dtype,
                                 ReduceOp op, int ranks);

  // One message, laid out as one part. Allreduce and broadcast run in place
  // when `in_place` (broadcast always is); the others out of place.
  // REQUIRES: Unsupported(...) is empty.
  Measurement Measure(const Layout& layout, const RunConfig& config,
                      bool in_place, const MessageBuffers& buffers);

 private:
  NcclBaseline() = default;
  struct State;
  std::unique_ptr<State> state_;
  int rank_ = 0;
};

}  // namespace kolo::bench

#endif  // KOLO_BENCH_NCCL_BASELINE_H_
