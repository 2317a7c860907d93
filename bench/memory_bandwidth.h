// The host's single-thread memory bandwidth, and the bound it puts on a
// shared-memory allreduce.
//
// B is read+write bandwidth: one thread memcpy()s a buffer far larger than
// the last-level cache, so every byte is read from and written to memory
// once: B = 2 * bytes / time (best of several copies). A 2-rank allreduce of
// N bytes per rank must at least read both ranks' inputs (2N bytes) and
// write both ranks' outputs (2N bytes): 4N bytes through memory, so at
// bandwidth B it takes at least 4N / B and algbw = N / time <= B / 4. It is a
// model: two cores copying at once may together exceed one thread's B.
#ifndef KOLO_BENCH_MEMORY_BANDWIDTH_H_
#define KOLO_BENCH_MEMORY_BANDWIDTH_H_

#include <cstdint>

namespace kolo::bench {

struct MemoryBandwidth {
  double bytes_per_second = 0;  // B
  int64_t buffer_bytes = 0;     // size of the copied buffer
  int repeats = 0;              // copies timed; the best counts
  // The bound on a 2-rank shared-memory allreduce's algbw, bytes/s.
  double AllreduceBound() const { return bytes_per_second / 4; }
};

// Rank 0 measures while the other ranks sleep (they neither compete for
// memory nor spin); every rank gets the result. Collective over
// MPI_COMM_WORLD.
MemoryBandwidth MeasureMemoryBandwidth(int64_t buffer_bytes, int repeats);

}  // namespace kolo::bench

#endif  // KOLO_BENCH_MEMORY_BANDWIDTH_H_
