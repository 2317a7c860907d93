// Worker: one rank's side of negotiation, the twin of Coordinator. A pure
// state machine (no MPI, no threads, no clock of its own: callers pass the
// time), so that the whole negotiation path, a Coordinator and N Workers,
// runs in one test process (tests/runtime/unit/worker_test.cc).
//
// It
// - turns this rank's new submissions into request lists: a response-cache
//   bit for a tensor submitted exactly so before, the full request
//   otherwise;
// - replays each response list's cache annotations exactly as the
//   coordinator made them (ResponseCache::Follow, the rule both sides call),
//   filling in the cached tensors' requests;
// - decides the status each agreed response starts with on this rank, and
//   what a failure means for the job;
// - keeps the rank's life cycle:
//     running -> stopping  a response list shuts the job down (requested by
//                          shutdown_rank()) or aborts it (abort_status());
//     running -> aborted   a failure on this rank (a collective that failed,
//                          an internal error, a silent coordinator): every
//                          later response fails with abort_status() and
//                          nothing runs, not even the rest of the list;
//   and, on rank 0 after a shutdown, the workers' goodbyes;
// - paces the runtime's loop: when to send (a heartbeat every half second
//   with nothing to say), whether a message is probably on its way, and how
//   long the background thread may sleep on its doorbell.
//
// Runtime (runtime.h) is the loop that moves messages and time between the
// Coordinator, this Worker, the executors and the transports.
#ifndef KOLO_RUNTIME_CORE_WORKER_H_
#define KOLO_RUNTIME_CORE_WORKER_H_

#include <cstdint>
#include <vector>

#include "absl/time/time.h"
#include "kolo/status.h"
#include "runtime/core/response_cache.h"
#include "runtime/wire/message.h"

namespace kolo {

// The loop's timing.
// Shortest and longest sleep while an answer is awaited (the longest is the
// cycle time, KOLO_CYCLE_TIME_MS or what autotune chose).
inline constexpr absl::Duration kMinPoll = absl::Microseconds(20);
// Idle sleep when the doorbell may miss a ring (across hosts, or lossy).
inline constexpr absl::Duration kIdlePoll = absl::Milliseconds(10);
// Idle sleep with a reliable shared doorbell: heartbeats and stall checks.
inline constexpr absl::Duration kBellTimeout = absl::Milliseconds(100);
// A rank with nothing to say sends an empty list this often.
inline constexpr absl::Duration kHeartbeat = absl::Milliseconds(500);
// How long the background thread leaves a ready fast collective to the
// application's thread before it runs it itself.
inline constexpr absl::Duration kBackgroundDefer = absl::Microseconds(200);

class Worker {
 public:
  struct Config {
    int rank = 0;
    int size = 1;
    int64_t cache_capacity = 1024;
    // Rank 0 silent for longer aborts the job (0: never).
    double peer_timeout_seconds = 5;
    double cycle_time_ms = 1;
  };
  // `now`: when the runtime started (the coordinator counts as heard).
  Worker(const Config& config, absl::Time now);

  int rank() const { return config_.rank; }

  // ---- Requests ----
  // This rank's request list for `fresh` submissions. *cache_hits (may be
  // null) counts the tensors sent as cache bits.
  RequestList MakeRequestList(std::vector<Request> fresh, bool shutdown,
                              bool goodbye, int64_t* cache_hits = nullptr);
  // Whether the loop sends a request list now: it has something to say, or
  // a heartbeat is due. RequestsSent() records a send.
  bool ShouldSend(absl::Time now, bool something_to_say) const;
  void RequestsSent(absl::Time now) { last_request_sent_ = now; }

  // ---- Response lists ----
  // Starts applying `list` (lists arrive in sequence order): adopts its
  // cycle time and replays its cache annotations. Internal error for a
  // corrupt list (a cached tensor in an empty slot): the job cannot go on.
  Status BeginList(ResponseList& list);
  // The status `response` starts with on this rank: the coordinator's error
  // (the response failed on every rank: its entries complete with it and
  // the job goes on), the abort in force, or Internal when this rank was
  // told to run a tensor it never submitted (present[i]: whether it has
  // response.tensors[i] pending; an allreduce may miss it: this rank joined
  // and contributes zeros). OK: it may run.
  Status Admit(const Response& response,
               const std::vector<bool>& present) const;
  // `response` ended on this rank with `failure` (from Admit or from
  // running it). A coordinator's error response changes nothing and is
  // returned as it is. Anything else ends the job: returns the Aborted
  // status its entries and everything after complete with, and sets
  // *tell_peers when the failure is this rank's own (not already a peer's
  // Aborted), so that peers waiting for it in the data plane are released.
  Status Fail(const Response& response, const Status& failure,
              bool* tell_peers);
  // The Aborted status a failure of `response` on `rank` becomes (`where`:
  // "" or " from the fast lane"); *own: the failure is the rank's own. For
  // any thread (the fast lane fails on the application's).
  static Status AbortedBy(int rank, const Response& response,
                          const Status& failure, const char* where, bool* own);
  // Ends applying `list`: it is applied; `executed`: collectives ran, during
  // which nobody could talk (the coordinator's silence is excused); the
  // list's abort or shutdown takes effect.
  void EndList(const ResponseList& list, bool executed, absl::Time now);
  uint64_t applied_seq() const { return applied_seq_; }

  // ---- Life cycle ----
  // A message from the coordinator arrived.
  void Heard(absl::Time now) { last_heard_ = now; }
  // Workers: aborts when rank 0 has been silent longer than the peer
  // timeout (it has probably died).
  void CheckCoordinator(absl::Time now);
  // This rank cannot go on (an internal failure, a failed fast collective).
  // The first abort stands.
  void Abort(const Status& status);
  bool stopping() const { return stopping_; }
  bool aborted() const { return !abort_status_.ok(); }
  const Status& abort_status() const { return abort_status_; }
  // The rank that asked for the shutdown, or -1.
  int shutdown_rank() const { return shutdown_rank_; }
  // Rank 0 after a shutdown: a worker stopped talking.
  void GoodbyeReceived() { ++goodbyes_; }
  int goodbyes() const { return goodbyes_; }
  bool AllSaidGoodbye() const { return goodbyes_ >= config_.size - 1; }

  // ---- Pace ----
  absl::Duration cycle() const { return cycle_; }
  void SetCycle(double milliseconds);
  // Whether a message is probably on its way: the doorbell rang since the
  // last turn (`rang`), or there was traffic recently.
  bool Expecting(absl::Time now, bool rang) const {
    return rang || now < look_until_;
  }
  // What the loop saw in the turn that just ended.
  struct Turn {
    bool activity = false;       // something was sent, received or run
    bool rang = false;           // the doorbell rang during the turn
    bool waiting = false;        // operations await an answer
    bool sending = false;        // the control plane has sends in flight
    bool fast_pending = false;   // fast submissions nobody waits for yet
    bool lane_deferred = false;  // a ready fast collective is left to the
                                 // application's thread
    bool reliable_bell = false;  // a shared doorbell that misses no ring
  };
  // How long the loop sleeps on its doorbell after `turn` (woken early by
  // a ring). An answer awaited: from kMinPoll, doubling to the cycle time,
  // back to kMinPoll after activity; idle: kBellTimeout with a reliable
  // bell, kIdlePoll without. A message rung for may take a few progress
  // rounds to become visible to MPI, so after activity or a ring the loop
  // keeps looking every poll interval for two cycles.
  absl::Duration NextSleep(absl::Time now, const Turn& turn);

 private:
  const Config config_;
  ResponseCache cache_;  // this rank's copy
  uint64_t applied_seq_ = 0;
  bool stopping_ = false;
  Status abort_status_;
  int shutdown_rank_ = -1;
  int goodbyes_ = 0;
  absl::Time last_heard_;
  absl::Time last_request_sent_;
  absl::Duration cycle_;
  absl::Duration poll_ = kMinPoll;
  absl::Time look_until_ = absl::InfinitePast();
};

}  // namespace kolo

#endif  // KOLO_RUNTIME_CORE_WORKER_H_
