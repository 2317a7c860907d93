// Baseline: Gloo's ring-chunked allreduce (gloo::AllreduceRingChunked) over
// its TCP transport on the loopback interface, the algorithm and transport
// PyTorch's CPU process groups have long used. Ranks meet through a
// gloo::rendezvous::FileStore in a fresh temporary directory, so every rank
// must share that host's file system: the baseline is for one host.
#ifndef KOLO_BENCH_GLOO_BASELINE_H_
#define KOLO_BENCH_GLOO_BASELINE_H_

#include <memory>
#include <string>

#include "bench/collective.h"
#include "bench/measurement.h"

namespace gloo::rendezvous {
class Context;
}  // namespace gloo::rendezvous

namespace kolo::bench {

class GlooBaseline {
 public:
  // Empty when the baseline can run this dtype and op; otherwise why not.
  static std::string Unsupported(DataType dtype, ReduceOp op);

  // Connects every rank to every other. Collective over MPI_COMM_WORLD.
  static StatusOr<std::unique_ptr<GlooBaseline>> Connect();
  // Removes the rendezvous directory. Collective over MPI_COMM_WORLD.
  ~GlooBaseline();

  // Gloo reduces in place: buffer is input and output. The algorithm object
  // (and its receive buffers) is built once per size, outside the timing.
  // REQUIRES: Unsupported(config.dtype, config.op) is empty. Collective.
  Measurement MeasureAllreduce(const Layout& layout, const RunConfig& config,
                               void* buffer);

 private:
  GlooBaseline(std::shared_ptr<gloo::rendezvous::Context> context,
               std::string store_directory)
      : context_(std::move(context)),
        store_directory_(std::move(store_directory)) {}

  std::shared_ptr<gloo::rendezvous::Context> context_;
  std::string store_directory_;
};

}  // namespace kolo::bench

#endif  // KOLO_BENCH_GLOO_BASELINE_H_
