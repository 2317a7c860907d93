// Implementation of AdasumAllreduce (terms in adasum.h).
#include "runtime/core/adasum.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "runtime/common/dtype_dispatch.h"
#include "runtime/common/reduce.h"

namespace kolo {
namespace {

// [lo, hi): elements of the buffer.
struct Segment {
  int64_t lo = 0;
  int64_t hi = 0;
  int64_t size() const { return hi - lo; }
};

// At level d, the half of `segment` that `rank` keeps.
Segment KeptHalf(const Segment& segment, int rank, int d) {
  const int64_t mid = segment.lo + segment.size() / 2;
  return (rank & d) == 0 ? Segment{segment.lo, mid} : Segment{mid, segment.hi};
}

// The coefficient of a vector whose squared norm is `norm2` (1 for a zero
// vector, so that the other vector passes unchanged).
double Coefficient(double dot, double norm2) {
  return norm2 > 0 ? 1.0 - dot / (2.0 * norm2) : 1.0;
}

}  // namespace

Status AdasumAllreduce::Run(void* buffer, const std::vector<int64_t>& counts,
                            DataType dtype, double prescale, double postscale) {
  if (size_ <= 0 || (size_ & (size_ - 1)) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "adasum needs a power-of-two number of ranks; this job has ", size_));
  }
  int64_t total = 0;
  for (int64_t count : counts) total += count;
  return DispatchDtype(dtype, [&](auto tag) -> Status {
    using T = typename decltype(tag)::Type;
    if constexpr (decltype(tag)::kKind == DtypeKind::kFloating) {
      T* data = static_cast<T*>(buffer);
      ScaleBuffer(data, total, dtype, prescale);
      if (Status s = RunTyped(data, counts); !s.ok()) return s;
      ScaleBuffer(data, total, dtype, postscale);
      return absl::OkStatus();
    } else if constexpr (decltype(tag)::kKind == DtypeKind::kHalf) {
      wide_.resize(total);
      WidenToFloat(buffer, wide_.data(), total, dtype);
      ScaleBuffer(wide_.data(), total, DataType::kFloat32, prescale);
      if (Status s = RunTyped(wide_.data(), counts); !s.ok()) return s;
      ScaleBuffer(wide_.data(), total, DataType::kFloat32, postscale);
      NarrowFromFloat(wide_.data(), buffer, total, dtype);
      return absl::OkStatus();
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "adasum needs a floating-point tensor, not ", DataTypeName(dtype)));
    }
  });
}

Status AdasumAllreduce::Exchange(int partner, const void* send,
                                 int64_t send_bytes, void* recv,
                                 int64_t recv_bytes) {
  std::vector<int64_t> sends(size_, 0);
  std::vector<int64_t> recvs(size_, 0);
  sends[partner] = send_bytes;
  recvs[partner] = recv_bytes;
  return backend_->Alltoallv(send, sends, recv, recvs);
}

Status AdasumAllreduce::SumOverGroup(int d) {
  const int64_t per_rank = static_cast<int64_t>(sums_.size());
  gathered_.resize(per_rank * size_);
  const std::vector<int64_t> bytes(size_, per_rank * sizeof(double));
  if (Status s = backend_->Allgatherv(sums_.data(), gathered_.data(), bytes);
      !s.ok()) {
    return s;
  }
  const int first = rank_ / (2 * d) * (2 * d);
  std::fill(sums_.begin(), sums_.end(), 0.0);
  for (int r = first; r < first + 2 * d; ++r) {
    const double* theirs = gathered_.data() + r * per_rank;
    for (int64_t i = 0; i < per_rank; ++i) sums_[i] += theirs[i];
  }
  return absl::OkStatus();
}

template <typename T>
Status AdasumAllreduce::RunTyped(T* data, const std::vector<int64_t>& counts) {
  const int tensors = static_cast<int>(counts.size());
  std::vector<int64_t> starts(tensors + 1, 0);
  for (int t = 0; t < tensors; ++t) starts[t + 1] = starts[t] + counts[t];
  // The segment before each level, to undo the halving in reverse.
  std::vector<Segment> parents;
  Segment segment{0, starts[tensors]};
  received_.resize((segment.size() - segment.size() / 2) * sizeof(T));
  T* theirs = reinterpret_cast<T*>(received_.data());

  for (int d = 1; d < size_; d <<= 1) {
    const int partner = rank_ ^ d;
    const bool left = (rank_ & d) == 0;
    const Segment kept = KeptHalf(segment, rank_, d);
    const Segment given = KeptHalf(segment, partner, d);
    if (Status s = Exchange(partner, data + given.lo, given.size() * sizeof(T),
                            theirs, kept.size() * sizeof(T));
        !s.ok()) {
      return s;
    }
    T* mine = data + kept.lo;
    // The tensors that overlap the kept half: [first, last).
    const int first = static_cast<int>(
        std::upper_bound(starts.begin(), starts.end(), kept.lo) -
        starts.begin() - 1);
    int last = first;
    sums_.assign(3 * tensors, 0.0);
    for (int t = first; t < tensors && starts[t] < kept.hi; ++t, ++last) {
      const int64_t begin = std::max(starts[t], kept.lo) - kept.lo;
      const int64_t end = std::min(starts[t + 1], kept.hi) - kept.lo;
      double dot = 0, own = 0, other = 0;
      for (int64_t i = begin; i < end; ++i) {
        const double m = mine[i];
        const double o = theirs[i];
        dot += m * o;
        own += m * m;
        other += o * o;
      }
      sums_[3 * t] = dot;
      sums_[3 * t + 1] = left ? own : other;
      sums_[3 * t + 2] = left ? other : own;
    }
    if (Status s = SumOverGroup(d); !s.ok()) return s;
    for (int t = first; t < last; ++t) {
      const double dot = sums_[3 * t];
      const double left_coefficient = Coefficient(dot, sums_[3 * t + 1]);
      const double right_coefficient = Coefficient(dot, sums_[3 * t + 2]);
      const double own = left ? left_coefficient : right_coefficient;
      const double other = left ? right_coefficient : left_coefficient;
      const int64_t begin = std::max(starts[t], kept.lo) - kept.lo;
      const int64_t end = std::min(starts[t + 1], kept.hi) - kept.lo;
      for (int64_t i = begin; i < end; ++i) {
        mine[i] = static_cast<T>(own * mine[i] + other * theirs[i]);
      }
    }
    parents.push_back(segment);
    segment = kept;
  }

  for (int d = size_ / 2; d >= 1; d >>= 1) {
    const int partner = rank_ ^ d;
    const Segment parent = parents.back();
    parents.pop_back();
    const Segment others = KeptHalf(parent, partner, d);
    if (Status s =
            Exchange(partner, data + segment.lo, segment.size() * sizeof(T),
                     data + others.lo, others.size() * sizeof(T));
        !s.ok()) {
      return s;
    }
    segment = parent;
  }
  return absl::OkStatus();
}

}  // namespace kolo
