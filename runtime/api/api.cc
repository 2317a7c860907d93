// kolo's C++ API (kolo/kolo.h): argument checks on the calling thread, then
// the runtime's queue.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <memory>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kolo/kolo.h"
#include "runtime/common/mutex.h"
#include "runtime/common/reduce.h"
#include "runtime/core/config.h"
#include "runtime/core/executor.h"
#include "runtime/core/mpi_context.h"
#include "runtime/core/runtime.h"
#include "runtime/wire/codec.h"

namespace kolo {
namespace {

Mutex g_mu;
std::shared_ptr<Runtime> g_runtime ABSL_GUARDED_BY(g_mu);
bool g_shut_down ABSL_GUARDED_BY(g_mu) = false;
std::atomic<int64_t> g_barriers{0};

StatusOr<std::shared_ptr<Runtime>> Running() {
  MutexLock lock(&g_mu);
  if (g_runtime != nullptr) return g_runtime;
  if (g_shut_down) return absl::CancelledError("kolo has been shut down");
  return absl::FailedPreconditionError(
      "kolo is not initialized: call kolo::Init() (or kolo_init()) first");
}

Status CheckTensor(const std::string& name, const Tensor& tensor,
                   const char* role) {
  if (!IsValidDataType(static_cast<int>(tensor.dtype))) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", name, "': ", role, " has invalid dtype ",
                     static_cast<int>(tensor.dtype)));
  }
  if (tensor.shape.size() > static_cast<size_t>(kMaxDims)) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", name, "': ", role, " has ", tensor.shape.size(),
                     " dimensions; kolo supports at most ", kMaxDims));
  }
  for (int64_t d : tensor.shape) {
    if (d < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", name, "': ", role, " has a negative dimension in [",
                       absl::StrJoin(tensor.shape, ", "), "]"));
    }
  }
  if (tensor.data == nullptr && tensor.num_elements() > 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", name, "': ", role, " has ", tensor.num_elements(),
                     " elements but no memory (data is null)"));
  }
  if (tensor.device.kind != Device::kCpu &&
      tensor.device.kind != Device::kCuda) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", name, "': ", role, " has invalid device kind ",
                     static_cast<int>(tensor.device.kind)));
  }
  if (tensor.device.kind == Device::kCuda) {
    if (!NcclBuilt()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "'", name, "': ", role,
          " is a CUDA tensor, but this kolo build has no NCCL backend"));
    }
    if (tensor.device.index < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", name, "': ", role,
                       " has invalid CUDA device index ", tensor.device.index));
    }
  }
  // The runtime checks the rest of a CUDA tensor (a GPU present, one device
  // per process) when it records the tensor's ready event.
  return absl::OkStatus();
}

std::string DeviceName(const Device& device) {
  return device.kind == Device::kCuda ? absl::StrCat("cuda:", device.index)
                                      : std::string("cpu");
}

// Names of the application's operations: not empty, not too long for a
// negotiation message, and not in kolo's own namespace (its barriers and
// join travel under "kolo." names).
Status CheckName(const std::string& name) {
  if (name.empty()) {
    return absl::InvalidArgumentError("operation name must not be empty");
  }
  if (name.size() > kMaxNameBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "operation name '", name.substr(0, 64), "...' has ", name.size(),
        " bytes; kolo accepts at most ", kMaxNameBytes));
  }
  if (absl::StartsWith(name, kReservedPrefix)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "operation name '", name, "' starts with '", kReservedPrefix,
        "', which kolo reserves for its own operations"));
  }
  return absl::OkStatus();
}

Request MakeRequest(const Runtime& runtime, OpType op, const std::string& name,
                    const Tensor& tensor) {
  Request request;
  request.rank = runtime.mpi().rank();
  request.op = op;
  request.name = name;
  request.dtype = tensor.dtype;
  request.shape = tensor.shape;
  request.device = tensor.device;
  return request;
}

Status CheckReduction(const std::string& name, DataType dtype, ReduceOp op,
                      double prescale, double postscale) {
  if (!IsValidReduceOp(static_cast<int>(op))) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", name, "': invalid reduce op ", static_cast<int>(op)));
  }
  if (dtype == DataType::kBool &&
      (op == ReduceOp::kAverage || prescale != 1.0 || postscale != 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", name, "': bool tensors cannot be averaged or scaled"));
  }
  return absl::OkStatus();
}

// The identity of a group of `names` (empty for a single tensor, which is no
// group): its first name, its size and a digest of every name, so that ranks
// grouping the same names (in any order) agree on it, and a rank grouping
// other names does not, even where the groups share members. The digest is
// 64-bit FNV-1a, written out because it must come out the same in every
// process (absl::Hash is seeded per process).
std::string GroupKey(const std::vector<std::string>& names) {
  if (names.size() < 2) return "";
  std::vector<std::string> sorted = names;
  std::sort(sorted.begin(), sorted.end());
  uint64_t digest = 14695981039346656037ull;
  for (const std::string& name : sorted) {
    for (unsigned char c : name) digest = (digest ^ c) * 1099511628211ull;
    digest = (digest ^ 0xff) * 1099511628211ull;  // ends each name
  }
  return absl::StrCat(sorted.front(), "#", sorted.size(), "#",
                      absl::Hex(digest, absl::kZeroPad16));
}

int32_t GroupSize(const std::vector<std::string>& names) {
  return names.size() > 1 ? static_cast<int32_t>(names.size()) : 0;
}

// Checks the arguments common to every grouped call.
Status CheckGroup(const char* operation, const std::vector<std::string>& names,
                  size_t inputs, size_t allocators) {
  if (names.empty() || names.size() != inputs ||
      (allocators != 0 && allocators != names.size())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "grouped ", operation,
        " needs as many names as inputs (and no allocators or one per "
        "input); got ",
        names.size(), " names, ", inputs, " inputs and ", allocators,
        " allocators"));
  }
  return absl::OkStatus();
}

// What Adasum's recursive halving can run (kolo/types.h). Every rank
// checks its own submission, so a refused one fails on every rank at once.
Status CheckAdasum(const std::string& name, const Tensor& tensor, int size) {
  if (size <= 0 || (size & (size - 1)) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "allreduce '", name,
        "': adasum needs a power-of-two number of ranks; this job has ", size));
  }
  const DataType dtype = tensor.dtype;
  if (dtype != DataType::kFloat32 && dtype != DataType::kFloat64 &&
      !IsHalfType(dtype)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "allreduce '", name,
        "': adasum needs float16, bfloat16, float32 or float64, not ",
        DataTypeName(dtype)));
  }
  if (tensor.device.kind != Device::kCpu) {
    return absl::InvalidArgumentError(absl::StrCat(
        "allreduce '", name, "': adasum runs on the CPU planes only; ",
        "the tensor is on ", DeviceName(tensor.device)));
  }
  return absl::OkStatus();
}

// Queues one single-entry operation and returns its handle.
StatusOr<Handle> Submit(Runtime& runtime, Entry entry) {
  auto operation = std::make_shared<internal::Operation>(1);
  entry.operation = operation;
  std::vector<Entry> entries;
  entries.push_back(std::move(entry));
  if (Status s = runtime.Enqueue(std::move(entries)); !s.ok()) return s;
  return Handle(std::move(operation));
}

void ShutdownAtExit() { Shutdown().IgnoreError(); }

}  // namespace

Status Init() {
  StatusOr<Options> options = OptionsFromEnvironment();
  if (!options.ok()) return options.status();
  return InitWithOptions(*options);
}

Status InitWithOptions(const Options& options) {
  MutexLock lock(&g_mu);
  if (g_runtime != nullptr) return absl::OkStatus();
  StatusOr<std::unique_ptr<Runtime>> runtime = Runtime::Start(options);
  if (!runtime.ok()) return runtime.status();
  g_runtime = *std::move(runtime);
  g_shut_down = false;
  static const bool registered = std::atexit(ShutdownAtExit) == 0;
  (void)registered;
  return absl::OkStatus();
}

Status Shutdown() {
  std::shared_ptr<Runtime> runtime;
  {
    MutexLock lock(&g_mu);
    runtime.swap(g_runtime);
    if (runtime != nullptr) g_shut_down = true;
  }
  if (runtime != nullptr) runtime->Shutdown();
  return absl::OkStatus();
}

bool IsInitialized() {
  MutexLock lock(&g_mu);
  return g_runtime != nullptr;
}

#define KOLO_TOPOLOGY(Function, field)                \
  int Function() {                                    \
    MutexLock lock(&g_mu);                            \
    return g_runtime ? g_runtime->mpi().field() : -1; \
  }
KOLO_TOPOLOGY(Rank, rank)
KOLO_TOPOLOGY(Size, size)
KOLO_TOPOLOGY(LocalRank, local_rank)
KOLO_TOPOLOGY(LocalSize, local_size)
KOLO_TOPOLOGY(CrossRank, cross_rank)
KOLO_TOPOLOGY(CrossSize, cross_size)
#undef KOLO_TOPOLOGY

StatusOr<Handle> AllreduceAsync(const std::string& name, const Tensor& input,
                                const Tensor& output,
                                const AllreduceOptions& options) {
  return GroupedAllreduceAsync({name}, {input}, {output}, options);
}

StatusOr<Handle> GroupedAllreduceAsync(const std::vector<std::string>& names,
                                       const std::vector<Tensor>& inputs,
                                       const std::vector<Tensor>& outputs,
                                       const AllreduceOptions& options) {
  StatusOr<std::shared_ptr<Runtime>> runtime = Running();
  if (!runtime.ok()) return runtime.status();
  if (names.empty() || names.size() != inputs.size() ||
      names.size() != outputs.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "grouped allreduce needs as many names, inputs and outputs (got ",
        names.size(), ", ", inputs.size(), ", ", outputs.size(), ")"));
  }
  const std::string group_key = GroupKey(names);
  auto operation = std::make_shared<internal::Operation>(names.size());
  std::vector<Entry> entries;
  for (size_t i = 0; i < names.size(); ++i) {
    const std::string& name = names[i];
    if (Status s = CheckName(name); !s.ok()) return s;
    if (Status s = CheckTensor(name, inputs[i], "input"); !s.ok()) return s;
    if (Status s = CheckTensor(name, outputs[i], "output"); !s.ok()) return s;
    if (inputs[i].dtype != outputs[i].dtype ||
        inputs[i].num_elements() != outputs[i].num_elements()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "allreduce '", name, "': output (", DataTypeName(outputs[i].dtype),
          ", ", outputs[i].num_elements(), " elements) differs from input (",
          DataTypeName(inputs[i].dtype), ", ", inputs[i].num_elements(),
          " elements)"));
    }
    if (!(inputs[i].device == outputs[i].device)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "allreduce '", name, "': output is on ",
          DeviceName(outputs[i].device), " but input is on ",
          DeviceName(inputs[i].device), "; both must be on one device"));
    }
    if (Status s =
            CheckReduction(name, inputs[i].dtype, options.op,
                           options.prescale_factor, options.postscale_factor);
        !s.ok()) {
      return s;
    }
    if (options.op == ReduceOp::kAdasum) {
      if (Status s = CheckAdasum(name, inputs[i], (*runtime)->mpi().size());
          !s.ok()) {
        return s;
      }
    }
    Entry entry;
    entry.request = MakeRequest(**runtime, OpType::kAllreduce, name, inputs[i]);
    entry.request.reduce_op = options.op;
    entry.request.prescale = options.prescale_factor;
    entry.request.postscale = options.postscale_factor;
    entry.request.group_key = group_key;
    entry.request.group_size = GroupSize(names);
    entry.input = inputs[i];
    entry.output = outputs[i];
    entry.operation = operation;
    entry.member = static_cast<int>(i);
    entries.push_back(std::move(entry));
  }
  if (Status s = (*runtime)->Enqueue(std::move(entries)); !s.ok()) return s;
  return Handle(std::move(operation));
}

StatusOr<Handle> AllgatherAsync(const std::string& name, const Tensor& input,
                                OutputAllocator allocator) {
  return GroupedAllgatherAsync({name}, {input}, {std::move(allocator)});
}

StatusOr<Handle> GroupedAllgatherAsync(
    const std::vector<std::string>& names, const std::vector<Tensor>& inputs,
    std::vector<OutputAllocator> allocators) {
  StatusOr<std::shared_ptr<Runtime>> runtime = Running();
  if (!runtime.ok()) return runtime.status();
  if (Status s =
          CheckGroup("allgather", names, inputs.size(), allocators.size());
      !s.ok()) {
    return s;
  }
  const std::string group_key = GroupKey(names);
  auto operation = std::make_shared<internal::Operation>(names.size());
  std::vector<Entry> entries;
  for (size_t i = 0; i < names.size(); ++i) {
    if (Status s = CheckName(names[i]); !s.ok()) return s;
    if (Status s = CheckTensor(names[i], inputs[i], "input"); !s.ok()) return s;
    Entry entry;
    entry.request =
        MakeRequest(**runtime, OpType::kAllgather, names[i], inputs[i]);
    entry.request.group_key = group_key;
    entry.request.group_size = GroupSize(names);
    entry.input = inputs[i];
    if (!allocators.empty()) entry.allocator = std::move(allocators[i]);
    entry.operation = operation;
    entry.member = static_cast<int>(i);
    entries.push_back(std::move(entry));
  }
  if (Status s = (*runtime)->Enqueue(std::move(entries)); !s.ok()) return s;
  return Handle(std::move(operation));
}

StatusOr<Handle> BroadcastAsync(const std::string& name, const Tensor& buffer,
                                int root_rank) {
  StatusOr<std::shared_ptr<Runtime>> runtime = Running();
  if (!runtime.ok()) return runtime.status();
  if (Status s = CheckName(name); !s.ok()) return s;
  if (Status s = CheckTensor(name, buffer, "buffer"); !s.ok()) return s;
  const int size = (*runtime)->mpi().size();
  if (root_rank < 0 || root_rank >= size) {
    return absl::InvalidArgumentError(
        absl::StrCat("broadcast '", name, "': root rank ", root_rank,
                     " is outside [0, ", size, ")"));
  }
  Entry entry;
  entry.request = MakeRequest(**runtime, OpType::kBroadcast, name, buffer);
  entry.request.root = root_rank;
  entry.input = buffer;
  entry.output = buffer;
  return Submit(**runtime, std::move(entry));
}

StatusOr<Handle> AlltoallAsync(const std::string& name, const Tensor& input,
                               std::vector<int64_t> splits,
                               OutputAllocator allocator) {
  StatusOr<std::shared_ptr<Runtime>> runtime = Running();
  if (!runtime.ok()) return runtime.status();
  if (Status s = CheckName(name); !s.ok()) return s;
  if (Status s = CheckTensor(name, input, "input"); !s.ok()) return s;
  const int size = (*runtime)->mpi().size();
  const int64_t rows = Rows(input.shape);
  if (splits.empty()) {
    if (rows % size != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("alltoall '", name, "': first dimension ", rows,
                       " does not divide by ", size, " ranks; pass splits"));
    }
    splits.assign(size, rows / size);
  }
  if (static_cast<int>(splits.size()) != size) {
    return absl::InvalidArgumentError(
        absl::StrCat("alltoall '", name, "': ", splits.size(),
                     " splits given for ", size, " ranks"));
  }
  int64_t total = 0;
  for (int64_t split : splits) {
    if (split < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("alltoall '", name, "': negative split ", split));
    }
    total += split;
  }
  if (total != rows) {
    return absl::InvalidArgumentError(
        absl::StrCat("alltoall '", name, "': splits add up to ", total,
                     " rows but the first dimension is ", rows));
  }
  Entry entry;
  entry.request = MakeRequest(**runtime, OpType::kAlltoall, name, input);
  entry.request.splits = std::move(splits);
  entry.input = input;
  entry.allocator = std::move(allocator);
  return Submit(**runtime, std::move(entry));
}

StatusOr<Handle> ReducescatterAsync(const std::string& name,
                                    const Tensor& input,
                                    OutputAllocator allocator, ReduceOp op) {
  return GroupedReducescatterAsync({name}, {input}, op, {std::move(allocator)});
}

StatusOr<Handle> GroupedReducescatterAsync(
    const std::vector<std::string>& names, const std::vector<Tensor>& inputs,
    ReduceOp op, std::vector<OutputAllocator> allocators) {
  StatusOr<std::shared_ptr<Runtime>> runtime = Running();
  if (!runtime.ok()) return runtime.status();
  if (Status s =
          CheckGroup("reducescatter", names, inputs.size(), allocators.size());
      !s.ok()) {
    return s;
  }
  const std::string group_key = GroupKey(names);
  auto operation = std::make_shared<internal::Operation>(names.size());
  std::vector<Entry> entries;
  for (size_t i = 0; i < names.size(); ++i) {
    const std::string& name = names[i];
    if (Status s = CheckName(name); !s.ok()) return s;
    if (Status s = CheckTensor(name, inputs[i], "input"); !s.ok()) return s;
    if (Status s = CheckReduction(name, inputs[i].dtype, op, 1.0, 1.0);
        !s.ok()) {
      return s;
    }
    if (op == ReduceOp::kAdasum) {
      return absl::InvalidArgumentError(absl::StrCat(
          "reducescatter '", name, "': adasum is an allreduce op only"));
    }
    Entry entry;
    entry.request =
        MakeRequest(**runtime, OpType::kReducescatter, name, inputs[i]);
    entry.request.reduce_op = op;
    entry.request.group_key = group_key;
    entry.request.group_size = GroupSize(names);
    entry.input = inputs[i];
    if (!allocators.empty()) entry.allocator = std::move(allocators[i]);
    entry.operation = operation;
    entry.member = static_cast<int>(i);
    entries.push_back(std::move(entry));
  }
  if (Status s = (*runtime)->Enqueue(std::move(entries)); !s.ok()) return s;
  return Handle(std::move(operation));
}

Status Barrier() {
  StatusOr<std::shared_ptr<Runtime>> runtime = Running();
  if (!runtime.ok()) return runtime.status();
  Entry entry;
  entry.request.rank = (*runtime)->mpi().rank();
  entry.request.op = OpType::kBarrier;
  entry.request.name = absl::StrCat(kReservedPrefix, "barrier.", g_barriers++);
  entry.request.dtype = DataType::kUint8;
  StatusOr<Handle> handle = Submit(**runtime, std::move(entry));
  if (!handle.ok()) return handle.status();
  return handle->Wait();
}

StatusOr<int> Join() {
  StatusOr<std::shared_ptr<Runtime>> runtime = Running();
  if (!runtime.ok()) return runtime.status();
  Entry entry;
  entry.request.rank = (*runtime)->mpi().rank();
  entry.request.op = OpType::kJoin;
  entry.request.name = kJoinName;
  entry.request.dtype = DataType::kUint8;
  StatusOr<Handle> handle = Submit(**runtime, std::move(entry));
  if (!handle.ok()) return handle.status();
  if (Status s = handle->Wait(); !s.ok()) return s;
  return handle->last_joined_rank();
}

Status Allreduce(const std::string& name, const Tensor& input,
                 const Tensor& output, const AllreduceOptions& options) {
  StatusOr<Handle> handle = AllreduceAsync(name, input, output, options);
  if (!handle.ok()) return handle.status();
  return handle->Wait();
}

Status Broadcast(const std::string& name, const Tensor& buffer, int root_rank) {
  StatusOr<Handle> handle = BroadcastAsync(name, buffer, root_rank);
  if (!handle.ok()) return handle.status();
  return handle->Wait();
}

Status StartTimeline(const std::string& path, bool mark_cycles) {
  StatusOr<std::shared_ptr<Runtime>> runtime = Running();
  if (!runtime.ok()) return runtime.status();
  return (*runtime)->StartTimeline(path, mark_cycles);
}

Status StopTimeline() {
  StatusOr<std::shared_ptr<Runtime>> runtime = Running();
  if (!runtime.ok()) return runtime.status();
  (*runtime)->StopTimeline();
  return absl::OkStatus();
}

std::string BackendName() {
  MutexLock lock(&g_mu);
  return g_runtime ? g_runtime->backend_name() : "";
}

std::string MpiLibrary() { return MpiLibraryName(); }

RuntimeStats GetStats() {
  MutexLock lock(&g_mu);
  return g_runtime ? g_runtime->stats() : RuntimeStats{};
}

}  // namespace kolo
