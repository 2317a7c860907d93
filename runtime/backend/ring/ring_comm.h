// RingComm: collectives over a point-to-point Transport.
//
// Terms. The ranks form a ring; `right` is rank + 1 and `left` rank - 1
// (mod size). A buffer of `count` elements is cut into `size` segments
// (BlockRange); each step moves one segment per rank, in pieces of at most
// chunk_bytes so that reduction of one piece overlaps the kernel's transfer
// of the next.
//
// Allreduce: for messages up to 64 KiB recursive doubling (log2(size)
// exchanges of the whole message: latency-optimal); above, reduce-scatter
// then allgather around the ring (2(size-1)/size of the message per rank:
// bandwidth-optimal). float16/bfloat16 are reduced in float32; below
// 64 KiB of float32 they are also exchanged as float32 and rounded once at
// the end. Above, where bandwidth decides, they travel as 16 bits (see
// AllreduceHalfWire): half the bytes, at the price of rounding each partial
// sum to 16 bits when it leaves a rank.
//
// Not thread-safe; every rank of the transport makes the same calls.
#ifndef KOLO_RUNTIME_BACKEND_RING_RING_COMM_H_
#define KOLO_RUNTIME_BACKEND_RING_RING_COMM_H_

#include <memory>
#include <vector>

#include "runtime/common/reduce.h"
#include "runtime/transport/transport.h"

namespace kolo {

class RingComm {
 public:
  RingComm(std::unique_ptr<Transport> transport, int64_t chunk_bytes);

  int rank() const { return transport_->rank(); }
  int size() const { return transport_->size(); }
  const char* transport_name() const { return transport_->name(); }

  // In place, with scaling and finishing as the spec says.
  Status Allreduce(void* buffer, int64_t count, const ReductionSpec& spec);
  Status Allgatherv(const void* input, void* output,
                    const std::vector<int64_t>& bytes_per_rank);
  Status Broadcast(void* buffer, int64_t bytes, int root);
  Status Alltoallv(const void* input, const std::vector<int64_t>& send_bytes,
                   void* output, const std::vector<int64_t>& recv_bytes);
  Status ReduceScatter(const void* input, void* output,
                       const std::vector<int64_t>& counts,
                       const ReductionSpec& spec);
  Status Barrier();
  void Abandon() { transport_->Abandon(); }

  // Allreduce of float32 `data` (already prescaled) whose values belong to
  // the 16-bit type `wire` (float16 or bfloat16), finished with divisor and
  // postscale. Up to 64 KiB of float32: recursive doubling in float32.
  // Above: a ring whose reduce-scatter sends each piece rounded to `wire`
  // and adds what arrives in float32 (every partial sum is rounded once per
  // hop, size - 1 times in all), then each rank finishes its segment,
  // rounds it to `wire` and the allgather moves 16-bit values, so every
  // rank ends with the same values, all representable in `wire`.
  Status AllreduceHalfWire(float* data, int64_t count, DataType wire,
                           ReduceOp op, int64_t divisor, double postscale);

 private:
  // Plain reductions (no scaling) on a native or float32 buffer.
  Status RingAllreduce(char* data, int64_t count, DataType dtype, ReduceOp op);
  Status RecursiveDoubling(char* data, int64_t count, DataType dtype,
                           ReduceOp op);
  // Ring reduce-scatter over `segments`; afterwards this rank's segment of
  // data holds the reduction. A `wire` other than dtype (float32 data, a
  // 16-bit wire) rounds each outgoing piece to it and widens what arrives.
  Status RingReduceScatter(char* data, const std::vector<int64_t>& segments,
                           DataType dtype, ReduceOp op, DataType wire);

  std::unique_ptr<Transport> transport_;
  int64_t chunk_bytes_;
  std::vector<char> incoming_;  // one piece received from the left
  std::vector<char> work_;      // widened or copied data
  std::vector<char> wire_;      // 16-bit pieces, then results (half wire)
  std::vector<float> widened_;  // a received 16-bit piece, widened
};

}  // namespace kolo

#endif  // KOLO_RUNTIME_BACKEND_RING_RING_COMM_H_
