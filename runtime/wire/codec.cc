// Protobuf-backed implementation of the wire codec.
#include "runtime/wire/codec.h"

#include "absl/strings/str_cat.h"
#include "runtime/wire/messages.pb.h"

namespace kolo {
namespace {

Status Invalid(absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("malformed negotiation message: ", what));
}

void ToProto(const Request& in, wire::Request* out) {
  out->set_rank(in.rank);
  out->set_op(static_cast<int>(in.op));
  out->set_name(in.name);
  out->set_dtype(static_cast<int>(in.dtype));
  for (int64_t d : in.shape) out->add_shape(d);
  out->set_reduce_op(static_cast<int>(in.reduce_op));
  out->set_root(in.root);
  out->set_prescale(in.prescale);
  out->set_postscale(in.postscale);
  for (int64_t s : in.splits) out->add_splits(s);
  out->set_group_key(in.group_key);
  out->set_group_size(in.group_size);
  out->set_device_kind(static_cast<int>(in.device.kind));
  out->set_device_index(in.device.index);
  out->set_priority(in.priority);
}

StatusOr<Request> FromProto(const wire::Request& in, const WireLimits& limits,
                            bool rank_required) {
  Request out;
  if (rank_required ? (in.rank() < 0 || in.rank() >= limits.world_size)
                    : in.rank() != -1) {
    return Invalid(absl::StrCat("request rank ", in.rank()));
  }
  out.rank = in.rank();
  if (in.op() < 0 || in.op() >= kNumOpTypes) {
    return Invalid(absl::StrCat("operation ", in.op()));
  }
  out.op = static_cast<OpType>(in.op());
  if (in.name().empty() || in.name().size() > kMaxNameBytes) {
    return Invalid("tensor name empty or too long");
  }
  out.name = in.name();
  if (!IsValidDataType(in.dtype())) {
    return Invalid(absl::StrCat("dtype ", in.dtype()));
  }
  out.dtype = static_cast<DataType>(in.dtype());
  if (in.shape_size() > kMaxDims) return Invalid("too many dimensions");
  for (int64_t d : in.shape()) {
    if (d < 0) return Invalid(absl::StrCat("negative dimension ", d));
    out.shape.push_back(d);
  }
  if (!IsValidReduceOp(in.reduce_op())) {
    return Invalid(absl::StrCat("reduce op ", in.reduce_op()));
  }
  out.reduce_op = static_cast<ReduceOp>(in.reduce_op());
  if (in.root() < 0 || in.root() >= limits.world_size) {
    return Invalid(absl::StrCat("root rank ", in.root()));
  }
  out.root = in.root();
  out.prescale = in.prescale();
  out.postscale = in.postscale();
  out.priority = in.priority();
  if (in.splits_size() > limits.world_size) return Invalid("too many splits");
  for (int64_t s : in.splits()) {
    if (s < 0) return Invalid(absl::StrCat("negative split ", s));
    out.splits.push_back(s);
  }
  out.group_key = in.group_key();
  if (in.group_size() < 0) return Invalid("negative group size");
  out.group_size = in.group_size();
  if (in.device_kind() != Device::kCpu && in.device_kind() != Device::kCuda) {
    return Invalid(absl::StrCat("device kind ", in.device_kind()));
  }
  out.device.kind = static_cast<Device::Kind>(in.device_kind());
  out.device.index = in.device_index();
  return out;
}

Status CheckSlot(int64_t slot, const WireLimits& limits) {
  if (slot < 0 || slot >= limits.cache_capacity) {
    return Invalid(absl::StrCat("cache slot ", slot));
  }
  return absl::OkStatus();
}

}  // namespace

std::string EncodeRequestList(const RequestList& list) {
  wire::RequestList proto;
  proto.set_rank(list.rank);
  proto.set_applied_seq(list.applied_seq);
  for (const Request& r : list.requests) ToProto(r, proto.add_requests());
  if (!list.cache_slots.empty()) {
    int32_t highest = 0;
    for (int32_t slot : list.cache_slots) highest = std::max(highest, slot);
    std::string bits(highest / 8 + 1, '\0');
    for (int32_t slot : list.cache_slots) {
      bits[slot / 8] = static_cast<char>(bits[slot / 8] | (1 << (slot % 8)));
    }
    proto.set_cache_bits(std::move(bits));
  }
  proto.set_shutdown(list.shutdown);
  proto.set_goodbye(list.goodbye);
  return proto.SerializeAsString();
}

StatusOr<RequestList> DecodeRequestList(absl::string_view bytes,
                                        const WireLimits& limits) {
  wire::RequestList proto;
  if (!proto.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return Invalid("request list does not parse");
  }
  RequestList list;
  if (proto.rank() < 0 || proto.rank() >= limits.world_size) {
    return Invalid(absl::StrCat("request list rank ", proto.rank()));
  }
  list.rank = proto.rank();
  list.applied_seq = proto.applied_seq();
  for (const wire::Request& r : proto.requests()) {
    StatusOr<Request> request = FromProto(r, limits, /*rank_required=*/true);
    if (!request.ok()) return request.status();
    if (request->rank != list.rank) {
      return Invalid("request rank differs from its list's rank");
    }
    list.requests.push_back(*std::move(request));
  }
  const std::string& bits = proto.cache_bits();
  for (size_t byte = 0; byte < bits.size(); ++byte) {
    for (int bit = 0; bit < 8; ++bit) {
      if ((static_cast<unsigned char>(bits[byte]) >> bit) & 1) {
        const int64_t slot = static_cast<int64_t>(byte) * 8 + bit;
        if (Status s = CheckSlot(slot, limits); !s.ok()) return s;
        list.cache_slots.push_back(static_cast<int32_t>(slot));
      }
    }
  }
  list.shutdown = proto.shutdown();
  list.goodbye = proto.goodbye();
  return list;
}

std::string EncodeResponseList(const ResponseList& list) {
  wire::ResponseList proto;
  proto.set_seq(list.seq);
  for (const Response& r : list.responses) {
    wire::Response* out = proto.add_responses();
    out->set_op(static_cast<int>(r.op));
    for (const ResponseTensor& t : r.tensors) {
      wire::ResponseTensor* tensor = out->add_tensors();
      tensor->set_cache_slot(t.cache_slot);
      tensor->set_cached(t.cached);
      tensor->set_fast_id(t.fast_id + 1);
      if (!t.cached) {
        ToProto(t.request, tensor->mutable_request());
        for (int64_t d : t.first_dims) tensor->add_first_dims(d);
      }
    }
    out->set_dtype(static_cast<int>(r.dtype));
    out->set_reduce_op(static_cast<int>(r.reduce_op));
    out->set_root(r.root);
    out->set_prescale(r.prescale);
    out->set_postscale(r.postscale);
    out->set_contributors(r.contributors);
    for (int64_t s : r.splits) out->add_splits(s);
    out->set_error_code(r.error_code);
    out->set_error_message(r.error_message);
    out->set_last_joined_rank(r.last_joined_rank);
  }
  proto.set_shutdown(list.shutdown);
  proto.set_shutdown_rank(list.shutdown_rank);
  proto.set_abort_message(list.abort_message);
  proto.set_cycle_time_ms(list.cycle_time_ms);
  proto.set_nccl_unique_id(list.nccl_unique_id);
  return proto.SerializeAsString();
}

StatusOr<ResponseList> DecodeResponseList(absl::string_view bytes,
                                          const WireLimits& limits) {
  wire::ResponseList proto;
  if (!proto.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return Invalid("response list does not parse");
  }
  ResponseList list;
  list.seq = proto.seq();
  for (const wire::Response& in : proto.responses()) {
    Response r;
    if (in.op() < 0 || in.op() >= kNumOpTypes) {
      return Invalid(absl::StrCat("response operation ", in.op()));
    }
    r.op = static_cast<OpType>(in.op());
    for (const wire::ResponseTensor& t : in.tensors()) {
      ResponseTensor tensor;
      tensor.cached = t.cached();
      tensor.cache_slot = t.cache_slot();
      if (t.fast_id() < 0 || t.fast_id() > kFastLaneCapacity) {
        return Invalid(absl::StrCat("fast id ", t.fast_id() - 1));
      }
      tensor.fast_id = t.fast_id() - 1;
      if (tensor.cached || tensor.cache_slot != -1) {
        if (Status s = CheckSlot(tensor.cache_slot, limits); !s.ok()) return s;
      }
      if (!tensor.cached) {
        StatusOr<Request> request =
            FromProto(t.request(), limits, /*rank_required=*/false);
        if (!request.ok()) return request.status();
        tensor.request = *std::move(request);
        if (t.first_dims_size() > limits.world_size) {
          return Invalid("too many first dimensions");
        }
        for (int64_t d : t.first_dims()) {
          if (d < 0) return Invalid("negative first dimension");
          tensor.first_dims.push_back(d);
        }
      }
      r.tensors.push_back(std::move(tensor));
    }
    if (!IsValidDataType(in.dtype())) {
      return Invalid(absl::StrCat("response dtype ", in.dtype()));
    }
    r.dtype = static_cast<DataType>(in.dtype());
    if (!IsValidReduceOp(in.reduce_op())) {
      return Invalid(absl::StrCat("response reduce op ", in.reduce_op()));
    }
    r.reduce_op = static_cast<ReduceOp>(in.reduce_op());
    if (in.root() < 0 || in.root() >= limits.world_size) {
      return Invalid(absl::StrCat("response root ", in.root()));
    }
    r.root = in.root();
    r.prescale = in.prescale();
    r.postscale = in.postscale();
    if (in.contributors() < 0 || in.contributors() > limits.world_size) {
      return Invalid(absl::StrCat("contributors ", in.contributors()));
    }
    r.contributors = in.contributors();
    const int64_t world = limits.world_size;
    if (in.splits_size() != 0 && in.splits_size() != world * world) {
      return Invalid("alltoall split matrix has the wrong size");
    }
    for (int64_t s : in.splits()) {
      if (s < 0) return Invalid("negative alltoall split");
      r.splits.push_back(s);
    }
    if (in.error_code() < 0 || in.error_code() > 16) {
      return Invalid(absl::StrCat("error code ", in.error_code()));
    }
    r.error_code = in.error_code();
    r.error_message = in.error_message();
    if (in.last_joined_rank() < -1 ||
        in.last_joined_rank() >= limits.world_size) {
      return Invalid(absl::StrCat("last joined rank ", in.last_joined_rank()));
    }
    r.last_joined_rank = in.last_joined_rank();
    list.responses.push_back(std::move(r));
  }
  list.shutdown = proto.shutdown();
  if (proto.shutdown_rank() < -1 ||
      proto.shutdown_rank() >= limits.world_size) {
    return Invalid(absl::StrCat("shutdown rank ", proto.shutdown_rank()));
  }
  list.shutdown_rank = proto.shutdown_rank();
  list.abort_message = proto.abort_message();
  if (!(proto.cycle_time_ms() >= 0 && proto.cycle_time_ms() < 1e6)) {
    return Invalid("cycle time out of range");
  }
  list.cycle_time_ms = proto.cycle_time_ms();
  if (!proto.nccl_unique_id().empty() &&
      proto.nccl_unique_id().size() != kNcclUniqueIdBytes) {
    return Invalid(absl::StrCat("NCCL unique id of ",
                                proto.nccl_unique_id().size(),
                                " bytes (expected ", kNcclUniqueIdBytes, ")"));
  }
  list.nccl_unique_id = proto.nccl_unique_id();
  return list;
}

}  // namespace kolo
