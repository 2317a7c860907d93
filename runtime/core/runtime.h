// Runtime: kolo's process-wide state and its background thread.
//
// The background thread owns all communication. Each turn of its loop it
//   1. sends this rank's newly submitted requests to the coordinator (rank 0)
//      as a request list, tensors seen before as response-cache bits;
//   2. on rank 0, feeds the request lists that arrived to the Coordinator and
//      sends its response list to every rank;
//   3. applies the response lists that arrived, in order: runs each agreed
//      collective through the Executor and completes the handles (CUDA
//      tensors: queues it on the GpuExecutor, whose finisher thread
//      completes the handles when the GPU is done);
//   4. sleeps on its Doorbell until something happens. On one host, ranks
//      ring each other's bells after sending, so nobody polls: a rank sleeps
//      until its answer is there. Across hosts a rank waiting for an answer
//      sleeps in short intervals (20 us growing to KOLO_CYCLE_TIME_MS), and
//      10 ms when it has nothing pending. Waiting never spins. With nothing
//      pending, a rank sends only a heartbeat every half second.
//
// The fast lane (fast_lane.h): on one host, tensors negotiated before are
// agreed in shared memory. Then the collectives of every rank, fast ones
// and rank 0's response lists alike, run in the order of the lane's log, by
// whichever thread holds exec_mu_: usually the application's thread waiting
// for the result (HelpUntilDone), otherwise the background thread.
#ifndef KOLO_RUNTIME_CORE_RUNTIME_H_
#define KOLO_RUNTIME_CORE_RUNTIME_H_

#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "kolo/kolo.h"
#include "runtime/backend/backend.h"
#include "runtime/backend/gpu_executor.h"
#include "runtime/common/mpi_context.h"
#include "runtime/common/mutex.h"
#include "runtime/common/timeline.h"
#include "runtime/core/autotune.h"
#include "runtime/core/control_plane.h"
#include "runtime/core/coordinator.h"
#include "runtime/core/doorbell.h"
#include "runtime/core/executor.h"
#include "runtime/core/fast_lane.h"
#include "runtime/core/worker.h"
#include "runtime/op/operation.h"

namespace kolo {

class Runtime : public internal::WaitHelper,
                public std::enable_shared_from_this<Runtime> {
 public:
  static StatusOr<std::unique_ptr<Runtime>> Start(const Options& options);
  // A process set's runtime (id `process_set` > 0) on its members'
  // context: the same machinery on the set's own communicators, so the set
  // negotiates, caches and picks its data plane independently. Collective
  // over the members. Timeline and autotune stay with the global runtime.
  static StatusOr<std::unique_ptr<Runtime>> StartProcessSet(
      const Options& options, std::unique_ptr<MpiContext> mpi, int process_set);
  // Shuts down (if not done yet) and releases MPI.
  ~Runtime();

  const MpiContext& mpi() const { return *mpi_; }
  const Options& options() const { return options_; }
  const char* backend_name() const { return backend_->name(); }
  // 0 for the global runtime.
  int process_set() const { return process_set_; }
  // Numbers this rank's barriers in this runtime (every rank counts alike).
  int64_t NextBarrier() { return barriers_.fetch_add(1); }

  // Queues the entries of one operation: all of them, or none with an error
  // (InvalidArgument for a name already pending, Cancelled after shutdown).
  Status Enqueue(std::vector<Entry> entries);
  // Asks every rank to stop and waits for this rank's background thread.
  void Shutdown();
  RuntimeStats stats() const;
  // internal::WaitHelper: consumes the fast lane on the calling thread.
  void HelpUntilDone(const internal::Operation& operation) override;
  void HelpOnce() override;
  // Background thread, holding exec_mu_: whether it should run the lane's
  // ready entries now (see kBackgroundDefer).
  bool BackgroundTakesLane();
  // Rank 0 writes the timeline; elsewhere these do nothing.
  Status StartTimeline(const std::string& path, bool mark_cycles);
  void StopTimeline() { timeline_.Stop(); }

 private:
  explicit Runtime(const Options& options);
  static StatusOr<std::unique_ptr<Runtime>> Launch(
      const Options& options, std::unique_ptr<MpiContext> mpi, int process_set);
  // Enqueue() without waking the background thread.
  // *all_fast: whether every entry went into the fast lane.
  Status Queue(std::vector<Entry> entries, bool* all_fast);

  void Loop();
  // Sets this thread's nice value to KOLO_THREAD_NICE where permitted.
  void ApplyThreadNice();
  // Sends this rank's request list (rank 0: hands it to the coordinator).
  Status SendRequests(std::vector<Request> fresh, bool shutdown, bool goodbye);
  // Moves negotiation messages along and rings the bells of the ranks whose
  // messages were delivered.
  Status PumpAndRing();
  void RingDelivered(std::vector<int>& delivered);
  // Rank 0: takes the request lists that arrived and answers.
  Status Coordinate(absl::Time now, bool* activity);
  // Applies the response lists that arrived (workers).
  Status ReceiveResponses(bool* activity);
  // Queues a CUDA response on the GPU executor (which takes the entries).
  Status ExecuteOnGpu(const Response& response, std::vector<Entry>& entries,
                      std::vector<bool>& present);
  // Runs one response list through the worker (worker.h: the cache replay,
  // each response's status, the list's shutdown or abort) and the
  // executors. Adds the tensors and bytes it executed to *tensors and
  // *bytes when given.
  Status Apply(ResponseList& list, int64_t* tensors = nullptr,
               int64_t* bytes = nullptr);
  // Fast lane: remembers the fast ids `response` announces for the tensors
  // this rank has pending.
  void RecordFastIds(const Response& response);
  // Fast lane. Makes `entry` a fast submission when its tensor has a fast
  // id and is unchanged; otherwise it stays on the slow path.
  void ArriveFast(Entry& entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Executes log entries in order while they can run on this
  // thread; only the background thread applies response lists. True when
  // it consumed anything.
  // *status: a failure applying a response list (background thread).
  bool ConsumeLane(bool background, Status* status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(exec_mu_);
  // Runs the fast executions [begin, end) of the log, fused as planned.
  void ExecuteFast(uint64_t begin, uint64_t end)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(exec_mu_);
  // Runs one planned collective of a fast batch and completes its entries.
  // *problem: the batch's first failure (later collectives fail with it).
  void RunFast(const Response& response, std::vector<Entry>& entries,
               Status& problem) ABSL_EXCLUSIVE_LOCKS_REQUIRED(exec_mu_);
  // Moves this rank's submission of `id` (at `instance`) to the slow path.
  void MoveToSlowPath(int32_t id, uint32_t instance)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Withdraws every fast submission that has waited longer than `age_ns`
  // (all of them for the lane's "off") and sends it the slow way.
  void WithdrawFast(int64_t age_ns) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A response list: applied now, or held until its turn in the lane's log.
  Status Receive(ResponseList list);
  // Rank 0: appends the held lists whose sends have completed to the
  // lane's log (no worker may need rank 0's help to read a list whose
  // collectives it reaches); fails when delivery takes too long.
  Status AppendDelivered();
  // Applies held lists up to `seq` and the empty ones right after it.
  Status ApplyHeld(uint64_t seq);
  // Apply() plus rank 0's bookkeeping (autotune).
  Status ApplyList(ResponseList& list);
  // A fast collective failed on this rank: ends the job (from any thread)
  // and returns the Aborted status its operations fail with.
  Status FailFast(const Response& response, const Status& failure);

  // Fails everything pending and refuses new work with `status`.
  void Stop(const Status& status);
  // After a shutdown: lets every rank finish talking before MPI is released.
  void SayGoodbye();

  const Options options_;
  int process_set_ = 0;
  std::atomic<int64_t> barriers_{0};
  std::unique_ptr<MpiContext> mpi_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Executor> executor_;
  std::unique_ptr<GpuExecutor> gpu_;  // CUDA tensors; null without NCCL
  std::unique_ptr<ControlPlane> control_;
  std::unique_ptr<Coordinator> coordinator_;  // rank 0 only
  std::unique_ptr<Doorbell> bell_;
  std::unique_ptr<Autotuner> autotuner_;  // rank 0, with KOLO_AUTOTUNE=1
  // Background thread: this rank's negotiation state, life cycle and pace.
  std::unique_ptr<Worker> worker_;
  // The rest of what only the background thread touches (Launch sets it
  // up before the thread starts).
  struct BackgroundThreadState {
    // A negotiation message is probably on its way.
    bool expecting = false;
    // Rank 0: the cycle time autotune chose that it has yet to announce.
    double announced_cycle_ms = 0;
    absl::Time last_response_sent = absl::InfinitePast();  // rank 0
    // Fast lane: response lists waiting for their turn in the log.
    std::map<uint64_t, ResponseList> held;
    // Fast lane: the ready collective this thread is leaving to the
    // application's thread, since when, and whether it is leaving one now.
    uint64_t deferred_head = ~uint64_t{0};
    int64_t deferred_since_ns = 0;
    bool lane_deferred = false;
    // Rank 0: held lists not yet delivered to every worker, and since when.
    std::deque<std::pair<uint64_t, absl::Time>> undelivered;
    absl::Time last_fast_check = absl::InfinitePast();
  };
  BackgroundThreadState loop_;
  Timeline timeline_;
  // The job ended with an abort: MPI is left alone at exit.
  std::atomic<bool> aborted_{false};
  std::thread thread_;

  mutable Mutex mu_;
  absl::flat_hash_map<std::string, Entry> table_ ABSL_GUARDED_BY(mu_);
  std::vector<Request> fresh_ ABSL_GUARDED_BY(mu_);
  bool shutdown_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool shutdown_sent_ ABSL_GUARDED_BY(mu_) = false;
  Status stopped_ ABSL_GUARDED_BY(mu_);  // non-OK once the loop has ended

  std::atomic<int64_t> operations_enqueued_{0};
  std::atomic<int64_t> operations_completed_{0};
  std::atomic<int64_t> collectives_executed_{0};
  std::atomic<int64_t> tensors_fused_{0};
  std::atomic<int64_t> cache_hits_{0};
  std::atomic<int64_t> negotiation_messages_{0};
  std::atomic<int64_t> last_execution_start_ns_{0};
  std::atomic<int64_t> fast_operations_{0};

  // ---- Fast lane ----
  // Null unless every rank is on one host, with the shared-memory plane.
  std::unique_ptr<FastLane> lane_;
  // Whoever holds it runs collectives (in the lane's log order).
  Mutex exec_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  // What a fast id stands for on this rank: its own request (a later
  // submission must equal it) and the agreed response (how it runs).
  struct FastTensor {
    std::string name;
    Request own;
    std::shared_ptr<const Response> agreed;
  };
  std::vector<FastTensor> fast_tensors_ ABSL_GUARDED_BY(mu_);  // index = id
  absl::flat_hash_map<std::string, int32_t> fast_ids_ ABSL_GUARDED_BY(mu_);
  int64_t fast_pending_ ABSL_GUARDED_BY(mu_) = 0;
  bool lane_off_ ABSL_GUARDED_BY(mu_) = false;
  // A fast collective failed on an application thread: the background
  // thread ends the job with it.
  Status lane_failure_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> lane_closed_{false};
};

}  // namespace kolo

#endif  // KOLO_RUNTIME_CORE_RUNTIME_H_
