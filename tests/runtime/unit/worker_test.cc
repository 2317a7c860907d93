// Tests of a rank's side of negotiation (Worker), alone and beside a
// Coordinator: the whole negotiation path of N ranks in one process, every
// message through the wire codec, without MPI - deterministically in one
// thread, and as one thread per rank over the in-memory control plane.
#include "runtime/core/worker.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "runtime/core/coordinator.h"
#include "runtime/core/memory_control_plane.h"
#include "runtime/wire/codec.h"

namespace kolo {
namespace {

const absl::Time kStart = absl::FromUnixSeconds(1000);

Request Make(OpType op, int rank, const std::string& name,
             std::vector<int64_t> shape) {
  Request r;
  r.rank = rank;
  r.op = op;
  r.name = name;
  r.dtype = DataType::kFloat32;
  r.shape = std::move(shape);
  return r;
}

Response One(OpType op, const std::string& name) {
  Response response;
  response.op = op;
  ResponseTensor tensor;
  tensor.request = Make(op, -1, name, {4});
  response.tensors.push_back(tensor);
  return response;
}

Worker::Config Config(int rank, int size, int64_t capacity = 8) {
  Worker::Config config;
  config.rank = rank;
  config.size = size;
  config.cache_capacity = capacity;
  return config;
}

// ---- A job of N ranks: a Coordinator and N Workers --------------------------

// One seeded run: every round, every rank submits the same tensors (in its
// own order; allgathers with a first dimension of its own; now and then a
// tensor changes shape), request lists go to the coordinator through the
// codec, its response list goes back to every rank, and each worker applies
// it - some one round late, so that their request lists refer to cache
// slots the coordinator has since reused. Every tensor a worker resolves
// must be exactly what that rank submitted, and no response may fail.
struct JobStats {
  int64_t cache_bits = 0;      // tensors sent as one bit
  int64_t cached_tensors = 0;  // response tensors replayed from a slot
  int64_t late_applies = 0;    // lists a worker applied a round late
  int64_t replaced = 0;        // tensors whose description changed
};

JobStats RunJob(int size, int64_t capacity, uint32_t seed, int rounds) {
  std::mt19937 random(seed);
  Options options;
  options.cache_capacity = capacity;
  options.fusion_threshold_bytes = 1 << 20;
  Coordinator coordinator(size, options);
  std::vector<Worker> workers;
  for (int r = 0; r < size; ++r) {
    workers.emplace_back(Config(r, size, capacity), kStart);
  }
  const WireLimits limits{size, capacity};
  // Two pools of names used in alternate rounds: a worker one list behind
  // never resubmits a name that list still has pending on it.
  const int kNames = 6;
  std::map<std::string, std::vector<int64_t>> shapes;  // current, rank 0's
  std::map<std::string, OpType> ops;
  for (int pool = 0; pool < 2; ++pool) {
    for (int i = 0; i < kNames; ++i) {
      const std::string name =
          "p" + std::to_string(pool) + ".t" + std::to_string(i);
      ops[name] = i % 3 == 0   ? OpType::kAllgather
                  : i % 3 == 1 ? OpType::kBroadcast
                               : OpType::kAllreduce;
      shapes[name] = {1 + i, 3};
    }
  }
  // What each rank submitted and has not seen agreed yet.
  std::vector<std::map<std::string, Request>> outstanding(size);
  std::vector<std::deque<std::string>> inbox(size);  // encoded lists
  JobStats stats;
  absl::Time now = kStart;

  auto apply = [&](int rank, const std::string& bytes) {
    StatusOr<ResponseList> list = DecodeResponseList(bytes, limits);
    ASSERT_TRUE(list.ok()) << list.status();
    Worker& worker = workers[rank];
    ASSERT_TRUE(worker.BeginList(*list).ok());
    for (const Response& response : list->responses) {
      ASSERT_EQ(response.error_code, 0) << response.error_message;
      std::vector<bool> present;
      for (const ResponseTensor& tensor : response.tensors) {
        if (tensor.cached) ++stats.cached_tensors;
        auto it = outstanding[rank].find(tensor.request.name);
        ASSERT_NE(it, outstanding[rank].end())
            << "rank " << rank << " was told to run '" << tensor.request.name
            << "'";
        const Request resolved =
            RequestForRank(CacheEntry{tensor.request, tensor.first_dims}, rank);
        EXPECT_TRUE(resolved.SameAs(it->second))
            << "rank " << rank << " resolved '" << tensor.request.name
            << "' to another description (seed " << seed << ")";
        outstanding[rank].erase(it);
        present.push_back(true);
      }
      EXPECT_TRUE(worker.Admit(response, present).ok());
    }
    worker.EndList(*list, /*executed=*/true, now);
    EXPECT_FALSE(worker.stopping());
  };

  for (int round = 0; round < rounds; ++round) {
    now += absl::Milliseconds(1);
    const int pool = round % 2;
    // Now and then a tensor of this pool changes shape (on every rank).
    if (random() % 4 == 0) {
      const std::string name =
          "p" + std::to_string(pool) + ".t" + std::to_string(random() % kNames);
      shapes[name][1] = 2 + random() % 5;
      ++stats.replaced;
    }
    std::vector<int> order(size);
    for (int r = 0; r < size; ++r) order[r] = r;
    std::shuffle(order.begin(), order.end(), random);
    for (int rank : order) {
      // Apply what arrived; sometimes leave the newest list for later.
      const bool late = inbox[rank].size() == 1 && random() % 3 == 0;
      stats.late_applies += late ? 1 : 0;
      while (inbox[rank].size() > (late ? 1u : 0u)) {
        apply(rank, inbox[rank].front());
        inbox[rank].pop_front();
        if (testing::Test::HasFatalFailure()) return stats;
      }
      std::vector<Request> fresh;
      for (int i = 0; i < kNames; ++i) {
        const std::string name =
            "p" + std::to_string(pool) + ".t" + std::to_string(i);
        std::vector<int64_t> shape = shapes[name];
        if (ops[name] == OpType::kAllgather) shape[0] += rank;
        Request request = Make(ops[name], rank, name, shape);
        outstanding[rank][name] = request;
        fresh.push_back(std::move(request));
      }
      std::shuffle(fresh.begin(), fresh.end(), random);
      int64_t hits = 0;
      RequestList list =
          workers[rank].MakeRequestList(std::move(fresh), false, false, &hits);
      stats.cache_bits += hits;
      EXPECT_EQ(static_cast<int64_t>(list.cache_slots.size()), hits);
      StatusOr<RequestList> decoded =
          DecodeRequestList(EncodeRequestList(list), limits);
      EXPECT_TRUE(decoded.ok()) << decoded.status();
      if (!decoded.ok()) return stats;
      Status handled = coordinator.HandleRequestList(*decoded, now);
      EXPECT_TRUE(handled.ok()) << handled;
      if (!handled.ok()) return stats;
    }
    std::optional<ResponseList> responses =
        coordinator.NextResponses(now, /*force=*/false);
    EXPECT_TRUE(responses.has_value()) << "round " << round;
    if (!responses.has_value()) return stats;
    const std::string encoded = EncodeResponseList(*responses);
    for (int r = 0; r < size; ++r) inbox[r].push_back(encoded);
  }
  for (int r = 0; r < size; ++r) {
    for (const std::string& bytes : inbox[r]) apply(r, bytes);
    EXPECT_TRUE(outstanding[r].empty()) << "rank " << r;
  }
  return stats;
}

TEST(WorkerNegotiation, SeededJobsKeepEveryCacheCopyIdentical) {
  JobStats total;
  for (int size : {2, 3, 4}) {
    for (uint32_t seed = 1; seed <= 4; ++seed) {
      // A cache smaller than the tensors in use: slots are reused all the
      // time, while some workers still refer to their previous entries.
      const JobStats stats = RunJob(size, /*capacity=*/5, seed, 120);
      if (HasFailure()) {
        FAIL() << "size " << size << ", seed " << seed;
      }
      total.cache_bits += stats.cache_bits;
      total.cached_tensors += stats.cached_tensors;
      total.late_applies += stats.late_applies;
      total.replaced += stats.replaced;
    }
  }
  // Not vacuous: bits were sent and replayed, lists applied late, entries
  // replaced.
  EXPECT_GT(total.cache_bits, 1000);
  EXPECT_GT(total.cached_tensors, 1000);
  EXPECT_GT(total.late_applies, 100);
  EXPECT_GT(total.replaced, 100);
}

TEST(WorkerNegotiation, WithoutACacheEverythingIsSentInFull) {
  const JobStats stats = RunJob(3, /*capacity=*/0, 7, 20);
  EXPECT_EQ(stats.cache_bits, 0);
  EXPECT_EQ(stats.cached_tensors, 0);
}

// ---- One worker
// --------------------------------------------------------------

TEST(Worker, SendsACacheBitOnlyForATensorSubmittedExactlySoBefore) {
  Worker worker(Config(1, 2), kStart);
  RequestList first = worker.MakeRequestList(
      {Make(OpType::kAllreduce, 1, "x", {4})}, false, false);
  EXPECT_EQ(first.rank, 1);
  ASSERT_EQ(first.requests.size(), 1u);
  EXPECT_TRUE(first.cache_slots.empty());
  // The coordinator puts it in slot 3.
  ResponseList list;
  list.seq = 1;
  list.responses.push_back(One(OpType::kAllreduce, "x"));
  list.responses[0].tensors[0].cache_slot = 3;
  ASSERT_TRUE(worker.BeginList(list).ok());
  worker.EndList(list, true, kStart);
  EXPECT_EQ(worker.applied_seq(), 1u);

  int64_t hits = 0;
  RequestList again = worker.MakeRequestList(
      {Make(OpType::kAllreduce, 1, "x", {4})}, false, false, &hits);
  EXPECT_TRUE(again.requests.empty());
  EXPECT_EQ(again.cache_slots, std::vector<int32_t>{3});
  EXPECT_EQ(again.applied_seq, 1u);
  EXPECT_EQ(hits, 1);
  RequestList changed = worker.MakeRequestList(
      {Make(OpType::kAllreduce, 1, "x", {5})}, false, false, &hits);
  EXPECT_EQ(changed.requests.size(), 1u);
  EXPECT_TRUE(changed.cache_slots.empty());
}

TEST(Worker, ReplaysCachedTensorsAndRejectsAnEmptySlot) {
  Worker worker(Config(0, 2), kStart);
  ResponseList put;
  put.seq = 1;
  put.responses.push_back(One(OpType::kBroadcast, "w"));
  put.responses[0].tensors[0].request.root = 1;
  put.responses[0].tensors[0].cache_slot = 0;
  ASSERT_TRUE(worker.BeginList(put).ok());
  worker.EndList(put, true, kStart);

  ResponseList bit;
  bit.seq = 2;
  bit.responses.push_back(Response());
  bit.responses[0].op = OpType::kBroadcast;
  ResponseTensor cached;
  cached.cached = true;
  cached.cache_slot = 0;
  bit.responses[0].tensors.push_back(cached);
  ASSERT_TRUE(worker.BeginList(bit).ok());
  EXPECT_EQ(bit.responses[0].tensors[0].request.name, "w");
  EXPECT_EQ(bit.responses[0].tensors[0].request.root, 1);
  EXPECT_EQ(bit.responses[0].tensors[0].request.shape,
            (std::vector<int64_t>{4}));

  bit.responses[0].tensors[0].cache_slot = 5;
  bit.responses[0].tensors[0].request = Request();
  const Status corrupt = worker.BeginList(bit);
  EXPECT_EQ(corrupt.code(), absl::StatusCode::kInternal);
  EXPECT_NE(corrupt.message().find("empty cache slot 5"), std::string::npos)
      << corrupt;
}

TEST(Worker, AnErrorResponseFailsItsEntriesAndTheJobGoesOn) {
  Worker worker(Config(0, 3), kStart);
  Response response = One(OpType::kAllreduce, "m");
  response.error_code = static_cast<int>(absl::StatusCode::kFailedPrecondition);
  response.error_message = "mismatched shapes";
  const Status admitted = worker.Admit(response, {true});
  EXPECT_EQ(admitted.code(), absl::StatusCode::kFailedPrecondition);
  bool tell_peers = true;
  EXPECT_EQ(worker.Fail(response, admitted, &tell_peers), admitted);
  EXPECT_FALSE(tell_peers);
  EXPECT_FALSE(worker.aborted());
  EXPECT_FALSE(worker.stopping());
  EXPECT_TRUE(worker.Admit(One(OpType::kAllreduce, "n"), {true}).ok());
}

TEST(Worker, AFailureAbortsTheJobAndEverythingAfterFailsWithIt) {
  Worker worker(Config(2, 3), kStart);
  const Response response = One(OpType::kAllreduce, "x");
  ASSERT_TRUE(worker.Admit(response, {true}).ok());
  bool tell_peers = false;
  const Status failed = worker.Fail(
      response, absl::ResourceExhaustedError("no memory"), &tell_peers);
  EXPECT_EQ(failed.code(), absl::StatusCode::kAborted);
  EXPECT_NE(failed.message().find("rank 2 could not run allreduce 'x': no "
                                  "memory"),
            std::string::npos)
      << failed;
  EXPECT_TRUE(tell_peers);  // its own failure: peers must be released
  EXPECT_TRUE(worker.aborted());
  EXPECT_TRUE(worker.stopping());
  // Nothing runs after it, not even the rest of the list.
  EXPECT_EQ(worker.Admit(One(OpType::kBroadcast, "y"), {true}), failed);
  // A later failure does not replace the first.
  worker.Abort(absl::AbortedError("later"));
  EXPECT_EQ(worker.abort_status(), failed);
}

TEST(Worker, APeersAbortIsPassedOnWithoutTellingThePeers) {
  Worker worker(Config(0, 2), kStart);
  bool tell_peers = true;
  const Status peer = absl::AbortedError("local rank 1 died");
  EXPECT_EQ(worker.Fail(One(OpType::kAllreduce, "x"), peer, &tell_peers), peer);
  EXPECT_FALSE(tell_peers);
  EXPECT_EQ(worker.abort_status(), peer);
}

TEST(Worker, ATensorNeverSubmittedIsAnErrorUnlessThisRankJoined) {
  Worker worker(Config(1, 2), kStart);
  const Status missing = worker.Admit(One(OpType::kBroadcast, "b"), {false});
  EXPECT_EQ(missing.code(), absl::StatusCode::kInternal);
  EXPECT_NE(missing.message().find(
                "rank 1 was told to run broadcast 'b', which it has not "
                "submitted"),
            std::string::npos)
      << missing;
  // A joined rank contributes zeros to allreduces.
  EXPECT_TRUE(worker.Admit(One(OpType::kAllreduce, "a"), {false}).ok());
  Response join;
  join.op = OpType::kJoin;
  EXPECT_TRUE(worker.Admit(join, {false}).ok());
}

TEST(Worker, ShutdownAndAbortTakeEffectAtTheEndOfTheirList) {
  Worker worker(Config(1, 3), kStart);
  ResponseList shutdown;
  shutdown.seq = 4;
  shutdown.shutdown = true;
  shutdown.shutdown_rank = 2;
  ASSERT_TRUE(worker.BeginList(shutdown).ok());
  EXPECT_FALSE(worker.stopping());
  worker.EndList(shutdown, false, kStart);
  EXPECT_TRUE(worker.stopping());
  EXPECT_FALSE(worker.aborted());
  EXPECT_EQ(worker.shutdown_rank(), 2);
  EXPECT_EQ(worker.applied_seq(), 4u);

  Worker other(Config(1, 3), kStart);
  ResponseList abort;
  abort.seq = 1;
  abort.abort_message = "rank 2 stopped responding";
  other.EndList(abort, false, kStart);
  EXPECT_TRUE(other.stopping());
  EXPECT_EQ(other.abort_status(),
            absl::AbortedError("rank 2 stopped responding"));
}

TEST(Worker, ASilentCoordinatorAbortsAfterThePeerTimeout) {
  Worker worker(Config(1, 2), kStart);  // peer timeout 5 s
  worker.CheckCoordinator(kStart + absl::Seconds(4));
  EXPECT_FALSE(worker.aborted());
  // Collectives ran until 4.5 s: nobody could talk meanwhile.
  ResponseList list;
  list.seq = 1;
  worker.EndList(list, /*executed=*/true, kStart + absl::Seconds(4.5));
  worker.CheckCoordinator(kStart + absl::Seconds(9));
  EXPECT_FALSE(worker.aborted());
  worker.CheckCoordinator(kStart + absl::Seconds(9.6));
  ASSERT_TRUE(worker.aborted());
  EXPECT_EQ(worker.abort_status().code(), absl::StatusCode::kAborted);
  EXPECT_NE(worker.abort_status().message().find(
                "rank 0 (the coordinator) stopped responding (no message for "
                "5 s; KOLO_PEER_TIMEOUT_SECONDS=5)"),
            std::string::npos)
      << worker.abort_status();

  Worker patient(
      [] {
        Worker::Config config = Config(1, 2);
        config.peer_timeout_seconds = 0;
        return config;
      }(),
      kStart);
  patient.CheckCoordinator(kStart + absl::Hours(24));
  EXPECT_FALSE(patient.aborted());
}

TEST(Worker, SendsAHeartbeatEveryHalfSecondWithNothingToSay) {
  Worker worker(Config(1, 2), kStart);
  EXPECT_TRUE(worker.ShouldSend(kStart, /*something_to_say=*/true));
  EXPECT_FALSE(worker.ShouldSend(kStart + absl::Milliseconds(499), false));
  EXPECT_TRUE(worker.ShouldSend(kStart + absl::Milliseconds(500), false));
  worker.RequestsSent(kStart + absl::Milliseconds(500));
  EXPECT_FALSE(worker.ShouldSend(kStart + absl::Milliseconds(900), false));
}

TEST(Worker, ThePollDoublesToTheCycleAndRestartsAfterActivity) {
  Worker worker(Config(1, 2), kStart);  // cycle 1 ms
  absl::Time now = kStart;
  Worker::Turn waiting;
  waiting.waiting = true;
  std::vector<absl::Duration> sleeps;
  for (int i = 0; i < 7; ++i) sleeps.push_back(worker.NextSleep(now, waiting));
  EXPECT_EQ(sleeps, (std::vector<absl::Duration>{
                        absl::Microseconds(40), absl::Microseconds(80),
                        absl::Microseconds(160), absl::Microseconds(320),
                        absl::Microseconds(640), absl::Milliseconds(1),
                        absl::Milliseconds(1)}));
  // Activity: back to the shortest poll, and keep looking for two cycles
  // even with nothing pending.
  Worker::Turn active;
  active.activity = true;
  EXPECT_EQ(worker.NextSleep(now, active), kMinPoll);
  EXPECT_TRUE(worker.Expecting(now + absl::Milliseconds(1), false));
  Worker::Turn idle;
  idle.reliable_bell = true;
  EXPECT_EQ(worker.NextSleep(now + absl::Milliseconds(1), idle),
            absl::Microseconds(40));
  // Past those two cycles: idle sleeps, long with a reliable bell.
  now += absl::Milliseconds(3);
  EXPECT_FALSE(worker.Expecting(now, false));
  EXPECT_TRUE(worker.Expecting(now, /*rang=*/true));
  EXPECT_EQ(worker.NextSleep(now, idle), kBellTimeout);
  Worker::Turn lossy;
  EXPECT_EQ(worker.NextSleep(now, lossy), kIdlePoll);
  Worker::Turn fast = idle;
  fast.fast_pending = true;
  EXPECT_EQ(worker.NextSleep(now, fast), absl::Milliseconds(1));
  fast.lane_deferred = true;
  EXPECT_EQ(worker.NextSleep(now, fast), kBackgroundDefer);
  // The cycle time a response list announces (autotune) takes over.
  ResponseList list;
  list.seq = 1;
  list.cycle_time_ms = 5;
  ASSERT_TRUE(worker.BeginList(list).ok());
  EXPECT_EQ(worker.cycle(), absl::Milliseconds(5));
}

// ---- N ranks as threads over the in-memory control plane
// ---------------------

// One rank's side of a job that negotiates `rounds` rounds of tensors, then
// shuts down (requested by the last rank) and says goodbye, the way
// Runtime's loop does: the Worker (and on rank 0 the Coordinator) on one
// thread per rank, messages through InMemoryControlPlane and the codec.
// `die_after` >= 0: this rank vanishes after that many rounds.
struct RankResult {
  int rounds_done = 0;
  Status end;  // OK: shut down cleanly; else the abort it saw
  int shutdown_rank = -1;
  int goodbyes = 0;
  std::string failure;  // a wrong resolution (empty: none)
};

RankResult RunRank(int rank, int size, int rounds, uint32_t seed, int die_after,
                   InMemoryControlPlane& plane) {
  RankResult result;
  std::mt19937 random(seed * 131 + rank);
  Options options;
  options.cache_capacity = 4;
  options.peer_timeout_seconds = 2;
  Worker::Config config = Config(rank, size, options.cache_capacity);
  config.peer_timeout_seconds = options.peer_timeout_seconds;
  Worker worker(config, absl::Now());
  std::unique_ptr<Coordinator> coordinator;
  if (rank == 0) coordinator = std::make_unique<Coordinator>(size, options);
  const WireLimits limits{size, options.cache_capacity};
  std::map<std::string, Request> outstanding;
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  int round = 0;
  bool shutdown_sent = false;
  // Rank 0 tells the workers it is alive (Runtime: every half second).
  absl::Time last_response_sent = absl::InfinitePast();

  auto send_requests = [&](std::vector<Request> fresh, bool shutdown,
                           bool goodbye) -> Status {
    RequestList list =
        worker.MakeRequestList(std::move(fresh), shutdown, goodbye);
    if (coordinator != nullptr) {
      return coordinator->HandleRequestList(list, absl::Now());
    }
    Status sent = plane.Send(
        0, std::make_shared<const std::string>(EncodeRequestList(list)));
    return sent.ok() ? plane.Pump() : sent;
  };
  auto apply = [&](ResponseList& list) -> Status {
    if (Status s = worker.BeginList(list); !s.ok()) return s;
    for (const Response& response : list.responses) {
      std::vector<bool> present;
      for (const ResponseTensor& tensor : response.tensors) {
        auto it = outstanding.find(tensor.request.name);
        present.push_back(it != outstanding.end());
        if (it == outstanding.end()) continue;
        if (!RequestForRank(CacheEntry{tensor.request, tensor.first_dims}, rank)
                 .SameAs(it->second)) {
          result.failure = "rank " + std::to_string(rank) + " resolved '" +
                           tensor.request.name + "' wrongly";
        }
        outstanding.erase(it);
      }
      Status status = worker.Admit(response, present);
      bool tell_peers = false;
      if (!status.ok()) status = worker.Fail(response, status, &tell_peers);
    }
    worker.EndList(list, !list.responses.empty(), absl::Now());
    return absl::OkStatus();
  };

  Status status;
  while (status.ok() && !worker.stopping() && absl::Now() < deadline) {
    const absl::Time now = absl::Now();
    if (outstanding.empty() && round == die_after) {
      plane.Close();  // this rank dies
      result.rounds_done = round;
      result.end = absl::AbortedError("died");
      return result;
    }
    std::vector<Request> fresh;
    bool shutdown = false;
    if (outstanding.empty() && round < rounds) {
      // Every rank the same tensors, each in its own order.
      for (int i = 0; i < 5; ++i) {
        const std::string name = "t" + std::to_string((round + i) % 7);
        Request request =
            Make(i % 2 ? OpType::kAllgather : OpType::kAllreduce, rank, name,
                 {1 + (i % 2) * rank, 2 + (round / 5) % 3});
        outstanding[name] = request;
        fresh.push_back(std::move(request));
      }
      std::shuffle(fresh.begin(), fresh.end(), random);
      ++round;
    } else if (outstanding.empty() && rank == size - 1 && !shutdown_sent) {
      shutdown = shutdown_sent = true;
    }
    if (worker.ShouldSend(now, !fresh.empty() || shutdown)) {
      status = send_requests(std::move(fresh), shutdown, false);
      worker.RequestsSent(now);
    }
    if (status.ok()) status = plane.Pump();
    while (status.ok()) {
      std::optional<ControlPlane::Message> message = plane.Next();
      if (!message.has_value()) break;
      if (coordinator != nullptr) {
        StatusOr<RequestList> list = DecodeRequestList(message->bytes, limits);
        status = list.ok() ? (list->goodbye
                                  ? (worker.GoodbyeReceived(), absl::OkStatus())
                                  : coordinator->HandleRequestList(*list, now))
                           : list.status();
      } else {
        StatusOr<ResponseList> list =
            DecodeResponseList(message->bytes, limits);
        worker.Heard(now);
        status = list.ok() ? apply(*list) : list.status();
      }
    }
    if (status.ok() && coordinator != nullptr) {
      std::optional<ResponseList> responses = coordinator->NextResponses(
          now, /*force=*/now - last_response_sent >= absl::Milliseconds(100));
      if (responses.has_value()) {
        last_response_sent = now;
        auto encoded =
            std::make_shared<const std::string>(EncodeResponseList(*responses));
        for (int r = 1; r < size && status.ok(); ++r) {
          status = plane.Send(r, encoded);
        }
        if (status.ok()) status = plane.Pump();
        if (status.ok()) status = apply(*responses);
      }
    }
    if (coordinator == nullptr) worker.CheckCoordinator(now);
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  result.rounds_done = round;
  if (!status.ok()) worker.Abort(status);
  result.end = worker.aborted()    ? worker.abort_status()
               : worker.stopping() ? absl::OkStatus()
                                   : absl::DeadlineExceededError("hung");
  result.shutdown_rank = worker.shutdown_rank();
  if (result.end.ok()) {
    // Goodbyes: workers say it, rank 0 waits for all of them.
    if (coordinator == nullptr) {
      send_requests({}, false, /*goodbye=*/true).IgnoreError();
    }
    while (coordinator != nullptr && !worker.AllSaidGoodbye() &&
           absl::Now() < deadline) {
      plane.Pump().IgnoreError();
      while (std::optional<ControlPlane::Message> m = plane.Next()) {
        StatusOr<RequestList> list = DecodeRequestList(m->bytes, limits);
        if (list.ok() && list->goodbye) worker.GoodbyeReceived();
      }
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    result.goodbyes = worker.goodbyes();
  }
  return result;
}

std::vector<RankResult> RunThreads(int size, int rounds, uint32_t seed,
                                   int dying_rank, int die_after) {
  std::vector<std::unique_ptr<InMemoryControlPlane>> planes =
      InMemoryControlPlane::Create(size);
  std::vector<RankResult> results(size);
  std::vector<std::thread> threads;
  for (int rank = 0; rank < size; ++rank) {
    threads.emplace_back([&, rank] {
      results[rank] =
          RunRank(rank, size, rounds, seed, rank == dying_rank ? die_after : -1,
                  *planes[rank]);
    });
  }
  for (std::thread& thread : threads) thread.join();
  return results;
}

TEST(WorkerThreads, RanksNegotiateShutDownAndSayGoodbye) {
  for (int size : {2, 3, 4}) {
    for (uint32_t seed : {1u, 2u}) {
      const std::vector<RankResult> results =
          RunThreads(size, /*rounds=*/40, seed, -1, -1);
      for (int rank = 0; rank < size; ++rank) {
        const RankResult& r = results[rank];
        SCOPED_TRACE("size " + std::to_string(size) + " seed " +
                     std::to_string(seed) + " rank " + std::to_string(rank));
        EXPECT_TRUE(r.end.ok()) << r.end;
        EXPECT_EQ(r.failure, "");
        EXPECT_EQ(r.rounds_done, 40);
        EXPECT_EQ(r.shutdown_rank, size - 1);
      }
      EXPECT_EQ(results[0].goodbyes, size - 1);
    }
  }
}

TEST(WorkerThreads, ARankThatDiesAbortsTheJobOnEveryOtherRank) {
  // Rank 2 of 3 vanishes after 5 rounds: rank 0 takes its silence for
  // death after the peer timeout (2 s) and aborts the job everywhere.
  const absl::Time start = absl::Now();
  const std::vector<RankResult> results = RunThreads(3, 40, 3, 2, 5);
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  EXPECT_EQ(results[2].rounds_done, 5);
  for (int rank : {0, 1}) {
    const Status& end = results[rank].end;
    EXPECT_EQ(end.code(), absl::StatusCode::kAborted) << "rank " << rank;
    EXPECT_NE(end.message().find("rank 2"), std::string::npos)
        << "rank " << rank << ": " << end;
    EXPECT_LT(results[rank].rounds_done, 40);
  }
}

}  // namespace
}  // namespace kolo
