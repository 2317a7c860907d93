// The collectives kolo_bench measures: their names, the nccl-tests
// bus-bandwidth factors that make their figures comparable, and how one
// message is laid out in each rank's buffers when it is split into several
// tensors.
//
// Terms (as in nccl-tests): a message's *count* is the number of elements of
// its largest buffer (the allgather output, the reducescatter input) and its
// *size* is count times the element size. A message split into K tensors is K
// *parts*; each part is one kolo operation on a slice of the buffers.
#ifndef KOLO_BENCH_COLLECTIVE_H_
#define KOLO_BENCH_COLLECTIVE_H_

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace kolo::bench {

enum class Collective {
  kAllreduce,
  kAllgather,
  kBroadcast,
  kReducescatter,
  kAlltoall,
};

// Every collective, in the order kolo_bench prints them.
const std::vector<Collective>& AllCollectives();
// "allreduce", "allgather", ...
const char* CollectiveName(Collective collective);
std::optional<Collective> ParseCollective(std::string_view name);
// True for allreduce and reducescatter, which take a reduction op.
bool Reduces(Collective collective);
// busbw = algbw * factor (nccl-tests' definitions): allreduce 2(n-1)/n;
// allgather, reducescatter and alltoall (n-1)/n; broadcast 1.
double BusBandwidthFactor(Collective collective, int ranks);

// One tensor of a message: element ranges of this rank's input and output
// buffers (the same buffer for broadcast).
struct Part {
  int64_t input_offset = 0;
  int64_t input_count = 0;
  int64_t output_offset = 0;
  int64_t output_count = 0;
};

struct Layout {
  Collective collective = Collective::kAllreduce;
  int ranks = 1;
  int64_t count = 0;         // elements of the message (see above)
  int64_t input_count = 0;   // elements of each rank's input buffer
  int64_t output_count = 0;  // elements of each rank's output buffer
  std::vector<Part> parts;
};

// The element count nearest below `bytes` that the collective can run on
// `ranks` ranks: allgather, reducescatter and alltoall need a multiple of the
// rank count. Never less than one element per rank.
int64_t CountForBytes(Collective collective, int64_t bytes,
                      int64_t element_size, int ranks);
// Splits a message of `count` elements into min(tensors, possible) parts of
// nearly equal size. REQUIRES: count is a value CountForBytes returned.
Layout MakeLayout(Collective collective, int64_t count, int ranks, int tensors);

}  // namespace kolo::bench

#endif  // KOLO_BENCH_COLLECTIVE_H_
