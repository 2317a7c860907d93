// Helpers for the in-memory negotiation messages.
#include "runtime/wire/message.h"

namespace kolo {

const char* OpTypeName(OpType op) {
  switch (op) {
    case OpType::kAllreduce:
      return "allreduce";
    case OpType::kAllgather:
      return "allgather";
    case OpType::kBroadcast:
      return "broadcast";
    case OpType::kAlltoall:
      return "alltoall";
    case OpType::kReducescatter:
      return "reducescatter";
    case OpType::kBarrier:
      return "barrier";
    case OpType::kJoin:
      return "join";
  }
  return "invalid";
}

int64_t Request::num_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

bool Request::SameAs(const Request& other) const {
  return op == other.op && name == other.name && dtype == other.dtype &&
         shape == other.shape && reduce_op == other.reduce_op &&
         root == other.root && prescale == other.prescale &&
         postscale == other.postscale && splits == other.splits &&
         group_key == other.group_key && group_size == other.group_size &&
         device.kind == other.device.kind;
}

bool IsCudaResponse(const Response& response) {
  if (response.error_code != 0 || response.tensors.empty()) return false;
  switch (response.op) {
    case OpType::kAllreduce:
    case OpType::kAllgather:
    case OpType::kBroadcast:
    case OpType::kAlltoall:
    case OpType::kReducescatter:
      return response.tensors.front().request.device.kind == Device::kCuda;
    case OpType::kBarrier:
    case OpType::kJoin:
      break;
  }
  return false;
}

}  // namespace kolo
