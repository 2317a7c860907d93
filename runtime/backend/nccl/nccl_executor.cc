// Implementation of the NCCL executor.
#include "runtime/backend/nccl/nccl_executor.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kolo/kolo.h"
#include "runtime/backend/nccl/copy_kernel.h"
#include "runtime/backend/nccl/nccl_datatype.h"
#include "runtime/common/logging.h"
#include "runtime/op/operation.h"

namespace kolo {

bool NcclBuilt() { return true; }

std::unique_ptr<GpuExecutor> MakeGpuExecutor(GpuExecutorConfig config) {
  return std::make_unique<nccl::NcclExecutor>(std::move(config));
}

namespace nccl {
namespace {

static_assert(sizeof(ncclUniqueId) == kNcclUniqueIdBytes,
              "ncclUniqueId changed size");

// The shortest time NCCL set-up may take before it counts as a dead peer.
constexpr double kMinPeerWaitSeconds = 30;
// At a clean shutdown: how long queued GPU work may take to finish.
constexpr double kDrainSeconds = 30;

std::string DeviceName(const Device& device) {
  return device.kind == Device::kCpu ? std::string("cpu")
                                     : absl::StrCat("cuda:", device.index);
}

Status CudaError(cudaError_t error, const char* call, const std::string& what) {
  return absl::InternalError(absl::StrCat(call, " failed for ", what, ": ",
                                          cudaGetErrorString(error)));
}

#define KOLO_CUDA_RETURN_IF_ERROR(call, what)                 \
  do {                                                        \
    if (cudaError_t error_ = (call); error_ != cudaSuccess) { \
      return CudaError(error_, #call, what);                  \
    }                                                         \
  } while (0)

ncclRedOp_t NcclRedOp(NcclOp op) {
  switch (op) {
    case NcclOp::kSum:
      return ncclSum;
    case NcclOp::kProd:
      return ncclProd;
    case NcclOp::kMax:
      return ncclMax;
    case NcclOp::kMin:
      return ncclMin;
    case NcclOp::kAvg:
      return ncclAvg;
  }
  return ncclSum;
}

// "allreduce 'a', 'b'": how errors name a response's tensors.
std::string Describe(const Response& response) {
  std::vector<std::string> names;
  for (const ResponseTensor& t : response.tensors) {
    names.push_back(absl::StrCat("'", t.request.name, "'"));
  }
  return absl::StrCat(OpTypeName(response.op), " ", absl::StrJoin(names, ", "));
}

// bool travels as uint8 through copies (no conversion needed).
DataType CopyType(DataType dtype) {
  return dtype == DataType::kBool ? DataType::kUint8 : dtype;
}

// Restores the calling thread's current device on scope exit.
class ScopedDevice {
 public:
  explicit ScopedDevice(int device) {
    if (cudaGetDevice(&previous_) != cudaSuccess) previous_ = -1;
    if (previous_ != device) error_ = cudaSetDevice(device);
  }
  ~ScopedDevice() {
    if (previous_ >= 0 && error_ == cudaSuccess) cudaSetDevice(previous_);
  }
  cudaError_t error() const { return error_; }

 private:
  int previous_ = -1;
  cudaError_t error_ = cudaSuccess;
};

}  // namespace

EventPool::~EventPool() {
  MutexLock lock(&mu_);
  for (CudaEvent* event : free_) {
    cudaEventDestroy(event->event);
    delete event;
  }
}

StatusOr<std::shared_ptr<CudaEvent>> EventPool::Acquire() {
  CudaEvent* event = nullptr;
  {
    MutexLock lock(&mu_);
    if (!free_.empty()) {
      event = free_.back();
      free_.pop_back();
    }
  }
  if (event == nullptr) {
    cudaEvent_t handle;
    KOLO_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&handle, flags_),
                              "an event");
    event = new CudaEvent{handle};
  }
  std::shared_ptr<EventPool> pool = shared_from_this();
  return std::shared_ptr<CudaEvent>(event,
                                    [pool](CudaEvent* e) { pool->Release(e); });
}

void EventPool::Release(CudaEvent* event) {
  MutexLock lock(&mu_);
  free_.push_back(event);
}

NcclExecutor::NcclExecutor(GpuExecutorConfig config)
    : config_(std::move(config)),
      ready_events_(std::make_shared<EventPool>(cudaEventDisableTiming)),
      done_events_(std::make_shared<EventPool>(cudaEventBlockingSync |
                                               cudaEventDisableTiming)),
      mark_events_(std::make_shared<EventPool>(cudaEventDefault)) {}

NcclExecutor::~NcclExecutor() {
  if (!finished_) Shutdown();
}

Status NcclExecutor::UseDevice(const std::string& name, const char* role,
                               const Device& device) {
  MutexLock lock(&device_mu_);
  if (!probed_) {
    probed_ = true;
    const cudaError_t error = cudaGetDeviceCount(&device_count_);
    if (error != cudaSuccess || device_count_ == 0) {
      device_count_ = 0;
      no_device_reason_ = error != cudaSuccess
                              ? cudaGetErrorString(error)
                              : "the CUDA driver reports 0 devices";
    }
  }
  if (device_count_ == 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "'", name, "': ", role, " is a CUDA tensor (", DeviceName(device),
        "), but no CUDA device is visible to this process "
        "(cudaGetDeviceCount: ",
        no_device_reason_, ")"));
  }
  if (device.index < 0 || device.index >= device_count_) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", name, "': ", role, " is on ", DeviceName(device),
                     ", but this process sees ", device_count_, " CUDA device",
                     device_count_ == 1 ? "" : "s"));
  }
  if (device_ < 0) device_ = device.index;
  if (device_ != device.index) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", name, "': ", role, " is on ", DeviceName(device),
        ", but this process already uses cuda:", device_,
        "; kolo drives one GPU per process (its NCCL communicator is bound "
        "to it)"));
  }
  return absl::OkStatus();
}

Status NcclExecutor::Prepare(std::vector<Entry>& entries) {
  for (Entry& entry : entries) {
    if (entry.input.device.kind != Device::kCuda) continue;
    const std::string& name = entry.request.name;
    if (Status s = UseDevice(name, "input", entry.input.device); !s.ok()) {
      return s;
    }
    // The event must belong to the tensor's device, and the legacy default
    // stream (null) is the current device's.
    ScopedDevice scoped(entry.input.device.index);
    KOLO_CUDA_RETURN_IF_ERROR(scoped.error(), absl::StrCat("'", name, "'"));
    StatusOr<std::shared_ptr<CudaEvent>> ready = ready_events_->Acquire();
    if (!ready.ok()) return ready.status();
    KOLO_CUDA_RETURN_IF_ERROR(
        cudaEventRecord((*ready)->event,
                        static_cast<cudaStream_t>(entry.input.cuda_stream)),
        absl::StrCat("'", name, "' (on its producer stream)"));
    entry.cuda_ready = *std::move(ready);
  }
  return absl::OkStatus();
}

StatusOr<std::string> NcclExecutor::MakeUniqueId() {
  ncclUniqueId id;
  const ncclResult_t result = ncclGetUniqueId(&id);
  if (result != ncclSuccess) {
    return absl::InternalError(absl::StrCat(
        "ncclGetUniqueId failed on rank 0: ", ncclGetErrorString(result), " (",
        ncclGetLastError(nullptr), ")"));
  }
  return std::string(id.internal, sizeof(id.internal));
}

void NcclExecutor::SetUniqueId(const std::string& id) { unique_id_ = id; }

absl::Time NcclExecutor::PeerDeadline() const {
  if (config_.peer_timeout_seconds <= 0) return absl::InfiniteFuture();
  return absl::Now() + absl::Seconds(std::max(config_.peer_timeout_seconds,
                                              kMinPeerWaitSeconds));
}

Status NcclExecutor::NcclCheck(ncclResult_t result, ncclComm_t comm,
                               const char* call, const std::string& what) {
  const absl::Time deadline = PeerDeadline();
  absl::Duration nap = absl::Microseconds(20);
  while (result == ncclInProgress) {
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          call, " for ", what, " did not finish within ",
          std::max(config_.peer_timeout_seconds, kMinPeerWaitSeconds),
          " s (KOLO_PEER_TIMEOUT_SECONDS): a peer has probably failed"));
    }
    std::this_thread::sleep_for(absl::ToChronoNanoseconds(nap));
    nap = std::min(nap * 2, absl::Milliseconds(10));
    ncclResult_t state = ncclSuccess;
    const ncclResult_t queried = ncclCommGetAsyncError(comm, &state);
    result = queried != ncclSuccess ? queried : state;
  }
  if (result != ncclSuccess) {
    return absl::InternalError(absl::StrCat(call, " failed for ", what, ": ",
                                            ncclGetErrorString(result), " (",
                                            ncclGetLastError(comm), ")"));
  }
  return absl::OkStatus();
}

Status NcclExecutor::WaitForStream(const std::string& what) {
  // Why not cudaEventSynchronize: the NCCL kernels queued ahead wait for
  // peers, and a dead peer would then block this (the background) thread
  // forever, so it could never notice the death and abort the communicators
  // (docs/design.md: nothing hangs). An NCCL asynchronous error (e.g. a remote
  // peer's failure on a network transport) ends the wait at once.
  if (staged_ == nullptr) {
    StatusOr<std::shared_ptr<CudaEvent>> event = done_events_->Acquire();
    if (!event.ok()) return event.status();
    staged_ = *std::move(event);
  }
  KOLO_CUDA_RETURN_IF_ERROR(cudaEventRecord(staged_->event, stream_), what);
  const absl::Time deadline = PeerDeadline();
  absl::Duration nap = absl::Microseconds(10);
  while (true) {
    const cudaError_t state = cudaEventQuery(staged_->event);
    if (state == cudaSuccess) return absl::OkStatus();
    if (state != cudaErrorNotReady) {
      return CudaError(state, "cudaEventQuery", what);
    }
    for (ncclComm_t comm : {local_comm_, comm_}) {
      if (comm == nullptr) continue;
      ncclResult_t async = ncclSuccess;
      if (ncclCommGetAsyncError(comm, &async) == ncclSuccess &&
          async != ncclSuccess && async != ncclInProgress) {
        return absl::InternalError(absl::StrCat(
            "NCCL failed while ", what, " waited for the GPU: ",
            ncclGetErrorString(async), " (", ncclGetLastError(comm), ")"));
      }
    }
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          what, ": the GPU did not finish within ",
          std::max(config_.peer_timeout_seconds, kMinPeerWaitSeconds),
          " s (KOLO_PEER_TIMEOUT_SECONDS): a peer has probably failed"));
    }
    std::this_thread::sleep_for(absl::ToChronoNanoseconds(nap));
    nap = std::min(nap * 2, absl::Milliseconds(1));
  }
}

#define KOLO_NCCL_RETURN_IF_ERROR(call, comm, what)                \
  do {                                                             \
    if (Status status_ = NcclCheck((call), (comm), #call, (what)); \
        !status_.ok()) {                                           \
      return status_;                                              \
    }                                                              \
  } while (0)

Status NcclExecutor::EnsureStarted() {
  if (comm_ != nullptr) return absl::OkStatus();
  const std::string what = absl::StrCat("rank ", config_.rank);
  if (unique_id_.size() != kNcclUniqueIdBytes) {
    return absl::InternalError(
        "no NCCL unique id arrived before the first CUDA collective");
  }
  {
    MutexLock lock(&device_mu_);
    if (device_ < 0) {
      // A rank that joined before it ever submitted a CUDA tensor still
      // takes part (with zeros): it uses the conventional local-rank GPU.
      if (!probed_) {
        probed_ = true;
        if (cudaGetDeviceCount(&device_count_) != cudaSuccess) {
          device_count_ = 0;
        }
      }
      if (device_count_ == 0) {
        return absl::FailedPreconditionError(absl::StrCat(
            "rank ", config_.rank,
            " must take part in a CUDA collective, but no CUDA device is "
            "visible to it"));
      }
      device_ = config_.local_rank % device_count_;
    }
    active_device_ = device_;
  }
  KOLO_CUDA_RETURN_IF_ERROR(cudaSetDevice(active_device_), what);
  KOLO_CUDA_RETURN_IF_ERROR(
      cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), what);
  // Scratch memory comes from a pool of kolo's own that keeps what it has
  // (release threshold: unlimited), so steady-state training allocates
  // nothing; the process-wide default pool is left alone.
  cudaMemPoolProps props = {};
  props.allocType = cudaMemAllocationTypePinned;
  props.location.type = cudaMemLocationTypeDevice;
  props.location.id = active_device_;
  KOLO_CUDA_RETURN_IF_ERROR(cudaMemPoolCreate(&pool_, &props), what);
  uint64_t keep = std::numeric_limits<uint64_t>::max();
  KOLO_CUDA_RETURN_IF_ERROR(
      cudaMemPoolSetAttribute(pool_, cudaMemPoolAttrReleaseThreshold, &keep),
      what);

  ncclUniqueId id;
  std::memcpy(id.internal, unique_id_.data(), sizeof(id.internal));
  ncclConfig_t nccl_config = NCCL_CONFIG_INITIALIZER;
  nccl_config.blocking = 0;
  ncclComm_t comm = nullptr;
  const ncclResult_t started = ncclCommInitRankConfig(
      &comm, config_.size, id, config_.rank, &nccl_config);
  comm_ = comm;
  if (Status s = NcclCheck(started, comm_, "ncclCommInitRankConfig", what);
      !s.ok()) {
    return s;
  }
  if (config_.hierarchical && config_.local_size < config_.size) {
    ncclComm_t local = nullptr;
    const ncclResult_t split = ncclCommSplit(
        comm_, config_.host_color, config_.local_rank, &local, &nccl_config);
    local_comm_ = local;
    if (Status s = NcclCheck(split, local_comm_ ? local_comm_ : comm_,
                             "ncclCommSplit", what);
        !s.ok()) {
      return s;
    }
    // The split is a non-blocking operation of the parent too: make sure
    // the parent is no longer in progress before it runs collectives
    // (returns at once when it is ready).
    ncclResult_t parent = ncclSuccess;
    const ncclResult_t queried = ncclCommGetAsyncError(comm_, &parent);
    if (Status s = NcclCheck(queried != ncclSuccess ? queried : parent, comm_,
                             "ncclCommSplit (parent)", what);
        !s.ok()) {
      return s;
    }
    StatusOr<std::unique_ptr<Backend>> cross = config_.make_cross_backend();
    if (!cross.ok()) return cross.status();
    cross_ = *std::move(cross);
  }
  finisher_ = std::thread([this] { FinisherLoop(); });
  Log().info("NCCL communicator ready: rank {} of {} on cuda:{}{}",
             config_.rank, config_.size, active_device_,
             cross_ ? ", hierarchical allreduce" : "");
  return absl::OkStatus();
}

bool NcclExecutor::timed() const {
  return config_.timeline != nullptr && config_.timeline->active();
}

Status NcclExecutor::Mark(InFlight* item, const std::string& activity) {
  if (!timed()) return absl::OkStatus();
  StatusOr<std::shared_ptr<CudaEvent>> mark = mark_events_->Acquire();
  if (!mark.ok()) return mark.status();
  KOLO_CUDA_RETURN_IF_ERROR(cudaEventRecord((*mark)->event, stream_),
                            "the timeline");
  item->phases.emplace_back(activity, *std::move(mark));
  return absl::OkStatus();
}

Status NcclExecutor::Execute(const Response& response,
                             std::vector<Entry>& entries,
                             std::vector<bool>& present) {
  if (finished_) return absl::CancelledError("kolo's NCCL backend has stopped");
  InFlight item;
  Status status = EnsureStarted();
  if (status.ok()) {
    const int64_t start_ns = TimelineNowNs();
    for (const ResponseTensor& tensor : response.tensors) {
      item.names.push_back(tensor.request.name);
      if (timed()) config_.timeline->Queued(tensor.request.name, start_ns);
    }
    // The stream waits for each producer; the event can be reused at once
    // (the wait captured its state).
    for (size_t i = 0; i < entries.size() && status.ok(); ++i) {
      if (!present[i] || entries[i].cuda_ready == nullptr) continue;
      const cudaError_t error =
          cudaStreamWaitEvent(stream_, entries[i].cuda_ready->event, 0);
      if (error != cudaSuccess) {
        status = CudaError(error, "cudaStreamWaitEvent",
                           absl::StrCat("'", entries[i].request.name, "'"));
      }
      entries[i].cuda_ready.reset();
    }
  }
  if (status.ok()) status = Run(response, entries, present, &item);
  if (status.ok() && timed()) {
    StatusOr<std::shared_ptr<CudaEvent>> end = mark_events_->Acquire();
    status = end.status();
    if (status.ok()) {
      item.end = *std::move(end);
      const cudaError_t error = cudaEventRecord(item.end->event, stream_);
      if (error != cudaSuccess)
        status = CudaError(error, "cudaEventRecord", "the timeline");
    }
  }
  if (status.ok()) {
    StatusOr<std::shared_ptr<CudaEvent>> done = done_events_->Acquire();
    status = done.status();
    if (status.ok()) {
      item.done = *std::move(done);
      const cudaError_t error = cudaEventRecord(item.done->event, stream_);
      if (error != cudaSuccess) {
        status = CudaError(error, "cudaEventRecord", Describe(response));
      }
    }
  }
  if (!status.ok()) {
    // Peers may be inside NCCL waiting for this rank: stop the job.
    return absl::AbortedError(
        absl::StrCat("the NCCL backend failed on rank ", config_.rank,
                     " running ", Describe(response), ": ", status.message()));
  }
  for (size_t i = 0; i < entries.size(); ++i) {
    if (!present[i]) continue;
    item.entries.push_back(std::move(entries[i]));
    present[i] = false;
  }
  MutexLock lock(&mu_);
  in_flight_.push_back(std::move(item));
  ++outstanding_;
  changed_.SignalAll();
  return absl::OkStatus();
}

Status NcclExecutor::Run(const Response& response, std::vector<Entry>& entries,
                         const std::vector<bool>& present, InFlight* item) {
  const std::string activity =
      absl::AsciiStrToUpper(absl::StrCat("nccl_", OpTypeName(response.op)));
  switch (response.op) {
    case OpType::kAllreduce:
      return Allreduce(response, entries, present, item);
    case OpType::kAllgather:
      if (Status s = Mark(item, activity); !s.ok()) return s;
      return Allgather(response, entries.front());
    case OpType::kBroadcast: {
      if (Status s = Mark(item, activity); !s.ok()) return s;
      Entry& entry = entries.front();
      KOLO_NCCL_RETURN_IF_ERROR(
          ncclBroadcast(entry.output.data, entry.output.data,
                        entry.output.size_bytes(), ncclUint8, response.root,
                        comm_, stream_),
          comm_, Describe(response));
      return absl::OkStatus();
    }
    case OpType::kAlltoall:
      if (Status s = Mark(item, activity); !s.ok()) return s;
      return Alltoall(response, entries.front());
    case OpType::kReducescatter:
      return Reducescatter(response, entries.front(), item);
    case OpType::kBarrier:
    case OpType::kJoin:
      break;
  }
  return absl::InternalError(
      absl::StrCat(OpTypeName(response.op), " does not run on the GPU"));
}

StatusOr<char*> NcclExecutor::WorkBuffer(int64_t bytes, bool* scratch,
                                         const std::string& what) {
  *scratch = false;
  if (bytes <= config_.fusion_threshold_bytes) {
    if (fusion_buffer_ == nullptr) {
      void* buffer = nullptr;
      KOLO_CUDA_RETURN_IF_ERROR(
          cudaMalloc(&buffer, config_.fusion_threshold_bytes),
          absl::StrCat("the fusion buffer (", config_.fusion_threshold_bytes,
                       " bytes)"));
      fusion_buffer_ = static_cast<char*>(buffer);
    }
    return fusion_buffer_;
  }
  void* buffer = nullptr;
  KOLO_CUDA_RETURN_IF_ERROR(
      cudaMallocFromPoolAsync(&buffer, std::max<int64_t>(bytes, 1), pool_,
                              stream_),
      absl::StrCat(what, " (", bytes, " bytes of scratch memory)"));
  *scratch = true;
  return static_cast<char*>(buffer);
}

Status NcclExecutor::FreeScratch(char* buffer, const std::string& what) {
  KOLO_CUDA_RETURN_IF_ERROR(cudaFreeAsync(buffer, stream_), what);
  return absl::OkStatus();
}

Status NcclExecutor::Copy(const std::vector<CopyTask>& tasks, DataType src,
                          DataType dst, double scale, int64_t divisor,
                          const std::string& what) {
  for (const CopyBatch& batch :
       BuildCopyBatches(tasks, CopyType(src), CopyType(dst), scale, divisor)) {
    KOLO_CUDA_RETURN_IF_ERROR(LaunchCopyBatch(batch, stream_), what);
  }
  return absl::OkStatus();
}

Status NcclExecutor::Allreduce(const Response& response,
                               std::vector<Entry>& entries,
                               const std::vector<bool>& present,
                               InFlight* item) {
  const std::string what = Describe(response);
  const bool hierarchical = cross_ != nullptr;
  const ReductionPlan plan =
      PlanReduction(response.dtype, response.reduce_op, response.prescale,
                    response.postscale, response.contributors, config_.size,
                    /*avg_allowed=*/!hierarchical);
  const StatusOr<ncclDataType_t> wire_type = NcclDatatype(plan.wire_dtype);
  if (!wire_type.ok()) return wire_type.status();
  const ncclDataType_t type = *wire_type;
  const ncclRedOp_t op = NcclRedOp(plan.op);
  if (!hierarchical && response.tensors.size() == 1 && plan.direct &&
      present[0]) {
    if (Status s = Mark(item, "NCCL_ALLREDUCE"); !s.ok()) return s;
    Entry& entry = entries.front();
    KOLO_NCCL_RETURN_IF_ERROR(
        ncclAllReduce(entry.input.data, entry.output.data,
                      entry.request.num_elements(), type, op, comm_, stream_),
        comm_, what);
    return absl::OkStatus();
  }
  // Pack, reduce in place, unpack.
  std::vector<int64_t> counts;
  for (const ResponseTensor& t : response.tensors) {
    counts.push_back(t.request.num_elements());
  }
  const std::vector<int64_t> offsets = PackOffsets(counts);
  const int64_t total = offsets.back();
  const int64_t padded =
      hierarchical ? PaddedCount(total, config_.local_size) : total;
  const int64_t wire_bytes = DataTypeSize(plan.wire_dtype);
  bool scratch = false;
  StatusOr<char*> work = WorkBuffer(padded * wire_bytes, &scratch, what);
  if (!work.ok()) return work.status();
  if (Status s = Mark(item, "MEMCPY_IN_FUSION_BUFFER"); !s.ok()) return s;
  std::vector<CopyTask> pack;
  for (size_t i = 0; i < counts.size(); ++i) {
    char* slot = *work + offsets[i] * wire_bytes;
    if (present[i]) {
      pack.push_back({entries[i].input.data, slot, counts[i]});
    } else if (counts[i] > 0) {
      KOLO_CUDA_RETURN_IF_ERROR(
          cudaMemsetAsync(slot, 0, counts[i] * wire_bytes, stream_), what);
    }
  }
  if (Status s =
          Copy(pack, response.dtype, plan.wire_dtype, plan.prescale, 1, what);
      !s.ok()) {
    return s;
  }
  if (Status s = Mark(item, "NCCL_ALLREDUCE"); !s.ok()) return s;
  if (hierarchical) {
    if (Status s = HierarchicalAllreduce(*work, padded, plan, response.dtype,
                                         response.reduce_op, what);
        !s.ok()) {
      return s;
    }
  } else {
    KOLO_NCCL_RETURN_IF_ERROR(
        ncclAllReduce(*work, *work, total, type, op, comm_, stream_), comm_,
        what);
  }
  if (Status s = Mark(item, "MEMCPY_OUT_FUSION_BUFFER"); !s.ok()) return s;
  std::vector<CopyTask> unpack;
  for (size_t i = 0; i < counts.size(); ++i) {
    if (present[i]) {
      unpack.push_back(
          {*work + offsets[i] * wire_bytes, entries[i].output.data, counts[i]});
    }
  }
  if (Status s = Copy(unpack, plan.wire_dtype, response.dtype, plan.postscale,
                      plan.divisor, what);
      !s.ok()) {
    return s;
  }
  return scratch ? FreeScratch(*work, what) : absl::OkStatus();
}

Status NcclExecutor::HierarchicalAllreduce(char* work, int64_t count,
                                           const ReductionPlan& plan,
                                           DataType dtype, ReduceOp op,
                                           const std::string& what) {
  const StatusOr<ncclDataType_t> wire_type = NcclDatatype(plan.wire_dtype);
  if (!wire_type.ok()) return wire_type.status();
  const ncclDataType_t type = *wire_type;
  const int64_t element = DataTypeSize(plan.wire_dtype);
  const int64_t shard = count / config_.local_size;
  char* mine = work + config_.local_rank * shard * element;
  KOLO_NCCL_RETURN_IF_ERROR(
      ncclReduceScatter(work, mine, shard, type, NcclRedOp(plan.op),
                        local_comm_, stream_),
      local_comm_, what);
  if (shard * element > host_staging_bytes_) {
    // The previous staging buffer's last use, the copy back to the device of
    // the previous hierarchical allreduce, may still be queued: let it
    // finish before freeing the memory it reads.
    if (host_staging_ != nullptr) {
      if (Status s = WaitForStream(what); !s.ok()) return s;
      cudaFreeHost(host_staging_);
    }
    host_staging_ = nullptr;
    host_staging_bytes_ = 0;
    void* staging = nullptr;
    KOLO_CUDA_RETURN_IF_ERROR(cudaMallocHost(&staging, shard * element), what);
    host_staging_ = static_cast<char*>(staging);
    host_staging_bytes_ = shard * element;
  }
  KOLO_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(host_staging_, mine, shard * element,
                      cudaMemcpyDeviceToHost, stream_),
      what);
  if (Status s = WaitForStream(what); !s.ok()) return s;
  // Across hosts in the CPU data plane's semantics: bool keeps its logical
  // op, everything else is the wire dtype and NCCL's op (the average's
  // divisor is applied by the unpack copy).
  ReductionSpec spec;
  spec.dtype = dtype == DataType::kBool ? DataType::kBool : plan.wire_dtype;
  spec.op = op == ReduceOp::kAverage ? ReduceOp::kSum : op;
  if (Status s = cross_->Allreduce(host_staging_, shard, spec); !s.ok()) {
    return absl::AbortedError(absl::StrCat(
        "hierarchical allreduce across hosts for ", what, ": ", s.message()));
  }
  KOLO_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(mine, host_staging_, shard * element,
                      cudaMemcpyHostToDevice, stream_),
      what);
  KOLO_NCCL_RETURN_IF_ERROR(
      ncclAllGather(mine, work, shard, type, local_comm_, stream_), local_comm_,
      what);
  return absl::OkStatus();
}

Status NcclExecutor::AllocateOutput(Entry& entry,
                                    const std::vector<int64_t>& shape) {
  entry.operation->output_shapes[entry.member] = shape;
  entry.output.dtype = entry.input.dtype;
  entry.output.shape = shape;
  entry.output.device = entry.input.device;
  entry.output.cuda_stream = entry.input.cuda_stream;
  const int64_t bytes = entry.output.size_bytes();
  if (entry.allocator) {
    StatusOr<void*> memory = entry.allocator(shape);
    if (!memory.ok()) return memory.status();
    if (*memory == nullptr && bytes > 0) {
      return absl::InternalError(
          absl::StrCat("the output allocator of '", entry.request.name,
                       "' returned no memory for ", bytes, " bytes"));
    }
    entry.output.data = *memory;
    // The allocator ran on this thread for the caller's stream, and a caching
    // allocator (LibTorch's) may hand out memory that work queued on that
    // stream after the submission (after the ready event) still uses. kolo's
    // stream writes the output, so it first waits for that stream's work
    // queued until now too.
    StatusOr<std::shared_ptr<CudaEvent>> queued = ready_events_->Acquire();
    if (!queued.ok()) return queued.status();
    KOLO_CUDA_RETURN_IF_ERROR(
        cudaEventRecord((*queued)->event,
                        static_cast<cudaStream_t>(entry.output.cuda_stream)),
        absl::StrCat("the output of '", entry.request.name,
                     "' (on its producer stream)"));
    KOLO_CUDA_RETURN_IF_ERROR(
        cudaStreamWaitEvent(stream_, (*queued)->event, 0),
        absl::StrCat("the output of '", entry.request.name, "'"));
    return absl::OkStatus();
  }
  void* memory = nullptr;
  KOLO_CUDA_RETURN_IF_ERROR(cudaMalloc(&memory, std::max<int64_t>(bytes, 1)),
                            absl::StrCat("the output of '", entry.request.name,
                                         "' (", bytes, " bytes)"));
  entry.operation->owned_outputs[entry.member].reset(
      memory, [](void* p) { cudaFree(p); });
  entry.output.data = memory;
  return absl::OkStatus();
}

Status NcclExecutor::Allgather(const Response& response, Entry& entry) {
  const std::string what = Describe(response);
  const std::vector<int64_t>& shape = entry.request.shape;
  const int64_t row_bytes = RowElements(shape) * DataTypeSize(response.dtype);
  const RankLayout layout =
      AllgatherLayout(response.tensors.front().first_dims, row_bytes);
  std::vector<int64_t> output_shape = shape;
  if (output_shape.empty()) output_shape.push_back(1);
  output_shape[0] = 0;
  for (int64_t rows : response.tensors.front().first_dims) {
    output_shape[0] += rows;
  }
  if (Status s = AllocateOutput(entry, output_shape); !s.ok()) return s;
  char* output = static_cast<char*>(entry.output.data);
  if (layout.equal) {
    KOLO_NCCL_RETURN_IF_ERROR(
        ncclAllGather(entry.input.data, output, layout.sizes.front(), ncclUint8,
                      comm_, stream_),
        comm_, what);
    return absl::OkStatus();
  }
  KOLO_NCCL_RETURN_IF_ERROR(ncclGroupStart(), comm_, what);
  for (int r = 0; r < config_.size; ++r) {
    char* slot = output + layout.offsets[r];
    const void* source = r == config_.rank ? entry.input.data : slot;
    const ncclResult_t result = ncclBroadcast(source, slot, layout.sizes[r],
                                              ncclUint8, r, comm_, stream_);
    if (result != ncclSuccess) {
      ncclGroupEnd();
      return NcclCheck(result, comm_, "ncclBroadcast", what);
    }
  }
  KOLO_NCCL_RETURN_IF_ERROR(ncclGroupEnd(), comm_, what);
  return absl::OkStatus();
}

Status NcclExecutor::Alltoall(const Response& response, Entry& entry) {
  const std::string what = Describe(response);
  const std::vector<int64_t>& shape = entry.request.shape;
  const int64_t row_bytes = RowElements(shape) * DataTypeSize(response.dtype);
  AlltoallLayout layout =
      PlanAlltoall(response.splits, config_.size, config_.rank, row_bytes);
  std::vector<int64_t> output_shape = shape;
  if (output_shape.empty()) output_shape.push_back(1);
  output_shape[0] = layout.output_rows;
  if (Status s = AllocateOutput(entry, output_shape); !s.ok()) return s;
  entry.operation->received_splits = std::move(layout.received_rows);
  const char* input = static_cast<const char*>(entry.input.data);
  char* output = static_cast<char*>(entry.output.data);
  KOLO_NCCL_RETURN_IF_ERROR(ncclGroupStart(), comm_, what);
  for (int r = 0; r < config_.size; ++r) {
    ncclResult_t result = ncclSuccess;
    if (layout.send.sizes[r] > 0) {
      result = ncclSend(input + layout.send.offsets[r], layout.send.sizes[r],
                        ncclUint8, r, comm_, stream_);
    }
    if (result == ncclSuccess && layout.recv.sizes[r] > 0) {
      result = ncclRecv(output + layout.recv.offsets[r], layout.recv.sizes[r],
                        ncclUint8, r, comm_, stream_);
    }
    if (result != ncclSuccess) {
      ncclGroupEnd();
      return NcclCheck(result, comm_, "ncclSend/ncclRecv", what);
    }
  }
  KOLO_NCCL_RETURN_IF_ERROR(ncclGroupEnd(), comm_, what);
  return absl::OkStatus();
}

Status NcclExecutor::Reducescatter(const Response& response, Entry& entry,
                                   InFlight* item) {
  const std::string what = Describe(response);
  const std::vector<int64_t>& shape = entry.request.shape;
  const RankLayout layout =
      ReducescatterLayout(Rows(shape), RowElements(shape), config_.size);
  std::vector<int64_t> output_shape = shape;
  if (output_shape.empty()) output_shape.push_back(1);
  output_shape[0] = ReducescatterRows(Rows(shape), config_.size, config_.rank);
  if (Status s = AllocateOutput(entry, output_shape); !s.ok()) return s;
  const ReductionPlan plan =
      PlanReduction(response.dtype, response.reduce_op, 1.0, 1.0,
                    response.contributors, config_.size, /*avg_allowed=*/true);
  const StatusOr<ncclDataType_t> wire_type = NcclDatatype(plan.wire_dtype);
  if (!wire_type.ok()) return wire_type.status();
  const ncclDataType_t type = *wire_type;
  const ncclRedOp_t op = NcclRedOp(plan.op);
  const int64_t own = layout.sizes[config_.rank];
  if (layout.equal && plan.direct) {
    if (Status s = Mark(item, "NCCL_REDUCESCATTER"); !s.ok()) return s;
    KOLO_NCCL_RETURN_IF_ERROR(
        ncclReduceScatter(entry.input.data, entry.output.data, own, type, op,
                          comm_, stream_),
        comm_, what);
    return absl::OkStatus();
  }
  const int64_t wire_bytes = DataTypeSize(plan.wire_dtype);
  bool scratch = false;
  StatusOr<char*> work = WorkBuffer(layout.total * wire_bytes, &scratch, what);
  if (!work.ok()) return work.status();
  char* share = *work + layout.offsets[config_.rank] * wire_bytes;
  if (Status s = Mark(item, "MEMCPY_IN_FUSION_BUFFER"); !s.ok()) return s;
  if (Status s = Copy({{entry.input.data, *work, layout.total}}, response.dtype,
                      plan.wire_dtype, 1.0, 1, what);
      !s.ok()) {
    return s;
  }
  if (Status s = Mark(item, "NCCL_REDUCESCATTER"); !s.ok()) return s;
  if (layout.equal) {
    KOLO_NCCL_RETURN_IF_ERROR(
        ncclReduceScatter(*work, share, own, type, op, comm_, stream_), comm_,
        what);
  } else {
    KOLO_NCCL_RETURN_IF_ERROR(
        ncclAllReduce(*work, *work, layout.total, type, op, comm_, stream_),
        comm_, what);
  }
  if (Status s = Mark(item, "MEMCPY_OUT_FUSION_BUFFER"); !s.ok()) return s;
  if (Status s = Copy({{share, entry.output.data, own}}, plan.wire_dtype,
                      response.dtype, plan.postscale, plan.divisor, what);
      !s.ok()) {
    return s;
  }
  return scratch ? FreeScratch(*work, what) : absl::OkStatus();
}

void NcclExecutor::FinisherLoop() {
  cudaSetDevice(active_device_);
  while (true) {
    InFlight item;
    {
      MutexLock lock(&mu_);
      while (in_flight_.empty() && !stopping_) changed_.Wait(&mu_);
      if (in_flight_.empty()) return;
      item = std::move(in_flight_.front());
      in_flight_.pop_front();
    }
    const cudaError_t error = cudaEventSynchronize(item.done->event);
    const int64_t end_ns = TimelineNowNs();
    Status status;
    {
      MutexLock lock(&mu_);
      status = abort_status_;
    }
    if (status.ok() && error != cudaSuccess) {
      status = absl::InternalError(absl::StrCat(
          "the GPU failed running ", absl::StrJoin(item.names, ", "),
          " (cudaEventSynchronize: ", cudaGetErrorString(error), ")"));
    }
    if (status.ok() && item.end != nullptr && timed()) {
      // Phase boundaries on the host clock, measured back from the end.
      auto ns_before_end = [&](const std::shared_ptr<CudaEvent>& mark) {
        float ms = 0;
        cudaEventElapsedTime(&ms, mark->event, item.end->event);
        return end_ns - static_cast<int64_t>(ms * 1e6);
      };
      for (size_t p = 0; p < item.phases.size(); ++p) {
        const int64_t start = ns_before_end(item.phases[p].second);
        const int64_t stop = p + 1 < item.phases.size()
                                 ? ns_before_end(item.phases[p + 1].second)
                                 : end_ns;
        for (const std::string& name : item.names) {
          config_.timeline->Span(name, item.phases[p].first, start, stop);
        }
      }
    }
    for (Entry& entry : item.entries) config_.complete(entry, status);
    item.entries.clear();
    MutexLock lock(&mu_);
    --outstanding_;
    changed_.SignalAll();
  }
}

void NcclExecutor::StopFinisher() {
  {
    MutexLock lock(&mu_);
    stopping_ = true;
    changed_.SignalAll();
  }
  if (finisher_.joinable()) finisher_.join();
}

void NcclExecutor::Abort(const Status& status) {
  if (finished_) return;
  finished_ = true;
  {
    MutexLock lock(&mu_);
    abort_status_ = status;
  }
  // NCCL kernels waiting for a dead peer exit once their communicator is
  // aborted; then the finisher's waits return and it fails the entries.
  if (active_device_ >= 0) cudaSetDevice(active_device_);
  if (local_comm_ != nullptr) ncclCommAbort(local_comm_);
  if (comm_ != nullptr) ncclCommAbort(comm_);
  local_comm_ = nullptr;
  comm_ = nullptr;
  StopFinisher();
  ReleaseResources(/*abort=*/true);
}

void NcclExecutor::Shutdown() {
  if (finished_) return;
  bool drained = true;
  {
    MutexLock lock(&mu_);
    const absl::Time deadline = absl::Now() + absl::Seconds(kDrainSeconds);
    while (outstanding_ > 0 && absl::Now() < deadline) {
      changed_.WaitWithTimeout(&mu_,
                               absl::ToDoubleSeconds(deadline - absl::Now()));
    }
    drained = outstanding_ == 0;
  }
  if (!drained) {
    Log().warn(
        "shutdown: GPU collectives did not finish within {} s; "
        "aborting the NCCL communicator",
        kDrainSeconds);
    Abort(absl::CancelledError(
        "kolo was shut down while GPU collectives were still running"));
    return;
  }
  finished_ = true;
  StopFinisher();
  if (active_device_ >= 0) cudaSetDevice(active_device_);
  // Children first. Finalize waits (boundedly) until peers are quiescent,
  // so destroying frees local resources only; on failure, abort.
  for (ncclComm_t* comm : {&local_comm_, &comm_}) {
    if (*comm == nullptr) continue;
    Status s = NcclCheck(ncclCommFinalize(*comm), *comm, "ncclCommFinalize",
                         "shutdown");
    if (s.ok()) {
      ncclCommDestroy(*comm);
    } else {
      Log().warn("shutdown: {}; aborting the communicator", s.ToString());
      ncclCommAbort(*comm);
    }
    *comm = nullptr;
  }
  ReleaseResources(/*abort=*/false);
}

void NcclExecutor::ReleaseResources(bool abort) {
  if (active_device_ < 0) return;
  // After an abort the stream may still wait for a producer's event that
  // never fires: do not wait for it.
  if (!abort && stream_ != nullptr) cudaStreamSynchronize(stream_);
  cross_.reset();
  staged_.reset();
  if (fusion_buffer_ != nullptr) cudaFree(fusion_buffer_);
  if (host_staging_ != nullptr) cudaFreeHost(host_staging_);
  fusion_buffer_ = nullptr;
  host_staging_ = nullptr;
  host_staging_bytes_ = 0;
  if (pool_ != nullptr) cudaMemPoolDestroy(pool_);
  pool_ = nullptr;
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
  stream_ = nullptr;
}

}  // namespace nccl
}  // namespace kolo
