// Implementation of the runtime and its background loop.
#include "runtime/core/runtime.h"

#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "runtime/backend/factory.h"
#include "runtime/common/futex.h"
#include "runtime/common/job_secret.h"
#include "runtime/common/logging.h"
#include "runtime/core/config.h"
#include "runtime/core/fusion_planner.h"
#include "runtime/core/mpi_control_plane.h"
#include "runtime/wire/codec.h"

namespace kolo {
namespace {

constexpr absl::Duration kGoodbyeTimeout = absl::Seconds(10);
// How long rank 0 waits for workers to take a response list.
constexpr absl::Duration kDeliveryTimeout = absl::Seconds(30);
// A fast submission waiting longer for its peers goes the slow way.
constexpr int64_t kFastPatienceNs = 1'000'000'000;
// How long a thread helping in the fast lane spins before it sleeps.
constexpr auto kHelpSpin = std::chrono::microseconds(50);

void CpuRelax() {
#if defined(__x86_64__)
  _mm_pause();
#endif
}

int64_t SteadyNowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Every rank compares the settings that must agree (config.h) before any of
// them is used; a difference fails init on every rank alike.
Status AgreeOnSettings(const Options& options, const MpiContext& mpi) {
  const AgreedSettings mine = AgreedSettingsOf(options, NcclBuilt());
  std::vector<AgreedSettings> all(mpi.size());
  KOLO_MPI_RETURN_IF_ERROR(
      MPI_Allgather(&mine, sizeof(AgreedSettings), MPI_BYTE, all.data(),
                    sizeof(AgreedSettings), MPI_BYTE, mpi.data()));
  return CheckAgreement(all);
}

// Rank 0 draws the job's secret (job_secret.h) and MPI hands it to all.
StatusOr<std::string> ShareJobSecret(const MpiContext& mpi) {
  std::string secret(kJobSecretBytes, '\0');
  int ok = 1;
  if (mpi.rank() == 0) {
    StatusOr<std::string> drawn = RandomBytes(kJobSecretBytes);
    if (drawn.ok()) {
      secret = *drawn;
    } else {
      ok = 0;
    }
  }
  KOLO_MPI_RETURN_IF_ERROR(MPI_Bcast(&ok, 1, MPI_INT, 0, mpi.data()));
  if (!ok) return absl::InternalError("rank 0 could not draw the job secret");
  KOLO_MPI_RETURN_IF_ERROR(
      MPI_Bcast(secret.data(), kJobSecretBytes, MPI_BYTE, 0, mpi.data()));
  return secret;
}

// The GPU executor's configuration (builds with NCCL). Every rank reaches the
// same decisions; only MPI runs here: CUDA is first touched when a CUDA
// tensor is submitted.
StatusOr<GpuExecutorConfig> GpuConfig(const Options& options,
                                      const MpiContext& mpi,
                                      const std::string& secret) {
  GpuExecutorConfig config;
  config.rank = mpi.rank();
  config.size = mpi.size();
  config.local_rank = mpi.local_rank();
  config.local_size = mpi.local_size();
  config.fusion_threshold_bytes = options.fusion_threshold_bytes;
  config.peer_timeout_seconds = options.peer_timeout_seconds;
  int rank = mpi.rank();
  KOLO_MPI_RETURN_IF_ERROR(MPI_Allreduce(&rank, &config.host_color, 1, MPI_INT,
                                         MPI_MIN, mpi.local()));
  // Several hosts: the topology check is collective, so it runs whatever
  // this rank's KOLO_GPU_OPERATIONS says.
  if (mpi.local_size() < mpi.size()) {
    StatusOr<bool> homogeneous = Homogeneous(mpi);
    if (!homogeneous.ok()) return homogeneous.status();
    if (!*homogeneous &&
        options.gpu_operations == GpuOperations::kHierarchical) {
      return absl::FailedPreconditionError(
          "KOLO_GPU_OPERATIONS=hierarchical needs the same number of ranks "
          "on every host");
    }
    config.hierarchical =
        *homogeneous && options.gpu_operations != GpuOperations::kNccl;
  }
  config.make_cross_backend = [options, &mpi, secret]() {
    return MakeCrossBackend(options, mpi, secret);
  };
  return config;
}

}  // namespace

Runtime::Runtime(const Options& options) : options_(options) {}

StatusOr<std::unique_ptr<Runtime>> Runtime::Start(const Options& options) {
  StatusOr<std::unique_ptr<MpiContext>> mpi =
      MpiContext::Create(options.hostname);
  if (!mpi.ok()) return mpi.status();
  ConfigureLogging(options.log_level, (*mpi)->rank());
  return Launch(options, *std::move(mpi), 0);
}

StatusOr<std::unique_ptr<Runtime>> Runtime::StartProcessSet(
    const Options& options, std::unique_ptr<MpiContext> mpi, int process_set) {
  // The global runtime owns the timeline and autotunes; a process set's
  // runtime runs with the settings as configured.
  Options own = options;
  own.timeline_path.clear();
  own.autotune = false;
  return Launch(own, std::move(mpi), process_set);
}

StatusOr<std::unique_ptr<Runtime>> Runtime::Launch(
    const Options& options, std::unique_ptr<MpiContext> mpi, int process_set) {
  std::unique_ptr<Runtime> runtime(new Runtime(options));
  runtime->process_set_ = process_set;
  runtime->mpi_ = std::move(mpi);
  const MpiContext& context = *runtime->mpi_;
  Worker::Config worker;
  worker.rank = context.rank();
  worker.size = context.size();
  worker.cache_capacity = options.cache_capacity;
  worker.peer_timeout_seconds = options.peer_timeout_seconds;
  worker.cycle_time_ms = options.cycle_time_ms;
  runtime->worker_ = std::make_unique<Worker>(worker, absl::Now());
  if (Status s = AgreeOnSettings(options, context); !s.ok()) return s;
  StatusOr<std::string> secret = ShareJobSecret(context);
  if (!secret.ok()) return secret.status();

  StatusOr<std::unique_ptr<Backend>> backend =
      MakeBackend(options, context, *secret);
  if (!backend.ok()) return backend.status();
  runtime->backend_ = *std::move(backend);
  StatusOr<std::unique_ptr<Executor>> executor =
      Executor::Create(runtime->backend_.get(), context.rank(), context.size(),
                       options.fusion_threshold_bytes);
  if (!executor.ok()) return executor.status();
  runtime->executor_ = *std::move(executor);
  if (NcclBuilt()) {
    StatusOr<GpuExecutorConfig> gpu = GpuConfig(options, context, *secret);
    if (!gpu.ok()) return gpu.status();
    if (context.rank() == 0) gpu->timeline = &runtime->timeline_;
    gpu->complete = [r = runtime.get()](Entry& entry, const Status& status) {
      entry.operation->Complete(status);
      if (entry.operation->done()) {
        r->operations_completed_.fetch_add(1, std::memory_order_relaxed);
      }
    };
    runtime->gpu_ = MakeGpuExecutor(*std::move(gpu));
  }
  runtime->control_ = std::make_unique<MpiControlPlane>(context.control());
  if (context.local_size() == context.size() && context.size() > 1) {
    StatusOr<std::unique_ptr<Doorbell>> bell =
        Doorbell::CreateShared(context.local());
    if (!bell.ok()) return bell.status();
    runtime->bell_ = *std::move(bell);
  } else if (context.size() > 1) {
    StatusOr<std::unique_ptr<Doorbell>> bell = Doorbell::CreateNetworked(
        context.control(), context.hostname(), options.tcp_iface, *secret);
    if (bell.ok()) {
      runtime->bell_ = *std::move(bell);
    } else {
      // Slower (waiting ranks poll), never wrong.
      Log().warn("{}; waiting ranks will poll for messages from other hosts",
                 bell.status().ToString());
      runtime->bell_ = std::make_unique<Doorbell>();
    }
  } else {
    runtime->bell_ = std::make_unique<Doorbell>();
  }
  // The fast lane: one host, the shared-memory plane (every rank reaches the
  // same decision: the settings agree and the plane is chosen alike).
  // Autotune tunes the negotiation through rank 0, so it keeps the lane off.
  if (options.fast_lane && !options.autotune && context.size() > 1 &&
      context.local_size() == context.size() &&
      std::string(runtime->backend_->name()) == "shm") {
    Doorbell* bell = runtime->bell_.get();
    StatusOr<std::unique_ptr<FastLane>> lane = FastLane::Create(
        context.local(), [bell](int rank) { bell->Ring(rank); });
    if (!lane.ok()) return lane.status();
    runtime->lane_ = *std::move(lane);
  }
  if (context.rank() == 0) {
    runtime->coordinator_ =
        std::make_unique<Coordinator>(context.size(), options);
    runtime->coordinator_->set_timeline(&runtime->timeline_);
    runtime->coordinator_->set_fast_lane(runtime->lane_ != nullptr);
    if (runtime->gpu_ != nullptr) {
      runtime->coordinator_->set_nccl_unique_id_generator(
          [gpu = runtime->gpu_.get()] { return gpu->MakeUniqueId(); });
    }
    if (options.autotune) {
      runtime->autotuner_ = std::make_unique<Autotuner>(options);
      runtime->coordinator_->set_fusion_threshold(
          runtime->autotuner_->current().fusion_threshold_bytes);
      runtime->worker_->SetCycle(runtime->autotuner_->current().cycle_time_ms);
      runtime->loop_.announced_cycle_ms =
          runtime->autotuner_->current().cycle_time_ms;
    }
    runtime->executor_->set_timeline(&runtime->timeline_);
    if (!options.timeline_path.empty()) {
      if (Status s = runtime->timeline_.Start(options.timeline_path,
                                              options.timeline_mark_cycles);
          !s.ok()) {
        return s;
      }
    }
  }
  Log().info(
      "started{}: rank {} of {}, local rank {} of {} on host '{}', {} at {}, "
      "backend {}, fusion {} bytes, cycle {} ms, cache {} entries",
      process_set == 0 ? std::string()
                       : absl::StrCat(" process set ", process_set),
      context.rank(), context.size(), context.local_rank(),
      context.local_size(), context.hostname(), MpiLibraryName(),
      ThreadLevelName(context.thread_level()), runtime->backend_->name(),
      options.fusion_threshold_bytes, options.cycle_time_ms,
      options.cache_capacity);
  runtime->worker_->Heard(absl::Now());
  runtime->thread_ = std::thread([r = runtime.get()] { r->Loop(); });
  return runtime;
}

Runtime::~Runtime() {
  Shutdown();
  if (aborted_) {
    // A peer is gone: MPI calls that involve it may never return. Leave
    // the control plane's requests and the communicators as they are, on
    // purpose and reachable (so leak checkers see intent, not a leak).
    static auto* abandoned = new std::vector<std::unique_ptr<ControlPlane>>;
    abandoned->push_back(std::move(control_));
    mpi_->Abandon();
  }
  // Order matters: the control plane's requests, then the communicators.
  control_.reset();
  gpu_.reset();
  executor_.reset();
  backend_.reset();
  mpi_.reset();
}

void Runtime::Shutdown() {
  {
    MutexLock lock(&mu_);
    shutdown_requested_ = true;
  }
  if (bell_ != nullptr) bell_->RingSelf();
  if (thread_.joinable()) thread_.join();
}

Status Runtime::Enqueue(std::vector<Entry> entries) {
  if (gpu_ != nullptr) {
    if (Status s = gpu_->Prepare(entries); !s.ok()) return s;
  }
  bool all_fast = false;
  if (Status s = Queue(std::move(entries), &all_fast); !s.ok()) return s;
  // Work that only the fast lane carries is run by the thread that waits
  // for it (or polls it); waking kolo's thread for it as well would only
  // make the two race, and where they share a core (a rank bound to one)
  // cost a context switch or two per operation. The background thread
  // still looks at pending fast work every cycle, for applications that
  // neither wait nor poll for a while.
  if (!all_fast) bell_->RingSelf();
  return absl::OkStatus();
}

Status Runtime::Queue(std::vector<Entry> entries, bool* all_fast) {
  MutexLock lock(&mu_);
  if (!stopped_.ok()) return stopped_;
  if (shutdown_requested_) {
    return absl::CancelledError("kolo is shutting down");
  }
  for (size_t i = 0; i < entries.size(); ++i) {
    const std::string& name = entries[i].request.name;
    bool repeated = table_.contains(name);
    for (size_t j = 0; j < i && !repeated; ++j) {
      repeated = entries[j].request.name == name;
    }
    if (repeated) {
      return absl::InvalidArgumentError(absl::StrCat(
          "an operation named '", name, "' is already pending on rank ",
          mpi_->rank(), "; names must be unique among pending operations"));
    }
  }
  *all_fast = true;
  for (Entry& entry : entries) {
    if (entries.size() == 1 && lane_ != nullptr && !lane_off_) {
      ArriveFast(entry);
    }
    if (entry.fast_id < 0) *all_fast = false;
    if (entry.fast_id < 0) fresh_.push_back(entry.request);
    std::string name = entry.request.name;
    table_.emplace(std::move(name), std::move(entry));
  }
  operations_enqueued_.fetch_add(1, std::memory_order_relaxed);
  return absl::OkStatus();
}

Status Runtime::StartTimeline(const std::string& path, bool mark_cycles) {
  if (coordinator_ == nullptr) return absl::OkStatus();
  return timeline_.Start(path, mark_cycles);
}

void Runtime::ArriveFast(Entry& entry) {
  auto known = fast_ids_.find(entry.request.name);
  if (known == fast_ids_.end()) return;
  const int32_t id = known->second;
  if (!fast_tensors_[id].own.SameAs(entry.request)) {
    // Changed since the id was given: the peers' arrivals at this instance
    // must go the slow way too, where rank 0 compares the requests.
    lane_->Withdraw(id, lane_->next_instance(id));
    lane_->Arrive(id);
    return;
  }
  std::optional<uint32_t> instance = lane_->Arrive(id);
  if (!instance.has_value()) return;  // withdrawn by a peer
  entry.fast_id = id;
  entry.fast_instance = *instance;
  entry.submitted_ns = SteadyNowNs();
  // Rank 0's timeline shows the wait for the peers (it cannot see when
  // each arrived: only that all had once the operation runs).
  if (timeline_.active()) {
    timeline_.NegotiateStart(
        entry.request.name,
        absl::StrCat("FAST_", OpTypeName(entry.request.op)).c_str());
    timeline_.NegotiateRankReady(entry.request.name, mpi_->rank());
  }
  entry.operation->helper = weak_from_this();
  entry.operation->fast.store(true, std::memory_order_release);
  ++fast_pending_;
}

RuntimeStats Runtime::stats() const {
  RuntimeStats s;
  s.operations_enqueued = operations_enqueued_.load();
  s.operations_completed = operations_completed_.load();
  s.collectives_executed = collectives_executed_.load();
  s.tensors_fused = tensors_fused_.load();
  s.cache_hits = cache_hits_.load();
  s.negotiation_messages = negotiation_messages_.load();
  s.last_execution_start_ns = last_execution_start_ns_.load();
  s.fast_operations = fast_operations_.load();
  return s;
}

void Runtime::Loop() {
  // This thread sleeps in short timed waits (from 20 us) while it expects a
  // message it cannot be woken for (across hosts). Linux lets such a sleep
  // overrun by the thread's timer slack, 50 us by default, which would
  // dominate the latency of small operations; 1 us keeps the wait honest.
  prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
  ApplyThreadNice();
  Worker& worker = *worker_;
  Status status;
  uint32_t previous_rung = bell_->Peek();
  while (status.ok() && !worker.stopping()) {
    const uint32_t rung = bell_->Peek();
    loop_.expecting = worker.Expecting(absl::Now(), rung != previous_rung);
    previous_rung = rung;
    std::vector<Request> fresh;
    bool send_shutdown = false;
    {
      MutexLock lock(&mu_);
      fresh.swap(fresh_);
      send_shutdown = shutdown_requested_ && !shutdown_sent_;
      shutdown_sent_ = shutdown_sent_ || send_shutdown;
    }
    const absl::Time now = absl::Now();
    bool activity = !fresh.empty();
    if (worker.ShouldSend(now, activity || send_shutdown)) {
      status = SendRequests(std::move(fresh), send_shutdown, false);
      worker.RequestsSent(now);
    }
    if (status.ok()) {
      status = coordinator_ ? Coordinate(now, &activity)
                            : ReceiveResponses(&activity);
    }
    if (status.ok()) status = PumpAndRing();
    if (status.ok() && coordinator_ == nullptr) worker.CheckCoordinator(now);
    if (status.ok() && lane_ != nullptr && !worker.stopping()) {
      if (coordinator_ != nullptr) status = AppendDelivered();
      if (status.ok() && exec_mu_.TryLock()) {
        if (BackgroundTakesLane() &&
            ConsumeLane(/*background=*/true, &status)) {
          activity = true;
        }
        exec_mu_.Unlock();
      }
      MutexLock lock(&mu_);
      if (!lane_failure_.ok()) worker.Abort(lane_failure_);
      // Fast submissions that wait long for their peers go the slow way,
      // where stalls are reported and failed as usual.
      if (now - loop_.last_fast_check >= absl::Milliseconds(100)) {
        loop_.last_fast_check = now;
        WithdrawFast(kFastPatienceNs);
      }
    }
    if (!status.ok() || worker.stopping()) break;
    Worker::Turn turn;
    turn.activity = activity;
    turn.rang = bell_->Peek() != rung;
    turn.sending = control_->busy();
    turn.lane_deferred = loop_.lane_deferred;
    turn.reliable_bell = bell_->shared() && !bell_->lossy();
    {
      MutexLock lock(&mu_);
      turn.waiting =
          static_cast<int64_t>(table_.size()) > fast_pending_ ||
          !fresh_.empty() ||
          (coordinator_ != nullptr && coordinator_->pending_count() > 0);
      turn.fast_pending = fast_pending_ > 0;
    }
    bell_->Wait(rung, worker.NextSleep(absl::Now(), turn));
  }
  if (!status.ok()) {
    worker.Abort(absl::AbortedError(
        absl::StrCat("kolo stopped after an internal failure on rank ",
                     mpi_->rank(), ": ", status.message())));
  }
  if (worker.aborted()) {
    const Status& aborted = worker.abort_status();
    Log().error("{}", std::string(aborted.message()));
    aborted_ = true;
    if (gpu_ != nullptr) gpu_->Abort(aborted);
    // Peers that still wait for this rank in the data plane fail at once.
    backend_->Abandon(aborted.message(), /*local_failure=*/false);
    Stop(aborted);
    return;
  }
  Stop(absl::CancelledError(absl::StrCat(
      "kolo was shut down (requested by rank ", worker.shutdown_rank(), ")")));
  if (gpu_ != nullptr) gpu_->Shutdown();
  SayGoodbye();
}

void Runtime::ApplyThreadNice() {
  if (options_.thread_nice == kThreadNiceUnset) return;
  const int target = static_cast<int>(options_.thread_nice);
  const id_t tid = static_cast<id_t>(syscall(SYS_gettid));
  errno = 0;
  const int current = getpriority(PRIO_PROCESS, tid);
  if (errno != 0 || current == target) return;
  if (setpriority(PRIO_PROCESS, tid, target) == 0) {
    Log().debug("kolo's thread runs at nice {} (KOLO_THREAD_NICE)", target);
    return;
  }
  // Raising priority needs root, CAP_SYS_NICE or RLIMIT_NICE (ulimit -e).
  Log().info(
      "kolo's thread stays at nice {}: KOLO_THREAD_NICE={} is not permitted "
      "here ({}); on hosts whose cores the ranks oversubscribe, communication "
      "then waits for the compute threads' time slices",
      current, target, std::strerror(errno));
}

Status Runtime::SendRequests(std::vector<Request> fresh, bool shutdown,
                             bool goodbye) {
  int64_t hits = 0;
  RequestList list =
      worker_->MakeRequestList(std::move(fresh), shutdown, goodbye, &hits);
  cache_hits_.fetch_add(hits, std::memory_order_relaxed);
  if (!list.requests.empty() || !list.cache_slots.empty()) {
    negotiation_messages_.fetch_add(1, std::memory_order_relaxed);
  }
  if (coordinator_ != nullptr) {
    return coordinator_->HandleRequestList(list, absl::Now());
  }
  Status sent = control_->Send(
      0, std::make_shared<const std::string>(EncodeRequestList(list)));
  if (!sent.ok()) return sent;
  return PumpAndRing();
}

Status Runtime::PumpAndRing() {
  std::vector<int> delivered;
  Status status = control_->Pump(&delivered);
  RingDelivered(delivered);
  return status;
}

void Runtime::RingDelivered(std::vector<int>& delivered) {
  if (!bell_->shared() || delivered.empty()) return;
  std::sort(delivered.begin(), delivered.end());
  delivered.erase(std::unique(delivered.begin(), delivered.end()),
                  delivered.end());
  for (int rank : delivered) bell_->Ring(rank);
}

Status Runtime::Coordinate(absl::Time now, bool* activity) {
  const WireLimits limits{mpi_->size(), options_.cache_capacity};
  if (Status s = control_->Pump(nullptr, loop_.expecting); !s.ok()) return s;
  while (std::optional<ControlPlane::Message> message = control_->Next()) {
    StatusOr<RequestList> list = DecodeRequestList(message->bytes, limits);
    if (!list.ok()) {
      return absl::InternalError(absl::StrCat("from rank ", message->source,
                                              ": ", list.status().message()));
    }
    if (list->goodbye) {  // only sent after a shutdown
      worker_->GoodbyeReceived();
      continue;
    }
    if (Status s = coordinator_->HandleRequestList(*list, now); !s.ok()) {
      return s;
    }
    *activity = *activity || !list->requests.empty() ||
                !list->cache_slots.empty() || list->shutdown;
  }
  if (coordinator_->TakeFastLaneOff() && lane_ != nullptr) lane_->AppendOff();
  // With nothing to say, an empty list (a heartbeat) now and then tells the
  // workers rank 0 is alive.
  std::optional<ResponseList> responses = coordinator_->NextResponses(
      now, /*force=*/now - loop_.last_response_sent >= kHeartbeat);
  if (!responses.has_value()) return absl::OkStatus();
  loop_.last_response_sent = now;
  if (loop_.announced_cycle_ms > 0) {
    responses->cycle_time_ms = loop_.announced_cycle_ms;
    loop_.announced_cycle_ms = 0;
  }
  if (!responses->responses.empty()) timeline_.Cycle();
  if (mpi_->size() > 1) {
    auto encoded =
        std::make_shared<const std::string>(EncodeResponseList(*responses));
    for (int rank = 1; rank < mpi_->size(); ++rank) {
      if (Status s = control_->Send(rank, encoded); !s.ok()) return s;
    }
    // Every worker must be able to read this list without rank 0's help
    // before rank 0 enters its collectives (see control_plane.h).
    // With a fast lane, the list enters the lane's log only once delivered
    // (AppendDelivered), and this thread goes on meanwhile: a worker may be
    // waiting for rank 0 in a fast collective.
    std::vector<int> delivered;
    Status flushed = responses->responses.empty() || lane_ != nullptr
                         ? control_->Pump(&delivered)
                         : control_->FlushSends(kDeliveryTimeout, &delivered);
    RingDelivered(delivered);
    if (!flushed.ok()) return flushed;
  }
  *activity = *activity || !responses->responses.empty();
  return Receive(*std::move(responses));
}

Status Runtime::ApplyList(ResponseList& list) {
  int64_t tensors = 0;
  int64_t bytes = 0;
  if (Status s = Apply(list, &tensors, &bytes); !s.ok()) return s;
  if (autotuner_ != nullptr &&
      autotuner_->Record(tensors, bytes, absl::Now())) {
    const TunedParameters& tuned = autotuner_->current();
    coordinator_->set_fusion_threshold(tuned.fusion_threshold_bytes);
    worker_->SetCycle(tuned.cycle_time_ms);
    loop_.announced_cycle_ms = tuned.cycle_time_ms;
  }
  return absl::OkStatus();
}

namespace {

// The response that runs `tensor` of `response` alone, as the fast lane
// runs it.
Response SingleResponse(const Response& response,
                        const ResponseTensor& tensor) {
  Response single;
  single.op = response.op;
  single.dtype = response.dtype;
  single.reduce_op = response.reduce_op;
  single.root = response.root;
  single.prescale = response.prescale;
  single.postscale = response.postscale;
  single.contributors = response.contributors;
  single.splits = response.splits;
  ResponseTensor alone;
  alone.request = tensor.request;
  alone.first_dims = tensor.first_dims;
  single.tensors.push_back(std::move(alone));
  return single;
}

}  // namespace

Status Runtime::Receive(ResponseList list) {
  // With a fast lane, lists that run collectives (or end the job) take
  // their turn in the lane's log, and the ones after them wait too.
  const bool ordered = !list.responses.empty() || list.shutdown;
  if (lane_ == nullptr || (!ordered && loop_.held.empty()))
    return ApplyList(list);
  const uint64_t seq = list.seq;
  loop_.held.emplace(seq, std::move(list));
  if (!ordered || coordinator_ == nullptr) return absl::OkStatus();
  loop_.undelivered.emplace_back(seq, absl::Now());
  return AppendDelivered();
}

Status Runtime::AppendDelivered() {
  if (loop_.undelivered.empty()) return absl::OkStatus();
  if (!control_->sending()) {
    for (const auto& [seq, since] : loop_.undelivered)
      lane_->AppendResponses(seq);
    loop_.undelivered.clear();
    return absl::OkStatus();
  }
  if (absl::Now() - loop_.undelivered.front().second > kDeliveryTimeout) {
    return absl::DeadlineExceededError(
        absl::StrCat("response list ", loop_.undelivered.front().first,
                     " was not delivered to every rank within ",
                     absl::FormatDuration(kDeliveryTimeout)));
  }
  return absl::OkStatus();
}

Status Runtime::ApplyHeld(uint64_t seq) {
  while (!loop_.held.empty() && !worker_->stopping()) {
    auto first = loop_.held.begin();
    const bool ordered =
        !first->second.responses.empty() || first->second.shutdown;
    if (first->first > seq && ordered) break;
    ResponseList list = std::move(first->second);
    loop_.held.erase(first);
    if (Status s = ApplyList(list); !s.ok()) return s;
  }
  return absl::OkStatus();
}

bool Runtime::ConsumeLane(bool background, Status* status) {
  bool progress = false;
  while (!lane_closed_.load(std::memory_order_acquire)) {
    std::optional<FastLane::Entry> entry = lane_->Peek();
    if (!entry.has_value()) break;
    switch (entry->kind) {
      case FastLane::Kind::kExecute: {
        const uint64_t end = lane_->BatchEnd(entry->index);
        ExecuteFast(entry->index, end);
        lane_->Advance(end);
        break;
      }
      case FastLane::Kind::kFallback: {
        MutexLock lock(&mu_);
        MoveToSlowPath(entry->id, entry->instance);
        lane_->Advance(entry->index + 1);
        break;
      }
      case FastLane::Kind::kOff: {
        MutexLock lock(&mu_);
        lane_off_ = true;
        WithdrawFast(0);
        lane_->Advance(entry->index + 1);
        break;
      }
      case FastLane::Kind::kResponses: {
        // Response lists are the background thread's: wake it.
        if (!background) {
          bell_->RingSelf();
          return progress;
        }
        if (loop_.held.find(entry->seq) == loop_.held.end())
          return progress;  // not here yet
        *status = ApplyHeld(entry->seq);
        lane_->Advance(entry->index + 1);
        if (!status->ok() || worker_->stopping()) return true;
        break;
      }
    }
    progress = true;
  }
  if (progress && background) lane_->WakeHelpers();
  return progress;
}

void Runtime::ExecuteFast(uint64_t begin, uint64_t end) {
  // The batch in log order: each submission and how it runs (shared with
  // fast_tensors_, which may grow meanwhile; never copied for a batch of one).
  std::vector<std::pair<Entry, std::shared_ptr<const Response>>> batch;
  batch.reserve(end - begin);
  Status problem;
  {
    MutexLock lock(&mu_);
    for (uint64_t index = begin; index < end && problem.ok(); ++index) {
      std::optional<FastLane::Entry> e = lane_->EntryAt(index);
      if (!e.has_value() || e->id < 0 ||
          e->id >= static_cast<int32_t>(fast_tensors_.size()) ||
          fast_tensors_[e->id].name.empty()) {
        problem = absl::InternalError(absl::StrCat(
            "the fast lane names an unknown fast id at entry ", index));
        break;
      }
      const FastTensor& tensor = fast_tensors_[e->id];
      auto it = table_.find(tensor.name);
      if (it == table_.end() || it->second.fast_id != e->id ||
          it->second.fast_instance != e->instance) {
        problem = absl::InternalError(absl::StrCat(
            "the fast lane runs ", OpTypeName(tensor.own.op), " '", tensor.name,
            "', which rank ", mpi_->rank(), " has not submitted there"));
        break;
      }
      batch.emplace_back(std::move(it->second), tensor.agreed);
      table_.erase(it);
      --fast_pending_;
      if (timeline_.active()) timeline_.NegotiateEnd(tensor.name);
    }
  }
  if (!problem.ok()) {
    // This rank cannot take part: its peers must not wait for it.
    const Status aborted = FailFast(Response{}, problem);
    for (auto& [entry, agreed] : batch) entry.operation->Complete(aborted);
    return;
  }
  executor_->set_span_prefix("FAST_");
  if (batch.size() == 1) {
    // Nothing to fuse: the agreed response as it is.
    std::vector<Entry> entries;
    entries.push_back(std::move(batch.front().first));
    RunFast(*batch.front().second, entries, problem);
  } else {
    std::vector<Response> singles;
    singles.reserve(batch.size());
    absl::flat_hash_map<std::string, Entry> taken;
    for (auto& [entry, agreed] : batch) {
      singles.push_back(*agreed);
      std::string name = entry.request.name;
      taken.emplace(std::move(name), std::move(entry));
    }
    // Every rank plans the same batch alike (the settings agree).
    const std::vector<Response> plan =
        PlanFusion(std::move(singles), options_.fusion_threshold_bytes);
    for (const Response& response : plan) {
      std::vector<Entry> entries;
      for (const ResponseTensor& tensor : response.tensors) {
        auto it = taken.find(tensor.request.name);
        entries.push_back(std::move(it->second));
        taken.erase(it);
      }
      RunFast(response, entries, problem);
    }
  }
  executor_->set_span_prefix("");
}

void Runtime::RunFast(const Response& response, std::vector<Entry>& entries,
                      Status& problem) {
  const std::vector<bool> present(entries.size(), true);
  Status status = problem;
  if (status.ok()) status = executor_->Check(response, entries, present);
  if (status.ok()) {
    last_execution_start_ns_.store(SteadyNowNs(), std::memory_order_relaxed);
    status = executor_->Execute(response, entries, present);
    collectives_executed_.fetch_add(1, std::memory_order_relaxed);
    if (response.tensors.size() > 1) {
      tensors_fused_.fetch_add(response.tensors.size(),
                               std::memory_order_relaxed);
    }
  }
  if (!status.ok() && problem.ok()) problem = FailFast(response, status);
  if (!status.ok()) status = problem;
  for (Entry& entry : entries) {
    entry.operation->Complete(status);
    operations_completed_.fetch_add(1, std::memory_order_relaxed);
    fast_operations_.fetch_add(1, std::memory_order_relaxed);
  }
}

Status Runtime::FailFast(const Response& response, const Status& failure) {
  bool own = false;
  const Status aborted = Worker::AbortedBy(mpi_->rank(), response, failure,
                                           " from the fast lane", &own);
  if (own) {
    Log().error("{}", std::string(aborted.message()));
    backend_->Abandon(aborted.message(), /*local_failure=*/true);
  }
  lane_closed_.store(true, std::memory_order_release);
  {
    MutexLock lock(&mu_);
    if (lane_failure_.ok()) lane_failure_ = aborted;
  }
  bell_->RingSelf();
  return aborted;
}

void Runtime::MoveToSlowPath(int32_t id, uint32_t instance) {
  if (id < 0 || id >= static_cast<int32_t>(fast_tensors_.size())) return;
  auto it = table_.find(fast_tensors_[id].name);
  if (it == table_.end() || it->second.fast_id != id ||
      it->second.fast_instance != instance) {
    return;  // not submitted yet: it will find the instance withdrawn
  }
  Entry& entry = it->second;
  entry.fast_id = -1;
  --fast_pending_;
  fresh_.push_back(entry.request);
  entry.operation->fast.store(false, std::memory_order_release);
  bell_->RingSelf();
}

void Runtime::WithdrawFast(int64_t age_ns) {
  const int64_t now = SteadyNowNs();
  std::vector<std::pair<int32_t, uint32_t>> moved;
  for (auto& [name, entry] : table_) {
    if (entry.fast_id < 0 || now - entry.submitted_ns < age_ns) continue;
    if (lane_->Withdraw(entry.fast_id, entry.fast_instance)) {
      moved.emplace_back(entry.fast_id, entry.fast_instance);
    }
  }
  for (const auto& [id, instance] : moved) MoveToSlowPath(id, instance);
}

bool Runtime::BackgroundTakesLane() {
  loop_.lane_deferred = false;
  std::optional<FastLane::Entry> head = lane_->Peek();
  if (!head.has_value()) return false;
  if (head->kind != FastLane::Kind::kExecute) return true;
  // A collective is ready. The application's thread runs it when it waits
  // or polls: a helper is already at it, or will likely be soon. Only a
  // collective left alone for kBackgroundDefer is taken here (training
  // that submits during backward and waits later still overlaps), so that
  // the two threads do not race for it, nor for one core where a rank is
  // bound to one.
  if (lane_->local_helpers() > 0) return false;
  const int64_t now = SteadyNowNs();
  if (loop_.deferred_head != head->index) {
    loop_.deferred_head = head->index;
    loop_.deferred_since_ns = now;
  }
  if (now - loop_.deferred_since_ns >=
      absl::ToInt64Nanoseconds(kBackgroundDefer)) {
    return true;
  }
  loop_.lane_deferred = true;
  return false;
}

void Runtime::HelpOnce() {
  if (lane_ == nullptr || lane_closed_.load(std::memory_order_acquire)) return;
  if (exec_mu_.TryLock()) {
    ConsumeLane(/*background=*/false, nullptr);
    exec_mu_.Unlock();
  }
}

void Runtime::HelpUntilDone(const internal::Operation& operation) {
  if (lane_ == nullptr) return;
  using Clock = std::chrono::steady_clock;
  lane_->AddHelper(1);
  Clock::time_point spin_until = Clock::now() + kHelpSpin;
  while (!operation.done() && operation.fast.load(std::memory_order_acquire) &&
         !lane_closed_.load(std::memory_order_acquire)) {
    const uint32_t seen = lane_->appended()->load(std::memory_order_acquire);
    bool progress = false;
    if (exec_mu_.TryLock()) {
      progress = ConsumeLane(/*background=*/false, nullptr);
      exec_mu_.Unlock();
    }
    if (progress) {
      spin_until = Clock::now() + kHelpSpin;
      continue;
    }
    if (Clock::now() < spin_until) {
      CpuRelax();
      continue;
    }
    // Sleeps until something is appended (or the background thread finished
    // work), looking at the operation now and then regardless.
    const timespec limit{0, 200 * 1000};
    lane_->WaitForAppend(seen, &limit);
  }
  lane_->AddHelper(-1);
}

Status Runtime::ReceiveResponses(bool* activity) {
  const WireLimits limits{mpi_->size(), options_.cache_capacity};
  if (Status s = control_->Pump(nullptr, loop_.expecting); !s.ok()) return s;
  while (!worker_->stopping()) {
    std::optional<ControlPlane::Message> message = control_->Next();
    if (!message.has_value()) break;
    StatusOr<ResponseList> list = DecodeResponseList(message->bytes, limits);
    if (!list.ok()) {
      return absl::InternalError(absl::StrCat("from rank ", message->source,
                                              ": ", list.status().message()));
    }
    *activity = *activity || !list->responses.empty();
    worker_->Heard(absl::Now());
    if (Status s = Receive(*std::move(list)); !s.ok()) return s;
  }
  return absl::OkStatus();
}

Status Runtime::ExecuteOnGpu(const Response& response,
                             std::vector<Entry>& entries,
                             std::vector<bool>& present) {
  if (gpu_ == nullptr) {
    // Peers are about to wait for this rank inside NCCL: stop the job.
    return absl::AbortedError(absl::StrCat(
        "rank ", mpi_->rank(), " was told to run ", OpTypeName(response.op),
        " '", response.tensors.front().request.name,
        "' on CUDA tensors, but its kolo build has no NCCL backend"));
  }
  return gpu_->Execute(response, entries, present);
}

Status Runtime::Apply(ResponseList& list, int64_t* tensors, int64_t* bytes) {
  if (Status s = worker_->BeginList(list); !s.ok()) return s;
  if (!list.nccl_unique_id.empty() && gpu_ != nullptr) {
    gpu_->SetUniqueId(list.nccl_unique_id);
  }
  bool executed = false;
  for (Response& response : list.responses) {
    // A fast id is known before the handle completes, so the tensor's next
    // submission can use it. It stands for this rank's own submission
    // (first dimensions and splits may differ between ranks) and for the
    // agreed response.
    if (lane_ != nullptr) RecordFastIds(response);
    // Take this rank's entries out of the pending table.
    std::vector<Entry> entries(std::max<size_t>(response.tensors.size(), 1));
    std::vector<bool> present(entries.size(), false);
    {
      MutexLock lock(&mu_);
      const bool join = response.op == OpType::kJoin;
      for (size_t i = 0; i < (join ? 1 : response.tensors.size()); ++i) {
        auto it = table_.find(
            join ? absl::string_view(kJoinName)
                 : absl::string_view(response.tensors[i].request.name));
        if (it == table_.end()) continue;
        entries[i] = std::move(it->second);
        present[i] = true;
        table_.erase(it);
      }
    }
    Status status = worker_->Admit(response, present);
    if (status.ok()) status = executor_->Check(response, entries, present);
    if (status.ok()) {
      last_execution_start_ns_.store(SteadyNowNs(), std::memory_order_relaxed);
      status = IsCudaResponse(response)
                   ? ExecuteOnGpu(response, entries, present)
                   : executor_->Execute(response, entries, present);
      executed = true;
      if (tensors != nullptr && status.ok()) {
        *tensors += response.tensors.size();
        for (const ResponseTensor& t : response.tensors) {
          *bytes += t.request.num_elements() * DataTypeSize(t.request.dtype);
        }
      }
      collectives_executed_.fetch_add(1, std::memory_order_relaxed);
      if (response.tensors.size() > 1) {
        tensors_fused_.fetch_add(response.tensors.size(),
                                 std::memory_order_relaxed);
      }
    }
    if (!status.ok()) {
      bool tell_peers = false;
      status = worker_->Fail(response, status, &tell_peers);
      if (tell_peers) {
        Log().error("{}", std::string(status.message()));
        if (!IsCudaResponse(response)) {
          backend_->Abandon(status.message(), /*local_failure=*/true);
        }
      }
    }
    for (size_t i = 0; i < entries.size(); ++i) {
      if (!present[i]) continue;
      entries[i].operation->Complete(status);
      if (entries[i].operation->done()) {
        operations_completed_.fetch_add(1, std::memory_order_relaxed);
      }
    }
  }
  const absl::Time now = absl::Now();
  // Nobody could talk while collectives ran: silence so far is excused.
  if (executed && coordinator_ != nullptr) coordinator_->ForgiveSilence(now);
  worker_->EndList(list, executed, now);
  return absl::OkStatus();
}

void Runtime::RecordFastIds(const Response& response) {
  for (const ResponseTensor& tensor : response.tensors) {
    if (tensor.fast_id < 0) continue;
    MutexLock lock(&mu_);
    auto own = table_.find(tensor.request.name);
    if (own == table_.end()) continue;
    if (static_cast<int32_t>(fast_tensors_.size()) <= tensor.fast_id) {
      fast_tensors_.resize(tensor.fast_id + 1);
    }
    FastTensor& fast = fast_tensors_[tensor.fast_id];
    fast.name = tensor.request.name;
    fast.own = own->second.request;
    // Fast executions have every rank's contribution.
    Response agreed = SingleResponse(response, tensor);
    agreed.contributors = mpi_->size();
    fast.agreed = std::make_shared<const Response>(std::move(agreed));
    fast_ids_[tensor.request.name] = tensor.fast_id;
  }
}

void Runtime::Stop(const Status& status) {
  absl::flat_hash_map<std::string, Entry> table;
  lane_closed_.store(true, std::memory_order_release);
  {
    MutexLock lock(&mu_);
    fast_pending_ = 0;
    stopped_ = status;
    table.swap(table_);
    fresh_.clear();
  }
  for (auto& [name, entry] : table) entry.operation->Complete(status);
}

void Runtime::SayGoodbye() {
  if (coordinator_ == nullptr) {
    Status s = SendRequests({}, false, /*goodbye=*/true);
    if (s.ok()) s = control_->FlushSends(kGoodbyeTimeout);
    if (!s.ok()) Log().warn("shutdown: {}", s.ToString());
    return;
  }
  // Rank 0 keeps receiving (and discarding) until every worker has said
  // goodbye, so that no worker's message is left undelivered.
  const absl::Time deadline = absl::Now() + kGoodbyeTimeout;
  const WireLimits limits{mpi_->size(), options_.cache_capacity};
  while (!worker_->AllSaidGoodbye() && absl::Now() < deadline) {
    if (!control_->Pump().ok()) break;
    std::optional<ControlPlane::Message> message = control_->Next();
    if (!message.has_value()) {
      std::this_thread::sleep_for(std::chrono::microseconds(200));
      continue;
    }
    StatusOr<RequestList> list = DecodeRequestList(message->bytes, limits);
    if (list.ok() && list->goodbye) worker_->GoodbyeReceived();
  }
  if (!worker_->AllSaidGoodbye()) {
    Log().warn("shutdown: only {} of {} ranks confirmed within {}",
               worker_->goodbyes(), mpi_->size() - 1,
               absl::FormatDuration(kGoodbyeTimeout));
  }
  if (Status s = control_->FlushSends(kGoodbyeTimeout); !s.ok()) {
    Log().warn("shutdown: {}", s.ToString());
  }
}

}  // namespace kolo
