// kolo_bench's command line.
#ifndef KOLO_BENCH_FLAGS_H_
#define KOLO_BENCH_FLAGS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "bench/collective.h"
#include "kolo/options.h"
#include "kolo/types.h"

namespace kolo::bench {

struct BenchFlags {
  int64_t min_bytes = 8;
  int64_t max_bytes = int64_t{64} << 20;
  int64_t step_factor = 2;
  int iters = 20;
  int warmup = 5;
  int check = 1;
  int trials = 1;
  DataType dtype = DataType::kFloat32;
  ReduceOp op = ReduceOp::kSum;
  int root = 0;
  std::vector<Collective> collectives;  // in AllCollectives() order
  std::string json_path;                // empty: no JSON
  bool mpi_baseline = true;
  bool gloo_baseline = true;
  bool memory_baseline = true;
  bool nccl_baseline = true;  // --device cuda only
  // Label of the kolo rows when the backend comes from KOLO_CPU_OPERATIONS.
  std::string backend_name;
  // --backends: run kolo once per listed backend, in this order, in one
  // process; empty: once, as KOLO_CPU_OPERATIONS says.
  std::vector<CpuOperations> backends;
  // --no-kolo: baselines only (e.g. one MPI algorithm forced per run).
  bool kolo = true;
  int tensors = 1;
  // --process-sets: also time allreduce in two process sets (the lower and
  // the upper half of the ranks) running at the same time.
  bool process_sets = false;
  // --device cuda: buffers in GPU memory (GPU local_rank % GPUs), kolo's
  // NCCL backend, and NCCL's own collectives as the baseline.
  bool cuda = false;
  std::vector<std::string> command_line;
};

// Parses argv into *flags. Returns nothing when the benchmark should run,
// or the exit code to leave with: 0 after --help, 2 for a bad flag (the
// message is printed when `verbose`).
std::optional<int> ParseFlags(int argc, char** argv, bool verbose,
                              BenchFlags* flags);

// The message sizes of the sweep: min_bytes, then times step_factor while
// not above max_bytes.
std::vector<int64_t> SweepSizes(const BenchFlags& flags);

}  // namespace kolo::bench

#endif  // KOLO_BENCH_FLAGS_H_
