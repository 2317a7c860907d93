// Implementation of rank 0's negotiation logic.
#include "runtime/core/coordinator.h"

#include <algorithm>
#include <climits>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/common/logging.h"
#include "runtime/core/fusion_planner.h"

namespace kolo {
namespace {

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

std::string RanksString(const std::vector<int>& ranks) {
  return absl::StrCat(ranks.size() == 1 ? "rank " : "ranks ",
                      absl::StrJoin(ranks, ", "));
}

std::string DeviceString(const Device& device) {
  return device.kind == Device::kCpu ? std::string("cpu")
                                     : absl::StrCat("cuda:", device.index);
}

// "allreduce 'grad.w': shape mismatch: rank 0 has [4, 3] but rank 2 has [4]"
std::string Mismatch(const Request& ref, int ref_rank, int rank,
                     absl::string_view what, absl::string_view ref_value,
                     absl::string_view value) {
  return absl::StrCat(OpTypeName(ref.op), " '", ref.name, "': ", what,
                      " mismatch: rank ", ref_rank, " has ", ref_value,
                      " but rank ", rank, " has ", value);
}

// Compares one rank's request with the reference rank's; "" when they agree.
std::string Compare(const Request& ref, int ref_rank, const Request& other,
                    int rank) {
  if (other.op != ref.op) {
    return absl::StrCat("tensor '", ref.name, "' was submitted as ",
                        OpTypeName(ref.op), " by rank ", ref_rank, " but as ",
                        OpTypeName(other.op), " by rank ", rank);
  }
  if (other.dtype != ref.dtype) {
    return Mismatch(ref, ref_rank, rank, "dtype", DataTypeName(ref.dtype),
                    DataTypeName(other.dtype));
  }
  // Only the kind must agree: each rank drives its own GPU.
  if (other.device.kind != ref.device.kind) {
    return Mismatch(ref, ref_rank, rank, "device", DeviceString(ref.device),
                    DeviceString(other.device));
  }
  if (other.group_key != ref.group_key || other.group_size != ref.group_size) {
    return Mismatch(
        ref, ref_rank, rank, "group",
        absl::StrCat("group of ", ref.group_size, " ('", ref.group_key, "')"),
        absl::StrCat("group of ", other.group_size, " ('", other.group_key,
                     "')"));
  }
  switch (ref.op) {
    case OpType::kAllreduce:
    case OpType::kReducescatter:
      if (other.reduce_op != ref.reduce_op) {
        return Mismatch(ref, ref_rank, rank, "reduce op",
                        ReduceOpName(ref.reduce_op),
                        ReduceOpName(other.reduce_op));
      }
      if (other.prescale != ref.prescale) {
        return Mismatch(ref, ref_rank, rank, "prescale factor",
                        absl::StrCat(ref.prescale),
                        absl::StrCat(other.prescale));
      }
      if (other.postscale != ref.postscale) {
        return Mismatch(ref, ref_rank, rank, "postscale factor",
                        absl::StrCat(ref.postscale),
                        absl::StrCat(other.postscale));
      }
      if (other.shape != ref.shape) {
        return Mismatch(ref, ref_rank, rank, "shape", ShapeString(ref.shape),
                        ShapeString(other.shape));
      }
      break;
    case OpType::kBroadcast:
      if (other.root != ref.root) {
        return Mismatch(ref, ref_rank, rank, "root rank",
                        absl::StrCat(ref.root), absl::StrCat(other.root));
      }
      if (other.shape != ref.shape) {
        return Mismatch(ref, ref_rank, rank, "shape", ShapeString(ref.shape),
                        ShapeString(other.shape));
      }
      break;
    case OpType::kAllgather:
    case OpType::kAlltoall: {
      // The first dimension may differ; the rest may not.
      const bool same_rank = other.shape.size() == ref.shape.size();
      const bool same_rest =
          same_rank && (ref.shape.empty() ||
                        std::equal(ref.shape.begin() + 1, ref.shape.end(),
                                   other.shape.begin() + 1));
      if (!same_rest) {
        return Mismatch(ref, ref_rank, rank,
                        "shape (beyond the first dimension)",
                        ShapeString(ref.shape), ShapeString(other.shape));
      }
      break;
    }
    case OpType::kBarrier:
    case OpType::kJoin:
      break;
  }
  return "";
}

}  // namespace

Coordinator::Coordinator(int size, const Options& options)
    : size_(size),
      options_(options),
      fusion_threshold_bytes_(options.fusion_threshold_bytes),
      cache_(options.cache_capacity),
      applied_seq_(size, 0),
      last_heard_(size, absl::Now()) {}

void Coordinator::ForgiveSilence(absl::Time now) {
  std::fill(last_heard_.begin(), last_heard_.end(), now);
}

Status Coordinator::HandleRequestList(const RequestList& list, absl::Time now) {
  const int rank = list.rank;
  last_heard_[rank] = std::max(last_heard_[rank], now);
  applied_seq_[rank] = std::max(applied_seq_[rank], list.applied_seq);
  if (list.shutdown && shutdown_rank_ < 0) shutdown_rank_ = rank;
  for (int32_t slot : list.cache_slots) {
    bool current = false;
    const CacheEntry* entry = cache_.Resolve(slot, list.applied_seq, &current);
    if (entry == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("rank ", rank, " referred to empty response-cache slot ",
                       slot, " (after response ", list.applied_seq, ")"));
    }
    Add(RequestForRank(*entry, rank), current ? slot : -1,
        cache_.generation(slot), now);
  }
  for (const Request& request : list.requests) {
    if (request.op != OpType::kJoin) {
      Add(request, -1, 0, now);
      continue;
    }
    joined_.insert(rank);
    last_joined_ = rank;
    if (fast_lane_) {
      // Joined ranks stop submitting: the peers' fast submissions must go
      // to the slow path, where joined ranks contribute zeros.
      fast_lane_ = false;
      lane_off_pending_ = true;
    }
    std::vector<std::string> names;
    for (const auto& [name, pending] : pending_) names.push_back(name);
    std::sort(names.begin(), names.end());  // deterministic release order
    for (const std::string& name : names) MarkReadyIfComplete(name);
    if (static_cast<int>(joined_.size()) == size_) join_complete_ = true;
  }
  return absl::OkStatus();
}

void Coordinator::Add(Request request, int32_t slot, uint64_t generation,
                      absl::Time now) {
  const std::string name = request.name;
  const int rank = request.rank;
  Pending& pending = pending_[name];
  if (pending.by_rank.empty()) {
    pending.by_rank.resize(size_);
    pending.first_seen = now;
    if (timeline_ != nullptr)
      timeline_->NegotiateStart(name, OpTypeName(request.op));
  }
  if (pending.by_rank[rank].has_value()) {
    Log().error("rank {} submitted '{}' twice; ignoring the second request",
                rank, name);
    return;
  }
  if (timeline_ != nullptr) timeline_->NegotiateRankReady(name, rank);
  if (slot < 0) {
    pending.all_cached = false;
  } else if (pending.submitted == 0) {
    pending.slot = slot;
    pending.generation = generation;
  } else if (slot != pending.slot || generation != pending.generation) {
    pending.all_cached = false;
  }
  pending.by_rank[rank] = std::move(request);
  ++pending.submitted;
  MarkReadyIfComplete(name);
}

const Request& Coordinator::FirstRequest(const Pending& pending) {
  for (const auto& request : pending.by_rank) {
    if (request.has_value()) return *request;
  }
  // Unreachable: a pending tensor has at least one request.
  std::abort();
}

std::vector<std::string> Coordinator::TakeReady() {
  std::vector<std::string> taken;
  // A ready tensor held back by an earlier list may since have failed with
  // its group (FailGroups, CheckStalls) and been forgotten.
  ready_.erase(std::remove_if(ready_.begin(), ready_.end(),
                              [&](const std::string& name) {
                                return pending_.count(name) == 0;
                              }),
               ready_.end());
  const bool prioritized =
      std::any_of(ready_.begin(), ready_.end(), [&](const std::string& name) {
        return FirstRequest(pending_.at(name)).priority != 0;
      });
  // While ranks have joined, nothing is held back: a join must not complete
  // before the allreduces that were ready ahead of it.
  if (!prioritized || !joined_.empty()) {
    taken.swap(ready_);
    return taken;
  }
  // Groups move as one: a unit is a run of ready_ sharing a group key (a
  // group enters ready_ all at once), ranked by its highest priority.
  struct Unit {
    size_t begin, end;
    int32_t priority = INT32_MIN;
    int64_t bytes = 0;
  };
  std::vector<Unit> units;
  for (size_t i = 0; i < ready_.size();) {
    const std::string& key = FirstRequest(pending_.at(ready_[i])).group_key;
    Unit unit{i, i + 1};
    while (!key.empty() && unit.end < ready_.size() &&
           FirstRequest(pending_.at(ready_[unit.end])).group_key == key) {
      ++unit.end;
    }
    for (size_t j = unit.begin; j < unit.end; ++j) {
      const Request& request = FirstRequest(pending_.at(ready_[j]));
      unit.priority = std::max(unit.priority, request.priority);
      unit.bytes += request.num_elements() * DataTypeSize(request.dtype);
    }
    units.push_back(unit);
    i = unit.end;
  }
  std::stable_sort(units.begin(), units.end(),
                   [](const Unit& a, const Unit& b) {
                     return a.priority > b.priority;
                   });
  const int64_t budget = options_.priority_cycle_bytes;
  int64_t bytes = 0;
  std::vector<std::string> rest;
  for (const Unit& unit : units) {
    const bool take =
        rest.empty() &&
        (budget == 0 || taken.empty() || bytes + unit.bytes <= budget);
    bytes += unit.bytes;
    for (size_t j = unit.begin; j < unit.end; ++j) {
      (take ? taken : rest).push_back(std::move(ready_[j]));
    }
  }
  ready_.swap(rest);
  return taken;
}

bool Coordinator::IsReady(const Pending& pending) const {
  if (pending.submitted == 0) return false;
  for (int rank = 0; rank < size_; ++rank) {
    if (!pending.by_rank[rank].has_value() && joined_.count(rank) == 0) {
      return false;
    }
  }
  return true;
}

void Coordinator::MarkReadyIfComplete(const std::string& name) {
  auto it = pending_.find(name);
  if (it == pending_.end() || !IsReady(it->second)) return;
  const Request* first = &FirstRequest(it->second);
  // A later join re-checks every pending tensor: release each only once.
  if (std::find(ready_.begin(), ready_.end(), name) != ready_.end()) return;
  // Ranks that grouped it differently never complete one group: release it
  // now, so that BuildResponse reports the mismatch.
  const bool same_group =
      std::all_of(it->second.by_rank.begin(), it->second.by_rank.end(),
                  [first](const std::optional<Request>& request) {
                    return !request.has_value() ||
                           (request->group_key == first->group_key &&
                            request->group_size == first->group_size);
                  });
  std::vector<std::string>* members = nullptr;
  if (first->group_size > 1 && same_group) {
    members = &group_ready_[first->group_key];
    if (std::find(members->begin(), members->end(), name) != members->end()) {
      return;
    }
  }
  if (timeline_ != nullptr) timeline_->NegotiateEnd(name);
  it->second.ready = true;
  if (members != nullptr) {
    members->push_back(name);
    if (static_cast<int>(members->size()) < first->group_size) return;
    std::sort(members->begin(), members->end());
    ready_.insert(ready_.end(), members->begin(), members->end());
    group_ready_.erase(first->group_key);
    return;
  }
  ready_.push_back(name);
}

Response Coordinator::BuildResponse(const std::string& name,
                                    const Pending& pending) {
  int ref_rank = 0;
  while (!pending.by_rank[ref_rank].has_value()) ++ref_rank;
  const Request& ref = *pending.by_rank[ref_rank];

  Response response;
  response.op = ref.op;
  response.dtype = ref.dtype;
  response.reduce_op = ref.reduce_op;
  response.root = ref.root;
  response.prescale = ref.prescale;
  response.postscale = ref.postscale;
  response.contributors = pending.submitted;
  ResponseTensor tensor;
  tensor.request = ref;
  tensor.request.rank = -1;

  auto fail = [&](std::string message) {
    response.error_code =
        static_cast<int>(absl::StatusCode::kFailedPrecondition);
    response.error_message = std::move(message);
    response.tensors.push_back(std::move(tensor));
    return response;
  };
  for (int rank = ref_rank + 1; rank < size_; ++rank) {
    if (!pending.by_rank[rank].has_value()) continue;
    const Request& other = *pending.by_rank[rank];
    if (other.op == ref.op && (other.group_key != ref.group_key ||
                               other.group_size != ref.group_size)) {
      return fail(absl::StrCat("grouped ", OpTypeName(ref.op), " '", name,
                               "': group mismatch: rank ", ref_rank, " ",
                               Membership(ref, ref_rank), " but rank ", rank,
                               " ", Membership(other, rank)));
    }
    std::string difference = Compare(ref, ref_rank, other, rank);
    if (!difference.empty()) return fail(std::move(difference));
  }
  if (pending.submitted < size_ && ref.op != OpType::kAllreduce) {
    std::vector<int> joined(joined_.begin(), joined_.end());
    return fail(absl::StrCat(OpTypeName(ref.op), " '", name,
                             "' cannot run while ", RanksString(joined),
                             " joined; only allreduce can"));
  }
  if (ref.op == OpType::kAllgather || ref.op == OpType::kAlltoall) {
    for (const auto& request : pending.by_rank) {
      tensor.first_dims.push_back(request->shape.empty() ? 1
                                                         : request->shape[0]);
    }
  }
  if (ref.op == OpType::kAlltoall) {
    for (const auto& request : pending.by_rank) {
      response.splits.insert(response.splits.end(), request->splits.begin(),
                             request->splits.end());
    }
  }
  response.tensors.push_back(std::move(tensor));
  return response;
}

std::string Coordinator::Membership(const Request& request, int rank) const {
  if (request.group_size == 0) return "submitted it alone (not grouped)";
  std::vector<std::string> members;
  for (const auto& [name, pending] : pending_) {
    const std::optional<Request>& member = pending.by_rank[rank];
    if (member.has_value() && member->group_key == request.group_key) {
      members.push_back(absl::StrCat("'", name, "'"));
    }
  }
  std::sort(members.begin(), members.end());
  return absl::StrCat("grouped it with ", absl::StrJoin(members, ", "));
}

void Coordinator::FailGroups(
    const absl::flat_hash_map<std::string, std::string>& failed_groups,
    std::vector<Response>* errors) {
  if (failed_groups.empty()) return;
  std::vector<std::string> names;
  for (const auto& [name, pending] : pending_) {
    for (const auto& request : pending.by_rank) {
      if (request.has_value() && failed_groups.count(request->group_key)) {
        names.push_back(name);
        break;
      }
    }
  }
  std::sort(names.begin(), names.end());  // the same order on every run
  for (const std::string& name : names) {
    const Pending& pending = pending_[name];
    const Request* ref = nullptr;
    for (const auto& request : pending.by_rank) {
      if (request.has_value() && failed_groups.count(request->group_key)) {
        ref = &*request;
        break;
      }
    }
    Response response;
    response.op = ref->op;
    response.dtype = ref->dtype;
    response.error_code =
        static_cast<int>(absl::StatusCode::kFailedPrecondition);
    response.error_message = absl::StrCat(
        "grouped ", OpTypeName(ref->op), ": '", name,
        "' fails with its group: ", failed_groups.at(ref->group_key));
    ResponseTensor tensor;
    tensor.request = *ref;
    tensor.request.rank = -1;
    response.tensors.push_back(std::move(tensor));
    errors->push_back(std::move(response));
    if (timeline_ != nullptr) timeline_->NegotiateEnd(name);
    pending_.erase(name);
  }
  for (const auto& [key, message] : failed_groups) group_ready_.erase(key);
}

void Coordinator::CheckStalls(absl::Time now, std::vector<Response>* errors) {
  const double check = options_.stall_check_seconds;
  const double shutdown = options_.stall_shutdown_seconds;
  if (pending_.empty() || (check <= 0 && shutdown <= 0)) return;
  if (now - last_stall_check_ < absl::Milliseconds(100)) return;
  last_stall_check_ = now;

  // Missing names per rank, for one warning that lists them.
  std::vector<std::vector<std::string>> missing_by_rank(size_);
  std::vector<std::string> expired;
  for (auto& [name, pending] : pending_) {
    if (pending.ready) continue;  // waits for a response list, not for ranks
    const double age = absl::ToDoubleSeconds(now - pending.first_seen);
    const bool report = check > 0 && age >= check && !pending.stall_reported;
    const bool expire = shutdown > 0 && age >= shutdown;
    if (!report && !expire) continue;
    if (report) {
      pending.stall_reported = true;
      for (int rank = 0; rank < size_; ++rank) {
        if (!pending.by_rank[rank].has_value() && joined_.count(rank) == 0) {
          missing_by_rank[rank].push_back(absl::StrCat("'", name, "'"));
        }
      }
    }
    if (expire) expired.push_back(name);
  }
  std::vector<std::string> lines;
  for (int rank = 0; rank < size_; ++rank) {
    std::sort(missing_by_rank[rank].begin(), missing_by_rank[rank].end());
    if (!missing_by_rank[rank].empty()) {
      lines.push_back(absl::StrCat("rank ", rank, " has not submitted ",
                                   absl::StrJoin(missing_by_rank[rank], ", ")));
    }
  }
  if (!lines.empty()) {
    Log().warn(
        "stalled operations: other ranks submitted these {} s ago or more; {}. "
        "They fail after KOLO_STALL_SHUTDOWN_TIME_SECONDS={} s.",
        check, absl::StrJoin(lines, "; "), shutdown);
  }
  // A stalled group member takes its whole group down with it.
  std::set<std::string> expired_groups;
  for (const std::string& name : expired) {
    const Pending& pending = pending_[name];
    for (const auto& request : pending.by_rank) {
      if (request.has_value() && !request->group_key.empty()) {
        expired_groups.insert(request->group_key);
      }
    }
  }
  for (const auto& [name, pending] : pending_) {
    for (const auto& request : pending.by_rank) {
      if (request.has_value() && expired_groups.count(request->group_key) &&
          std::find(expired.begin(), expired.end(), name) == expired.end()) {
        expired.push_back(name);
        break;
      }
    }
  }
  for (const std::string& key : expired_groups) group_ready_.erase(key);
  std::sort(expired.begin(), expired.end());
  for (const std::string& name : expired) {
    const Pending& pending = pending_[name];
    std::vector<int> submitted;
    std::vector<int> missing;
    const Request* ref = nullptr;
    for (int rank = 0; rank < size_; ++rank) {
      if (pending.by_rank[rank].has_value()) {
        submitted.push_back(rank);
        if (ref == nullptr) ref = &*pending.by_rank[rank];
      } else {
        missing.push_back(rank);
      }
    }
    Response response;
    response.op = ref->op;
    response.dtype = ref->dtype;
    response.error_code = static_cast<int>(absl::StatusCode::kDeadlineExceeded);
    response.error_message =
        missing.empty()
            ? absl::StrCat("grouped ", OpTypeName(ref->op), " '", name,
                           "' fails because another member of its group "
                           "stalled (KOLO_STALL_SHUTDOWN_TIME_SECONDS=",
                           shutdown, " s)")
            : absl::StrCat(OpTypeName(ref->op), " '", name,
                           "' stalled: submitted by ", RanksString(submitted),
                           " but not by ", RanksString(missing), " within ",
                           shutdown, " s (KOLO_STALL_SHUTDOWN_TIME_SECONDS)");
    ResponseTensor tensor;
    tensor.request = *ref;
    tensor.request.rank = -1;
    response.tensors.push_back(std::move(tensor));
    errors->push_back(std::move(response));
    if (timeline_ != nullptr && !missing.empty()) timeline_->NegotiateEnd(name);
    pending_.erase(name);
  }
}

void Coordinator::AttachNcclUniqueId(std::vector<Response>* plan,
                                     std::string* id) {
  if (nccl_unique_id_sent_) return;
  if (std::none_of(plan->begin(), plan->end(), IsCudaResponse)) return;
  Status failure;
  if (!nccl_unique_id_generator_) {
    failure = absl::FailedPreconditionError(
        "rank 0's kolo build has no NCCL backend, so it cannot create the "
        "NCCL communicator");
  } else {
    StatusOr<std::string> generated = nccl_unique_id_generator_();
    if (generated.ok() && generated->size() == kNcclUniqueIdBytes) {
      *id = *std::move(generated);
      nccl_unique_id_sent_ = true;
      return;
    }
    failure = generated.ok() ? absl::InternalError(absl::StrCat(
                                   "the NCCL unique id has ", generated->size(),
                                   " bytes, not ", kNcclUniqueIdBytes))
                             : generated.status();
  }
  // Without an id no rank can run these; the next CUDA response tries again.
  for (Response& response : *plan) {
    if (!IsCudaResponse(response)) continue;
    std::vector<std::string> names;
    for (const ResponseTensor& t : response.tensors) {
      names.push_back(absl::StrCat("'", t.request.name, "'"));
    }
    response.error_code = static_cast<int>(failure.code());
    response.error_message =
        absl::StrCat(OpTypeName(response.op), " ", absl::StrJoin(names, ", "),
                     " on CUDA: ", failure.message());
  }
}

void Coordinator::AssignFastIds(std::vector<Response>* plan) {
  if (!fast_lane_ || !joined_.empty()) return;
  for (Response& response : *plan) {
    // Every collective but barrier and join: each runs again unchanged when
    // every rank's submission hits the response cache.
    if (response.error_code != 0 || response.op == OpType::kBarrier ||
        response.op == OpType::kJoin) {
      continue;
    }
    for (ResponseTensor& tensor : response.tensors) {
      // Only tensors every rank sent as a cache bit: they repeat unchanged.
      const Request& request = tensor.request;
      if (!tensor.cached || request.device.kind != Device::kCpu ||
          request.group_size != 0 || next_fast_id_ >= kFastLaneCapacity) {
        continue;
      }
      // A changed tensor gets a new id: a different request, or (allgather,
      // alltoall) another rank's rows or splits, which the request of the
      // rank it was taken from does not show.
      CacheEntry agreed{request, tensor.first_dims,
                        response.op == OpType::kAlltoall
                            ? response.splits
                            : std::vector<int64_t>()};
      auto known = fast_requests_.find(request.name);
      if (known != fast_requests_.end() &&
          known->second.request.SameAs(request) &&
          known->second.first_dims == agreed.first_dims &&
          known->second.splits == agreed.splits) {
        continue;
      }
      tensor.fast_id = next_fast_id_++;
      fast_requests_[request.name] = std::move(agreed);
    }
  }
}

std::optional<ResponseList> Coordinator::NextResponses(absl::Time now,
                                                       bool force) {
  if (options_.peer_timeout_seconds > 0 && abort_message_.empty()) {
    for (int rank = 1; rank < size_; ++rank) {
      const double silent = absl::ToDoubleSeconds(now - last_heard_[rank]);
      if (silent > options_.peer_timeout_seconds) {
        abort_message_ = absl::StrCat(
            "rank ", rank, " stopped responding (no message for ",
            static_cast<int>(silent),
            " s; KOLO_PEER_TIMEOUT_SECONDS=", options_.peer_timeout_seconds,
            "): it has probably died");
        break;
      }
    }
  }
  if (!abort_message_.empty()) {
    ResponseList list;
    list.seq = ++seq_;
    list.abort_message = abort_message_;
    return list;
  }
  std::vector<Response> singles;
  struct CacheHint {
    int32_t slot;
    uint64_t generation;
  };
  absl::flat_hash_map<std::string, CacheHint> hints;
  absl::flat_hash_map<std::string, std::string> failed_groups;
  const std::vector<std::string> ready = TakeReady();
  for (const std::string& name : ready) {
    auto it = pending_.find(name);
    Response response = BuildResponse(name, it->second);
    if (response.error_code != 0) {
      // Every group any rank put this tensor in fails: with the groups of
      // the ranks that agreed, and those of the ranks that did not.
      for (const auto& request : it->second.by_rank) {
        if (request.has_value() && !request->group_key.empty()) {
          failed_groups.emplace(request->group_key, response.error_message);
        }
      }
    }
    if (it->second.all_cached) {
      hints[name] = {it->second.slot, it->second.generation};
    }
    singles.push_back(std::move(response));
  }
  // Only now: a group-mismatch message lists members that are ready too.
  for (const std::string& name : ready) pending_.erase(name);
  // All or nothing: one failed member fails its whole group, whether its
  // other members are ready (here) or still pending (FailGroups).
  for (Response& response : singles) {
    const Request& request = response.tensors.front().request;
    auto failed = failed_groups.find(request.group_key);
    if (response.error_code == 0 && !request.group_key.empty() &&
        failed != failed_groups.end()) {
      response.error_code =
          static_cast<int>(absl::StatusCode::kFailedPrecondition);
      response.error_message =
          absl::StrCat("grouped ", OpTypeName(request.op), ": '", request.name,
                       "' fails with its group: ", failed->second);
    }
  }
  FailGroups(failed_groups, &singles);
  CheckStalls(now, &singles);

  std::vector<Response> plan =
      PlanFusion(std::move(singles), fusion_threshold_bytes_);
  std::string nccl_unique_id;
  AttachNcclUniqueId(&plan, &nccl_unique_id);
  if (join_complete_) {
    Response join;
    join.op = OpType::kJoin;
    join.last_joined_rank = last_joined_;
    plan.push_back(std::move(join));
    join_complete_ = false;
    joined_.clear();
  }
  if (plan.empty() && !force && shutdown_rank_ < 0) return std::nullopt;

  ResponseList list;
  list.seq = ++seq_;
  for (Response& response : plan) {
    if (response.error_code != 0 || !IsCacheable(response.op)) continue;
    for (ResponseTensor& tensor : response.tensors) {
      const std::string& name = tensor.request.name;
      auto hint = hints.find(name);
      if (hint != hints.end() &&
          cache_.generation(hint->second.slot) == hint->second.generation &&
          cache_.Find(name) == hint->second.slot) {
        tensor.cached = true;
        tensor.cache_slot = hint->second.slot;
        // Cannot fail: the slot holds the name (checked above).
        cache_.Follow(tensor, response.splits, list.seq, /*fill=*/false)
            .IgnoreError();
        continue;
      }
      const int32_t slot = cache_.ChooseSlot(name);
      if (slot < 0) continue;
      const CacheEntry* existing = cache_.Get(slot);
      if (existing != nullptr && existing->request.SameAs(tensor.request) &&
          existing->first_dims == tensor.first_dims &&
          (tensor.request.op != OpType::kAlltoall ||
           existing->splits == response.splits)) {
        cache_.Touch(slot);  // already cached exactly so
        continue;
      }
      tensor.cache_slot = slot;
      // Cannot fail: a tensor not cached only fills its slot.
      cache_.Follow(tensor, response.splits, list.seq, /*fill=*/false)
          .IgnoreError();
    }
  }
  AssignFastIds(&plan);
  list.responses = std::move(plan);
  list.nccl_unique_id = std::move(nccl_unique_id);
  if (shutdown_rank_ >= 0) {
    list.shutdown = true;
    list.shutdown_rank = shutdown_rank_;
  }
  cache_.Prune(*std::min_element(applied_seq_.begin(), applied_seq_.end()));
  return list;
}

}  // namespace kolo
