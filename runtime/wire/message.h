// In-memory forms of the negotiation messages in runtime/wire/messages.proto.
// runtime/wire/codec.h converts them to and from bytes, validating what
// arrives from peers.
#ifndef KOLO_RUNTIME_WIRE_MESSAGE_H_
#define KOLO_RUNTIME_WIRE_MESSAGE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "kolo/types.h"

namespace kolo {

enum class OpType : int {
  kAllreduce = 0,
  kAllgather = 1,
  kBroadcast = 2,
  kAlltoall = 3,
  kReducescatter = 4,
  kBarrier = 5,
  kJoin = 6,
};
inline constexpr int kNumOpTypes = 7;

// "allreduce", "allgather", ...
const char* OpTypeName(OpType op);

struct Request {
  int32_t rank = -1;
  OpType op = OpType::kAllreduce;
  std::string name;
  DataType dtype = DataType::kFloat32;
  std::vector<int64_t> shape;
  ReduceOp reduce_op = ReduceOp::kSum;
  int32_t root = 0;
  double prescale = 1.0;
  double postscale = 1.0;
  std::vector<int64_t> splits;
  std::string group_key;
  int32_t group_size = 0;
  Device device;
  // Allreduce scheduling hint (AllreduceOptions::priority): when ready
  // tensors carry priorities, the coordinator runs higher ones first. Not
  // part of SameAs: ranks need not agree, rank 0 uses the first rank's.
  int32_t priority = 0;

  int64_t num_elements() const;
  // Everything but the rank and the CUDA device index is equal. Each rank
  // drives its own GPU, so the index legitimately differs between ranks
  // (and a rank uses one device only); the kind must agree.
  bool SameAs(const Request& other) const;
};

struct RequestList {
  int32_t rank = 0;
  uint64_t applied_seq = 0;
  std::vector<Request> requests;
  std::vector<int32_t> cache_slots;  // set bits of cache_bits, ascending
  bool shutdown = false;
  bool goodbye = false;
};

struct ResponseTensor {
  // The agreed description (rank -1). Filled from the response cache on
  // receipt when the tensor was sent as a slot.
  Request request;
  int32_t cache_slot = -1;
  bool cached = false;
  std::vector<int64_t> first_dims;  // allgather
  // Fast lane: the fast id the coordinator gives this tensor, announced
  // with this response; -1 for none.
  int32_t fast_id = -1;
};

// Fast ids a job can hand out (FastLane::kCapacity).
inline constexpr int32_t kFastLaneCapacity = 4096;

struct Response {
  OpType op = OpType::kAllreduce;
  std::vector<ResponseTensor> tensors;
  DataType dtype = DataType::kFloat32;
  ReduceOp reduce_op = ReduceOp::kSum;
  int32_t root = 0;
  double prescale = 1.0;
  double postscale = 1.0;
  int32_t contributors = 0;
  std::vector<int64_t> splits;
  int32_t error_code = 0;
  std::string error_message;
  int32_t last_joined_rank = -1;
};

// Bytes of an ncclUniqueId (NCCL_UNIQUE_ID_BYTES), fixed by NCCL's ABI.
inline constexpr size_t kNcclUniqueIdBytes = 128;

// Whether `response` runs on CUDA tensors (then the NCCL executor runs it).
// Error responses and barriers/joins never do.
bool IsCudaResponse(const Response& response);

struct ResponseList {
  uint64_t seq = 0;
  std::vector<Response> responses;
  bool shutdown = false;
  int32_t shutdown_rank = -1;
  std::string abort_message;  // non-empty: a peer failed
  double cycle_time_ms = 0;   // non-zero: the new cycle time (autotune)
  // Non-empty (kNcclUniqueIdBytes): the ncclUniqueId of the job's NCCL
  // communicator. Rank 0 attaches it once, to the first list with a CUDA
  // response; every rank creates its communicator from it.
  std::string nccl_unique_id;
};

}  // namespace kolo

#endif  // KOLO_RUNTIME_WIRE_MESSAGE_H_
