// Implementation of the in-process plane checks.
#include "tests/runtime/planes/plane_checks.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>

#include "tests/runtime/test_values.h"

namespace kolo::testing {
namespace {

std::string Name(DataType dtype, ReduceOp op, int64_t count, bool in_place) {
  return Describe(dtype, op, count, in_place) + " (seed " +
         std::to_string(Seed()) + ")";
}

ReductionSpec SpecFor(DataType dtype, ReduceOp op, int size) {
  ReductionSpec spec;
  spec.dtype = dtype;
  spec.op = op;
  // As the executor does: average is a sum divided by the contributors.
  if (op == ReduceOp::kAverage) {
    spec.op = ReduceOp::kSum;
    spec.divisor = size;
  }
  return spec;
}

int Salt() { return static_cast<int>(Seed() % 1000); }

void CheckAllreduce(Backend* backend, int rank, int size, DataType dtype,
                    ReduceOp op, int64_t count, bool in_place) {
  const std::string name = Name(dtype, op, count, in_place);
  Buffer input(dtype, count);
  Buffer output(dtype, count);
  for (int64_t i = 0; i < count; ++i) {
    input.Set(i, InputValue(dtype, op, rank, i, Salt()));
  }
  const ReductionSpec spec = SpecFor(dtype, op, size);
  const Status s =
      in_place ? backend->Allreduce(input.data(), count, spec)
               : backend->Allreduce(input.data(), output.data(), count, spec);
  ASSERT_TRUE(s.ok()) << name << ": " << s;
  const Buffer& result = in_place ? input : output;
  Buffer expected(dtype, 1);
  std::vector<double> values(size);
  for (int64_t i = 0; i < count; ++i) {
    for (int r = 0; r < size; ++r) {
      values[r] = InputValue(dtype, op, r, i, Salt());
    }
    expected.Set(0, ReferenceReduce(dtype, op, values, size));
    ASSERT_EQ(result.Get(i), expected.Get(0))
        << name << " rank " << rank << " element " << i;
  }
}

// Unit roundoff of the type the sum is kept in between hops.
double Roundoff(DataType dtype) {
  switch (dtype) {
    case DataType::kFloat16:
      return std::ldexp(1.0, -11);
    case DataType::kBfloat16:
      return std::ldexp(1.0, -8);
    case DataType::kFloat32:
      return std::ldexp(1.0, -24);
    default:
      return std::ldexp(1.0, -53);
  }
}

// Rank r's input: uniform in [-1, 1) (SplitMix64 of the seed, the rank
// and the index), rounded to dtype.
Buffer RandomInput(DataType dtype, int r, int64_t count) {
  Buffer b(dtype, count);
  uint64_t state = Seed() * 0x9e3779b97f4a7c15ULL + r;
  for (int64_t i = 0; i < count; ++i) {
    uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    b.Set(i, std::ldexp(static_cast<double>(z >> 11), -52) - 1.0);
  }
  return b;
}

// A sum of random values: every rank's partial sums round (a 16-bit wire
// rounds once per hop), so the error bound is (size + 1) roundoffs of the
// sum of magnitudes.
void CheckRandomSum(Backend* backend, int rank, int size, DataType dtype,
                    int64_t count) {
  const std::string name = Name(dtype, ReduceOp::kSum, count, true) + " random";
  std::vector<Buffer> inputs;
  for (int r = 0; r < size; ++r) inputs.push_back(RandomInput(dtype, r, count));
  Buffer data = inputs[rank];
  const Status s =
      backend->Allreduce(data.data(), count, SpecFor(dtype, ReduceOp::kSum, 1));
  ASSERT_TRUE(s.ok()) << name << ": " << s;
  for (int64_t i = 0; i < count; ++i) {
    double sum = 0;
    double magnitude = 0;
    for (int r = 0; r < size; ++r) {
      sum += inputs[r].Get(i);
      magnitude += std::fabs(inputs[r].Get(i));
    }
    const double tolerance = (size + 1) * Roundoff(dtype) * magnitude;
    ASSERT_LE(std::fabs(data.Get(i) - sum), tolerance)
        << name << " rank " << rank << " element " << i << ": expected " << sum
        << ", got " << data.Get(i);
  }
}

uint8_t Pattern(int a, int b, int64_t k) {
  return static_cast<uint8_t>(a * 131 + b * 17 + k * 7 + Salt());
}

void CheckAllgatherv(Backend* backend, int rank, int size,
                     const std::vector<int64_t>& bytes_per_rank) {
  int64_t total = 0;
  for (int64_t b : bytes_per_rank) total += b;
  std::vector<uint8_t> mine(bytes_per_rank[rank] + 1);
  for (int64_t k = 0; k < bytes_per_rank[rank]; ++k) {
    mine[k] = Pattern(rank, 0, k);
  }
  std::vector<uint8_t> all(total + 1, 0xee);
  const Status s = backend->Allgatherv(mine.data(), all.data(), bytes_per_rank);
  ASSERT_TRUE(s.ok()) << "allgatherv: " << s;
  int64_t at = 0;
  for (int r = 0; r < size; ++r) {
    for (int64_t k = 0; k < bytes_per_rank[r]; ++k, ++at) {
      ASSERT_EQ(all[at], Pattern(r, 0, k))
          << "allgatherv rank " << rank << ": byte " << k << " of rank " << r
          << " (seed " << Seed() << ")";
    }
  }
}

void CheckBroadcast(Backend* backend, int rank, int root, int64_t bytes) {
  std::vector<uint8_t> buffer(bytes + 1, 0xee);
  if (rank == root) {
    for (int64_t k = 0; k < bytes; ++k) buffer[k] = Pattern(root, 1, k);
  }
  const Status s = backend->Broadcast(buffer.data(), bytes, root);
  ASSERT_TRUE(s.ok()) << "broadcast from " << root << ": " << s;
  for (int64_t k = 0; k < bytes; ++k) {
    ASSERT_EQ(buffer[k], Pattern(root, 1, k))
        << "broadcast of " << bytes << " bytes from " << root << " on rank "
        << rank << ": byte " << k << " (seed " << Seed() << ")";
  }
}

// Bytes rank `from` sends rank `to` in the alltoallv check: uneven, some
// empty, never empty to itself.
int64_t Share(int from, int to) {
  if ((from + 2 * to + 1) % 3 == 0) return 0;
  return 1 + (from * 7 + to * 11 + Salt()) * 97 % 70001;
}

void CheckAlltoallv(Backend* backend, int rank, int size) {
  std::vector<int64_t> send_bytes(size);
  std::vector<int64_t> recv_bytes(size);
  int64_t send_total = 0;
  int64_t recv_total = 0;
  for (int peer = 0; peer < size; ++peer) {
    send_bytes[peer] = Share(rank, peer);
    recv_bytes[peer] = Share(peer, rank);
    send_total += send_bytes[peer];
    recv_total += recv_bytes[peer];
  }
  std::vector<uint8_t> input(send_total + 1);
  int64_t at = 0;
  for (int peer = 0; peer < size; ++peer) {
    for (int64_t k = 0; k < send_bytes[peer]; ++k) {
      input[at++] = Pattern(rank, peer, k);
    }
  }
  std::vector<uint8_t> output(recv_total + 1, 0xee);
  const Status s =
      backend->Alltoallv(input.data(), send_bytes, output.data(), recv_bytes);
  ASSERT_TRUE(s.ok()) << "alltoallv: " << s;
  at = 0;
  for (int peer = 0; peer < size; ++peer) {
    for (int64_t k = 0; k < recv_bytes[peer]; ++k, ++at) {
      ASSERT_EQ(output[at], Pattern(peer, rank, k))
          << "alltoallv rank " << rank << ": byte " << k << " from rank "
          << peer << " (seed " << Seed() << ")";
    }
  }
}

void CheckReduceScatter(Backend* backend, int rank, int size, DataType dtype,
                        ReduceOp op, const std::vector<int64_t>& counts) {
  int64_t total = 0;
  int64_t offset = 0;
  for (int r = 0; r < size; ++r) {
    if (r == rank) offset = total;
    total += counts[r];
  }
  const std::string name = Name(dtype, op, total, false) + " reducescatter";
  Buffer input(dtype, total);
  for (int64_t i = 0; i < total; ++i) {
    input.Set(i, InputValue(dtype, op, rank, i, Salt()));
  }
  Buffer output(dtype, counts[rank]);
  const Status s = backend->ReduceScatter(input.data(), output.data(), counts,
                                          SpecFor(dtype, op, size));
  ASSERT_TRUE(s.ok()) << name << ": " << s;
  Buffer expected(dtype, 1);
  std::vector<double> values(size);
  for (int64_t k = 0; k < counts[rank]; ++k) {
    for (int r = 0; r < size; ++r) {
      values[r] = InputValue(dtype, op, r, offset + k, Salt());
    }
    expected.Set(0, ReferenceReduce(dtype, op, values, size));
    ASSERT_EQ(output.Get(k), expected.Get(0))
        << name << " rank " << rank << " element " << k;
  }
}

}  // namespace

uint64_t Seed() {
  static const uint64_t seed = [] {
    const char* text = std::getenv("KOLO_TEST_SEED");
    const uint64_t value =
        text != nullptr ? std::strtoull(text, nullptr, 10) : 20240615;
    std::cout << "KOLO_TEST_SEED=" << value << "\n";
    return value;
  }();
  return seed;
}

Sweep SweepFor(int size, int large_at) {
  Sweep sweep;
  if (size != large_at) sweep.random_sums.clear();
  return sweep;
}

void RunRanks(int size, const std::function<void(int rank)>& fn) {
  Seed();  // printed before the threads start
  std::vector<std::thread> threads;
  for (int rank = 0; rank < size; ++rank) threads.emplace_back(fn, rank);
  for (std::thread& t : threads) t.join();
}

double Now() {
  return std::chrono::duration<double>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void CheckCollectives(Backend* backend, int rank, int size,
                      const Sweep& sweep) {
  bool in_place = rank % 2 == 0;
  for (DataType dtype : AllDataTypes()) {
    for (ReduceOp op : AllReduceOps()) {
      for (int64_t count : sweep.counts) {
        // Every rank makes the same calls; whether its own call is in place
        // is its business.
        in_place = !in_place;
        CheckAllreduce(backend, rank, size, dtype, op, count, in_place);
        if (::testing::Test::HasFatalFailure()) return;
      }
    }
  }
  for (const auto& [dtype, count] : sweep.random_sums) {
    CheckRandomSum(backend, rank, size, dtype, count);
    if (::testing::Test::HasFatalFailure()) return;
  }
  std::vector<int64_t> small(size);
  std::vector<int64_t> large(size);
  for (int r = 0; r < size; ++r) {
    small[r] = r == 1 ? 0 : 1 + 17 * r;
    large[r] = 250001 + 3 * r;
  }
  for (const std::vector<int64_t>& bytes : {small, large}) {
    CheckAllgatherv(backend, rank, size, bytes);
    if (::testing::Test::HasFatalFailure()) return;
  }
  for (int root = 0; root < size; ++root) {
    for (int64_t bytes : {int64_t{0}, int64_t{1}, int64_t{300007}}) {
      CheckBroadcast(backend, rank, root, bytes);
      if (::testing::Test::HasFatalFailure()) return;
    }
  }
  CheckAlltoallv(backend, rank, size);
  if (::testing::Test::HasFatalFailure()) return;
  std::vector<int64_t> counts(size);
  for (int r = 0; r < size; ++r) counts[r] = r == 0 ? 0 : 1000 * r + 3;
  for (auto [dtype, op] : {std::pair{DataType::kFloat32, ReduceOp::kSum},
                           std::pair{DataType::kInt64, ReduceOp::kMax},
                           std::pair{DataType::kBfloat16, ReduceOp::kSum},
                           std::pair{DataType::kFloat64, ReduceOp::kAverage},
                           std::pair{DataType::kUint8, ReduceOp::kMin}}) {
    CheckReduceScatter(backend, rank, size, dtype, op, counts);
    if (::testing::Test::HasFatalFailure()) return;
  }
  const Status s = backend->Barrier();
  ASSERT_TRUE(s.ok()) << "barrier: " << s;
}

bool AllreduceSumIsRight(Backend* backend, int rank, int size, int64_t count) {
  std::vector<float> data(count);
  for (int64_t i = 0; i < count; ++i)
    data[i] = static_cast<float>(rank + i % 7);
  ReductionSpec spec;
  const Status s = backend->Allreduce(data.data(), count, spec);
  if (!s.ok()) {
    ADD_FAILURE() << "allreduce on rank " << rank << ": " << s;
    return false;
  }
  const float rank_sum = static_cast<float>(size * (size - 1) / 2);
  for (int64_t i = 0; i < count; ++i) {
    const float expected = rank_sum + size * static_cast<float>(i % 7);
    if (data[i] != expected) {
      ADD_FAILURE() << "allreduce on rank " << rank << ": element " << i
                    << " expected " << expected << ", got " << data[i];
      return false;
    }
  }
  return true;
}

}  // namespace kolo::testing
