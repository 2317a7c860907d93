// AdasumAllreduce: the Adasum reduction (Maleki et al., "Scaling Distributed
// Training with Adaptive Summation"; Horovod's CPU Adasum) over any CPU data
// plane, built on the plane's Alltoallv (used as a pairwise exchange) and
// Allgatherv (for a handful of scalars per tensor).
//
// Terms. Two vectors a and b combine to
//   adasum(a, b) = (1 - a.b / 2|a|^2) a + (1 - a.b / 2|b|^2) b,
// a coefficient being 1 where its vector's norm is zero (so adasum(0, b) =
// b). The ranks (a power of two) form a binary tree: level d = 1, 2, 4, ...
// combines the result of ranks [g, g + d) (the "left" vector) with that of
// [g + d, g + 2d) (the "right" one), g a multiple of 2d; the group of level d
// is those 2d ranks.
//
// Recursive vector halving, distance doubling. Every rank starts holding its
// whole buffer as its segment. At level d a rank and its partner (rank ^ d)
// hold the same segment of their half-groups' vectors; the left one keeps the
// segment's first half, the right one the second, and each sends the other
// the half it gives up. Each computes, per tensor, the dot product and both
// squared norms over the part of the tensor in its kept half; the group sums
// these (its ranks' kept halves tile the whole buffer), every rank applies
// the tensor's coefficients to its half, and the segment shrinks to that half.
// After the last level every rank holds one final piece; the levels are then
// undone in reverse order (distance halving), each rank sending its segment
// to the partner of that level, so every rank ends with the whole result.
//
// Per tensor: a fused buffer holds several tensors back to back; each gets its
// own dot products, norms and coefficients, as if reduced alone.
//
// float16 and bfloat16 are widened to float32 and narrowed once at the end;
// dot products and norms accumulate in double. Every rank ends with the same
// bytes: each final piece is computed by one rank and copied to the others.
//
// Not thread-safe; every rank of the backend makes the same calls.
#ifndef KOLO_RUNTIME_CORE_ADASUM_H_
#define KOLO_RUNTIME_CORE_ADASUM_H_

#include <cstdint>
#include <vector>

#include "runtime/backend/backend.h"

namespace kolo {

class AdasumAllreduce {
 public:
  // REQUIRES: size is a power of two (the API refuses other sizes).
  AdasumAllreduce(Backend* backend, int rank, int size)
      : backend_(backend), rank_(rank), size_(size) {}

  // In place: buffer holds counts[i] elements of tensor i, consecutive, of
  // dtype (float16, bfloat16, float32 or float64). Afterwards, per tensor,
  // buffer = postscale * adasum over ranks of (prescale * buffer).
  Status Run(void* buffer, const std::vector<int64_t>& counts, DataType dtype,
             double prescale, double postscale);

 private:
  template <typename T>
  Status RunTyped(T* data, const std::vector<int64_t>& counts);
  // Sends send_bytes to `partner` while receiving recv_bytes from it.
  Status Exchange(int partner, const void* send, int64_t send_bytes, void* recv,
                  int64_t recv_bytes);
  // Replaces sums_ by the sum of every rank's sums_ in the 2d ranks of this
  // rank's level-d group, added in rank order so that the group agrees to
  // the bit.
  Status SumOverGroup(int d);

  Backend* backend_;
  int rank_;
  int size_;
  std::vector<char> received_;  // the partner's half of the segment
  std::vector<float> wide_;     // a 16-bit buffer widened
  std::vector<double> sums_;    // per tensor: a.b, |left|^2, |right|^2
  std::vector<double> gathered_;
};

}  // namespace kolo

#endif  // KOLO_RUNTIME_CORE_ADASUM_H_
