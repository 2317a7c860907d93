// Implementation of the ring algorithms.
#include "runtime/backend/ring/ring_comm.h"

#include <algorithm>
#include <cstring>

#include "runtime/backend/shm/shm_comm.h"

namespace kolo {
namespace {

constexpr int64_t kLatencyOptimalBytes = 64 << 10;

int64_t Clamp(int64_t value, int64_t limit) {
  return std::max<int64_t>(0, std::min(value, limit));
}

std::vector<int64_t> Offsets(const std::vector<int64_t>& sizes) {
  std::vector<int64_t> offsets(sizes.size(), 0);
  for (size_t i = 1; i < sizes.size(); ++i) {
    offsets[i] = offsets[i - 1] + sizes[i - 1];
  }
  return offsets;
}

}  // namespace

RingComm::RingComm(std::unique_ptr<Transport> transport, int64_t chunk_bytes)
    : transport_(std::move(transport)), chunk_bytes_(chunk_bytes) {}

Status RingComm::Allreduce(void* buffer, int64_t count,
                           const ReductionSpec& spec) {
  const bool half = IsHalfType(spec.dtype);
  const DataType work = half ? DataType::kFloat32 : spec.dtype;
  char* data = static_cast<char*>(buffer);
  if (half) {
    work_.resize(count * sizeof(float));
    WidenToFloat(buffer, reinterpret_cast<float*>(work_.data()), count,
                 spec.dtype);
    data = work_.data();
  }
  ScaleBuffer(data, count, work, spec.prescale);
  if (half) {
    float* wide = reinterpret_cast<float*>(data);
    if (Status status = AllreduceHalfWire(wide, count, spec.dtype, spec.op,
                                          spec.divisor, spec.postscale);
        !status.ok()) {
      return status;
    }
    NarrowFromFloat(wide, buffer, count, spec.dtype);
    return absl::OkStatus();
  }
  const Status status = count * DataTypeSize(work) <= kLatencyOptimalBytes
                            ? RecursiveDoubling(data, count, work, spec.op)
                            : RingAllreduce(data, count, work, spec.op);
  if (!status.ok()) return status;
  FinishReduction(data, count, work, spec.divisor, spec.postscale);
  return absl::OkStatus();
}

Status RingComm::AllreduceHalfWire(float* data, int64_t count, DataType wire,
                                   ReduceOp op, int64_t divisor,
                                   double postscale) {
  char* bytes = reinterpret_cast<char*>(data);
  const int p = size();
  if (p == 1 ||
      count * static_cast<int64_t>(sizeof(float)) <= kLatencyOptimalBytes) {
    if (Status status = RecursiveDoubling(bytes, count, DataType::kFloat32, op);
        !status.ok()) {
      return status;
    }
    FinishReduction(data, count, DataType::kFloat32, divisor, postscale);
    return absl::OkStatus();
  }
  const int r = rank();
  constexpr int64_t kWire = 2;  // bytes of a 16-bit element
  std::vector<int64_t> segments(p);
  for (int i = 0; i < p; ++i) {
    const auto [lo, hi] = BlockRange(count, p, i);
    segments[i] = hi - lo;
  }
  const std::vector<int64_t> offsets = Offsets(segments);
  if (Status status =
          RingReduceScatter(bytes, segments, DataType::kFloat32, op, wire);
      !status.ok()) {
    return status;
  }
  // wire_ now takes the whole 16-bit result.
  wire_.resize(std::max<size_t>(wire_.size(), count * kWire));
  // This rank's segment is complete: finish it and round it once.
  float* own = data + offsets[r];
  FinishReduction(own, segments[r], DataType::kFloat32, divisor, postscale);
  NarrowFromFloat(own, wire_.data() + offsets[r] * kWire, segments[r], wire);
  std::vector<int64_t> wire_bytes(p);
  for (int i = 0; i < p; ++i) wire_bytes[i] = segments[i] * kWire;
  if (Status status = Allgatherv(wire_.data() + offsets[r] * kWire,
                                 wire_.data(), wire_bytes);
      !status.ok()) {
    return status;
  }
  WidenToFloat(wire_.data(), data, count, wire);
  return absl::OkStatus();
}

Status RingComm::RingReduceScatter(char* data,
                                   const std::vector<int64_t>& segments,
                                   DataType dtype, ReduceOp op, DataType wire) {
  const int p = size();
  const int r = rank();
  // dtype float32 and a 16-bit wire: pieces are rounded to it to travel.
  const bool narrow = wire != dtype;
  const int64_t element = DataTypeSize(dtype);
  const int64_t wire_element = DataTypeSize(wire);
  const int64_t chunk = std::max<int64_t>(chunk_bytes_ / wire_element, 1);
  const std::vector<int64_t> offsets = Offsets(segments);
  incoming_.resize(chunk * wire_element);
  if (narrow) {
    wire_.resize(std::max<size_t>(wire_.size(), chunk * wire_element));
    widened_.resize(chunk);
  }
  // Every rank makes the same number of exchanges per step (transports
  // with message boundaries need it): as many as the longest segment takes.
  const int64_t longest =
      std::max<int64_t>(*std::max_element(segments.begin(), segments.end()), 1);
  // Step s sends segment r - s - 1 and receives (and reduces) r - s - 2, so
  // after p - 1 steps segment r is complete here.
  for (int s = 0; s < p - 1; ++s) {
    const int send_segment = ((r - s - 1) % p + p) % p;
    const int recv_segment = ((r - s - 2) % p + p) % p;
    for (int64_t offset = 0; offset < longest; offset += chunk) {
      const int64_t n_send = Clamp(segments[send_segment] - offset, chunk);
      const int64_t n_recv = Clamp(segments[recv_segment] - offset, chunk);
      const char* send = data + (offsets[send_segment] + offset) * element;
      if (narrow) {
        NarrowFromFloat(reinterpret_cast<const float*>(send), wire_.data(),
                        n_send, wire);
        send = wire_.data();
      }
      if (Status status = transport_->SendRecv(
              (r + 1) % p, send, n_send * wire_element, (r - 1 + p) % p,
              incoming_.data(), n_recv * wire_element);
          !status.ok()) {
        return status;
      }
      const char* received = incoming_.data();
      if (narrow) {
        WidenToFloat(incoming_.data(), widened_.data(), n_recv, wire);
        received = reinterpret_cast<const char*>(widened_.data());
      }
      ReduceInto(data + (offsets[recv_segment] + offset) * element, received,
                 n_recv, dtype, op);
    }
  }
  return absl::OkStatus();
}

Status RingComm::RingAllreduce(char* data, int64_t count, DataType dtype,
                               ReduceOp op) {
  const int p = size();
  if (p == 1) return absl::OkStatus();
  std::vector<int64_t> segments(p);
  for (int i = 0; i < p; ++i) {
    const auto [lo, hi] = BlockRange(count, p, i);
    segments[i] = hi - lo;
  }
  if (Status s = RingReduceScatter(data, segments, dtype, op, dtype); !s.ok()) {
    return s;
  }
  // Allgather: pass the finished segments around the ring.
  const int64_t element = DataTypeSize(dtype);
  std::vector<int64_t> bytes(p);
  for (int i = 0; i < p; ++i) bytes[i] = segments[i] * element;
  return Allgatherv(data + Offsets(bytes)[rank()], data, bytes);
}

Status RingComm::RecursiveDoubling(char* data, int64_t count, DataType dtype,
                                   ReduceOp op) {
  const int p = size();
  const int r = rank();
  if (p == 1) return absl::OkStatus();
  const int64_t bytes = count * DataTypeSize(dtype);
  incoming_.resize(std::max<int64_t>(bytes, 1));
  int p2 = 1;
  while (p2 * 2 <= p) p2 *= 2;
  // Ranks beyond the largest power of two fold into a partner first and
  // get the result back at the end.
  if (r >= p2) {
    if (Status s = transport_->SendRecv(r - p2, data, bytes, -1, nullptr, 0);
        !s.ok()) {
      return s;
    }
    return transport_->SendRecv(-1, nullptr, 0, r - p2, data, bytes);
  }
  if (r + p2 < p) {
    if (Status s = transport_->SendRecv(-1, nullptr, 0, r + p2,
                                        incoming_.data(), bytes);
        !s.ok()) {
      return s;
    }
    ReduceInto(data, incoming_.data(), count, dtype, op);
  }
  for (int mask = 1; mask < p2; mask <<= 1) {
    const int partner = r ^ mask;
    if (Status s = transport_->SendRecv(partner, data, bytes, partner,
                                        incoming_.data(), bytes);
        !s.ok()) {
      return s;
    }
    ReduceInto(data, incoming_.data(), count, dtype, op);
  }
  if (r + p2 < p) {
    return transport_->SendRecv(r + p2, data, bytes, -1, nullptr, 0);
  }
  return absl::OkStatus();
}

Status RingComm::Allgatherv(const void* input, void* output,
                            const std::vector<int64_t>& bytes_per_rank) {
  const int p = size();
  const int r = rank();
  const std::vector<int64_t> offsets = Offsets(bytes_per_rank);
  char* out = static_cast<char*>(output);
  if (bytes_per_rank[r] > 0 && out + offsets[r] != input) {
    std::memmove(out + offsets[r], input, bytes_per_rank[r]);
  }
  for (int s = 0; s < p - 1; ++s) {
    const int send_block = ((r - s) % p + p) % p;
    const int recv_block = ((r - s - 1) % p + p) % p;
    if (Status status = transport_->SendRecv(
            (r + 1) % p, out + offsets[send_block], bytes_per_rank[send_block],
            (r - 1 + p) % p, out + offsets[recv_block],
            bytes_per_rank[recv_block]);
        !status.ok()) {
      return status;
    }
  }
  return absl::OkStatus();
}

Status RingComm::Broadcast(void* buffer, int64_t bytes, int root) {
  // Binomial tree rooted at `root`, in positions relative to it.
  const int p = size();
  const int position = (rank() - root + p) % p;
  int mask = 1;
  while (mask < p) {
    if (position & mask) {
      const int parent = (position - mask + root) % p;
      if (Status s =
              transport_->SendRecv(-1, nullptr, 0, parent, buffer, bytes);
          !s.ok()) {
        return s;
      }
      break;
    }
    mask <<= 1;
  }
  for (mask >>= 1; mask > 0; mask >>= 1) {
    if (position + mask < p) {
      const int child = (position + mask + root) % p;
      if (Status s = transport_->SendRecv(child, buffer, bytes, -1, nullptr, 0);
          !s.ok()) {
        return s;
      }
    }
  }
  return absl::OkStatus();
}

Status RingComm::Alltoallv(const void* input,
                           const std::vector<int64_t>& send_bytes, void* output,
                           const std::vector<int64_t>& recv_bytes) {
  const int p = size();
  const int r = rank();
  const std::vector<int64_t> send_offsets = Offsets(send_bytes);
  const std::vector<int64_t> recv_offsets = Offsets(recv_bytes);
  const char* in = static_cast<const char*>(input);
  char* out = static_cast<char*>(output);
  if (send_bytes[r] > 0) {
    std::memmove(out + recv_offsets[r], in + send_offsets[r], send_bytes[r]);
  }
  for (int s = 1; s < p; ++s) {
    const int to = (r + s) % p;
    const int from = (r - s + p) % p;
    if (Status status = transport_->SendRecv(
            to, in + send_offsets[to], send_bytes[to], from,
            out + recv_offsets[from], recv_bytes[from]);
        !status.ok()) {
      return status;
    }
  }
  return absl::OkStatus();
}

Status RingComm::ReduceScatter(const void* input, void* output,
                               const std::vector<int64_t>& counts,
                               const ReductionSpec& spec) {
  const bool half = IsHalfType(spec.dtype);
  const DataType work = half ? DataType::kFloat32 : spec.dtype;
  const int64_t work_size = DataTypeSize(work);
  int64_t total = 0;
  for (int64_t c : counts) total += c;
  work_.resize(std::max<int64_t>(total * work_size, 1));
  if (half) {
    WidenToFloat(input, reinterpret_cast<float*>(work_.data()), total,
                 spec.dtype);
  } else if (total > 0) {
    std::memcpy(work_.data(), input, total * work_size);
  }
  ScaleBuffer(work_.data(), total, work, spec.prescale);
  if (size() > 1) {
    if (Status s = RingReduceScatter(work_.data(), counts, work, spec.op, work);
        !s.ok()) {
      return s;
    }
  }
  char* mine = work_.data() + Offsets(counts)[rank()] * work_size;
  const int64_t n = counts[rank()];
  FinishReduction(mine, n, work, spec.divisor, spec.postscale);
  if (half) {
    NarrowFromFloat(reinterpret_cast<const float*>(mine), output, n,
                    spec.dtype);
  } else if (n > 0) {
    std::memcpy(output, mine, n * work_size);
  }
  return absl::OkStatus();
}

Status RingComm::Barrier() {
  // Dissemination barrier: log2(size) rounds of one-byte exchanges.
  const int p = size();
  char token = 0;
  char received = 0;
  for (int distance = 1; distance < p; distance <<= 1) {
    if (Status s =
            transport_->SendRecv((rank() + distance) % p, &token, 1,
                                 (rank() - distance + p) % p, &received, 1);
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

}  // namespace kolo
