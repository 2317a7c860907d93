// Implementation of the worker's state machine.
#include "runtime/core/worker.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"

namespace kolo {

Worker::Worker(const Config& config, absl::Time now)
    : config_(config),
      cache_(config.cache_capacity),
      last_heard_(now),
      last_request_sent_(now) {
  SetCycle(config.cycle_time_ms);
}

void Worker::SetCycle(double milliseconds) {
  cycle_ = std::max(absl::Milliseconds(milliseconds), kMinPoll);
}

RequestList Worker::MakeRequestList(std::vector<Request> fresh, bool shutdown,
                                    bool goodbye, int64_t* cache_hits) {
  RequestList list;
  list.rank = config_.rank;
  list.applied_seq = applied_seq_;
  list.shutdown = shutdown;
  list.goodbye = goodbye;
  for (Request& request : fresh) {
    const int32_t slot = cache_.Find(request.name);
    if (slot >= 0 && cache_.Matches(slot, request)) {
      list.cache_slots.push_back(slot);
      if (cache_hits != nullptr) ++*cache_hits;
    } else {
      list.requests.push_back(std::move(request));
    }
  }
  return list;
}

bool Worker::ShouldSend(absl::Time now, bool something_to_say) const {
  return something_to_say || now - last_request_sent_ >= kHeartbeat;
}

Status Worker::BeginList(ResponseList& list) {
  if (list.cycle_time_ms > 0) SetCycle(list.cycle_time_ms);
  for (Response& response : list.responses) {
    for (ResponseTensor& tensor : response.tensors) {
      if (Status s = cache_.Follow(tensor, response.splits, list.seq,
                                   /*fill=*/true);
          !s.ok()) {
        return s;
      }
    }
  }
  return absl::OkStatus();
}

Status Worker::Admit(const Response& response,
                     const std::vector<bool>& present) const {
  if (response.error_code != 0) {
    return Status(static_cast<absl::StatusCode>(response.error_code),
                  response.error_message);
  }
  // After a collective failed, nothing more may run: the data plane is in
  // an unknown state (a shared-memory barrier the failed collective left
  // counts this rank as arrived, so the next one would pass without its
  // peers and reduce stale slots), and a peer that still waits must get an
  // error, not bytes of another collective. The chaos soak once saw exactly
  // that: survivors of a SIGKILL on the other host returned a wrong value as
  // success.
  if (!abort_status_.ok()) return abort_status_;
  const bool zeros_allowed = response.op == OpType::kAllreduce;
  for (size_t i = 0; i < present.size(); ++i) {
    if (!present[i] && !zeros_allowed && response.op != OpType::kJoin) {
      return absl::InternalError(absl::StrCat(
          "rank ", config_.rank, " was told to run ", OpTypeName(response.op),
          " '",
          i < response.tensors.size() ? response.tensors[i].request.name : "",
          "', which it has not submitted"));
    }
  }
  return absl::OkStatus();
}

Status Worker::AbortedBy(int rank, const Response& response,
                         const Status& failure, const char* where, bool* own) {
  *own = failure.code() != absl::StatusCode::kAborted;
  if (!*own) return failure;
  return absl::AbortedError(absl::StrCat(
      "rank ", rank, " could not run ",
      response.tensors.empty()
          ? std::string("an operation")
          : absl::StrCat(OpTypeName(response.op), " '",
                         response.tensors.front().request.name, "'"),
      where, ": ", failure.message(),
      "; the job stops, since no rank may finish an operation that a peer "
      "did not execute"));
}

Status Worker::Fail(const Response& response, const Status& failure,
                    bool* tell_peers) {
  *tell_peers = false;
  // The coordinator failed it on every rank; nobody waits for this one.
  if (response.error_code != 0) return failure;
  // Peers run (or wait in) the same collective: a rank that cannot finish
  // it must not leave them waiting, nor let any of them report success for
  // an operation it did not execute.
  const Status aborted =
      AbortedBy(config_.rank, response, failure, "", tell_peers);
  Abort(aborted);
  return aborted;
}

void Worker::EndList(const ResponseList& list, bool executed, absl::Time now) {
  applied_seq_ = list.seq;
  if (executed) last_heard_ = now;
  if (!list.abort_message.empty()) {
    Abort(absl::AbortedError(list.abort_message));
  }
  if (list.shutdown) {
    stopping_ = true;
    shutdown_rank_ = list.shutdown_rank;
  }
}

void Worker::CheckCoordinator(absl::Time now) {
  const double timeout = config_.peer_timeout_seconds;
  const double silent = absl::ToDoubleSeconds(now - last_heard_);
  if (timeout > 0 && silent > timeout) {
    Abort(absl::AbortedError(absl::StrCat(
        "rank 0 (the coordinator) stopped responding (no message for ",
        static_cast<int>(silent), " s; KOLO_PEER_TIMEOUT_SECONDS=", timeout,
        "): it has probably died")));
  }
}

void Worker::Abort(const Status& status) {
  if (abort_status_.ok()) abort_status_ = status;
  stopping_ = true;
}

absl::Duration Worker::NextSleep(absl::Time now, const Turn& turn) {
  if (turn.activity || turn.rang) {
    poll_ = kMinPoll;
    look_until_ = now + 2 * cycle_;
  } else {
    poll_ = std::min(poll_ * 2, cycle_);
  }
  absl::Duration sleep = turn.reliable_bell ? kBellTimeout : kIdlePoll;
  if (turn.waiting || turn.sending || now < look_until_) sleep = poll_;
  // Fast work nobody waits for yet: look at it every cycle.
  if (turn.fast_pending) sleep = std::min(sleep, cycle_);
  if (turn.lane_deferred) sleep = std::min(sleep, kBackgroundDefer);
  return sleep;
}

}  // namespace kolo
