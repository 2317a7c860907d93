// Coordinator: rank 0's negotiation logic. Pure state machine (no MPI), so it
// is unit-testable in one process.
//
// Contract:
// - Ranks may submit tensors in any order. A tensor is ready once every rank
//   that has not joined submitted its name; then its requests are validated
//   against each other and it gets one response, sent to every rank.
// - A mismatch (operation, dtype, shape, reduce op, root, scale factors,
//   group, device) yields an error response (FailedPrecondition) naming the
//   tensor, the ranks and both values; no rank hangs.
// - Grouped tensors are released together, all or nothing: when one member
//   fails, every member of its group fails, including those still pending.
//   Ranks must group the same names; a tensor that ranks put in different
//   groups (or grouped on some ranks only) fails with a message naming each
//   rank's members, and so do the groups it was in, on every rank.
// - A tensor some ranks submitted and others did not is reported after the
//   stall-check time and failed everywhere (DeadlineExceeded) after the
//   stall-shutdown time.
// - While ranks have joined, allreduces run with the joined ranks
//   contributing zeros; other operations fail (FailedPrecondition). When all
//   ranks have joined, a join response completes every rank's join.
// - A shutdown request from any rank ends the job: the next response list
//   says so, and every rank cancels what is pending.
// - Ranks must agree on the device kind (cpu or cuda) of a tensor, not on
//   the CUDA device index: each rank drives its own GPU.
// - The first response list with a CUDA response carries the job's NCCL
//   unique id (from the generator the runtime installs), exactly once; if
//   the id cannot be made, that list's CUDA responses fail instead.
// - With the fast lane on (every rank on one host), a collective of CPU
//   tensors (not grouped, not barrier or join) that ran again through the
//   response cache gets a fast id (at most kFastLaneCapacity, never reused;
//   a tensor whose request changed gets a new one), announced with the
//   response that runs it; ranks then agree on it without rank 0
//   (fast_lane.h). The first join turns the lane off for good.
// - Ready allreduces with priorities (Request::priority, the first rank's)
//   run highest first, at most priority_cycle_bytes of them per response
//   list (never splitting a group); the others stay ready for the next list
//   and are re-sorted with what became ready meanwhile. Ties keep the order
//   in which tensors became ready.
// - A rank silent for longer than the peer timeout (it sends a heartbeat
//   every half second) is taken for dead: the next response list aborts the
//   job on every rank.
#ifndef KOLO_RUNTIME_CORE_COORDINATOR_H_
#define KOLO_RUNTIME_CORE_COORDINATOR_H_

#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "kolo/options.h"
#include "runtime/common/timeline.h"
#include "runtime/core/response_cache.h"
#include "runtime/wire/message.h"

namespace kolo {

class Coordinator {
 public:
  Coordinator(int size, const Options& options);

  // Takes one rank's request list. Fails (InvalidArgument) when it refers to
  // a cache slot that holds nothing: a protocol error.
  Status HandleRequestList(const RequestList& list, absl::Time now);

  // The response list to send now, or nothing when there is nothing to say
  // and `force` (a heartbeat) is false. Assigns the list's sequence number.
  std::optional<ResponseList> NextResponses(absl::Time now, bool force);

  // Negotiation events go to this timeline (may be null).
  void set_timeline(Timeline* timeline) { timeline_ = timeline; }
  // The fusion buffer size the planner packs to (autotune changes it).
  void set_fusion_threshold(int64_t bytes) { fusion_threshold_bytes_ = bytes; }
  // Makes the ncclUniqueId (kNcclUniqueIdBytes bytes) for the first CUDA
  // response; called at most once successfully. Injected so that tests and
  // builds without CUDA need none. Without one, CUDA responses fail.
  using UniqueIdGenerator = std::function<StatusOr<std::string>()>;
  void set_nccl_unique_id_generator(UniqueIdGenerator generator) {
    nccl_unique_id_generator_ = std::move(generator);
  }
  bool shutdown_requested() const { return shutdown_rank_ >= 0; }
  // Hands out fast ids from now on (the runtime has a fast lane).
  void set_fast_lane(bool enabled) { fast_lane_ = enabled; }
  // True once after a join turned the fast lane off: the runtime tells every
  // rank (FastLane::AppendOff).
  bool TakeFastLaneOff() {
    const bool off = lane_off_pending_;
    lane_off_pending_ = false;
    return off;
  }
  // Restarts every rank's silence clock: rank 0 could not listen while it
  // ran collectives, so time spent there does not count.
  void ForgiveSilence(absl::Time now);
  // Tensors submitted by some ranks and not yet ready (for tests).
  size_t pending_count() const { return pending_.size(); }

 private:
  struct Pending {
    std::vector<std::optional<Request>> by_rank;
    int submitted = 0;
    absl::Time first_seen;
    // Every request so far arrived as a bit for this slot at this generation.
    int32_t slot = -1;
    uint64_t generation = 0;
    bool all_cached = true;
    bool stall_reported = false;
    // In ready_, waiting for a response list (not stalled).
    bool ready = false;
  };

  void Add(Request request, int32_t slot, uint64_t generation, absl::Time now);
  bool IsReady(const Pending& pending) const;
  // The ready tensors the next response list runs, taken out of ready_: all
  // of them, or with priorities (Request::priority), the highest first up
  // to options_.priority_cycle_bytes.
  std::vector<std::string> TakeReady();
  static const Request& FirstRequest(const Pending& pending);
  void MarkReadyIfComplete(const std::string& name);
  // Validates a ready tensor and builds its single-tensor response.
  Response BuildResponse(const std::string& name, const Pending& pending);
  // "grouped it with 'a', 'b'": the members `rank` grouped `request` with,
  // for a group-mismatch message.
  std::string Membership(const Request& request, int rank) const;
  // Fails (and forgets) every pending tensor that some rank submitted in one
  // of the groups of `failed_groups` (group key -> why it failed).
  void FailGroups(
      const absl::flat_hash_map<std::string, std::string>& failed_groups,
      std::vector<Response>* errors);
  void CheckStalls(absl::Time now, std::vector<Response>* errors);
  void AssignCacheSlots(std::vector<Response>* plan, uint64_t seq);
  // Sets *id when `plan` is the first with a CUDA response.
  void AttachNcclUniqueId(std::vector<Response>* plan, std::string* id);
  // Gives fast ids to the plan's tensors that qualify.
  void AssignFastIds(std::vector<Response>* plan);

  const int size_;
  const Options options_;
  Timeline* timeline_ = nullptr;
  int64_t fusion_threshold_bytes_;
  absl::flat_hash_map<std::string, Pending> pending_;
  std::vector<std::string> ready_;  // in the order they became ready
  // Ready members of groups still waiting for the rest, by group key.
  absl::flat_hash_map<std::string, std::vector<std::string>> group_ready_;
  std::set<int> joined_;
  int last_joined_ = -1;
  bool join_complete_ = false;
  ResponseCache cache_;
  std::vector<uint64_t> applied_seq_;  // per rank
  uint64_t seq_ = 0;
  int shutdown_rank_ = -1;
  std::vector<absl::Time> last_heard_;  // per rank
  std::string abort_message_;
  absl::Time last_stall_check_ = absl::InfinitePast();
  UniqueIdGenerator nccl_unique_id_generator_;
  bool nccl_unique_id_sent_ = false;
  bool fast_lane_ = false;
  bool lane_off_pending_ = false;
  int32_t next_fast_id_ = 0;
  // What each name's fast id stands for (the request, and every rank's rows
  // and splits); a name whose tensor changed for good gets a new id.
  absl::flat_hash_map<std::string, CacheEntry> fast_requests_;
};

}  // namespace kolo

#endif  // KOLO_RUNTIME_CORE_COORDINATOR_H_
