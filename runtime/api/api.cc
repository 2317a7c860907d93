// kolo's C++ API (kolo/kolo.h): argument checks on the calling thread, then
// the runtime's queue.
#include <mpi.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kolo/kolo.h"
#include "kolo/process_set.h"
#include "runtime/common/mpi_context.h"
#include "runtime/common/mutex.h"
#include "runtime/common/reduce.h"
#include "runtime/core/config.h"
#include "runtime/core/executor.h"
#include "runtime/core/runtime.h"
#include "runtime/wire/codec.h"

namespace kolo {
namespace {

Mutex g_mu;
std::shared_ptr<Runtime> g_runtime ABSL_GUARDED_BY(g_mu);
bool g_shut_down ABSL_GUARDED_BY(g_mu) = false;

// A process set as this rank knows it.
struct SetState {
  std::vector<int> ranks;            // global ranks, ascending
  std::shared_ptr<Runtime> runtime;  // null where this rank is no member
};
std::map<int, SetState> g_sets ABSL_GUARDED_BY(g_mu);
// Removed sets' ranks, for the error of a later use.
std::map<int, std::vector<int>> g_removed_sets ABSL_GUARDED_BY(g_mu);
int g_next_set ABSL_GUARDED_BY(g_mu) = 1;
// One add or remove at a time on this rank (they are collective).
Mutex g_change_mu ABSL_ACQUIRED_BEFORE(g_mu);

std::string RankList(const std::vector<int>& ranks) {
  return absl::StrCat("[", absl::StrJoin(ranks, ", "), "]");
}

StatusOr<std::shared_ptr<Runtime>> Running() ABSL_LOCKS_EXCLUDED(g_mu) {
  MutexLock lock(&g_mu);
  if (g_runtime != nullptr) return g_runtime;
  if (g_shut_down) return absl::CancelledError("kolo has been shut down");
  return absl::FailedPreconditionError(
      "kolo is not initialized: call kolo::Init() (or kolo_init()) first");
}

// The runtime of process set `id` on this rank, and the set's global ranks
// (empty for the global set, whose ranks are its positions).
struct Target {
  std::shared_ptr<Runtime> runtime;
  std::vector<int> ranks;
  // Global rank of the set's `rank`-th member.
  int Global(int rank) const {
    return ranks.empty() || rank < 0 || rank >= static_cast<int>(ranks.size())
               ? rank
               : ranks[rank];
  }
};

StatusOr<Target> Resolve(int id) {
  StatusOr<std::shared_ptr<Runtime>> global = Running();
  if (!global.ok()) return global.status();
  if (id == 0) return Target{*std::move(global), {}};
  MutexLock lock(&g_mu);
  auto found = g_sets.find(id);
  if (found == g_sets.end()) {
    auto removed = g_removed_sets.find(id);
    if (removed != g_removed_sets.end()) {
      return absl::FailedPreconditionError(
          absl::StrCat("process set ", id, " (ranks ",
                       RankList(removed->second), ") has been removed"));
    }
    return absl::NotFoundError(
        absl::StrCat("there is no process set ", id,
                     " (kolo::AddProcessSet returns the sets it creates)"));
  }
  if (found->second.runtime == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rank ", (*global)->mpi().rank(), " is not in process set ", id,
        " (ranks ", RankList(found->second.ranks),
        "): only its members may submit to it"));
  }
  return Target{found->second.runtime, found->second.ranks};
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

// Queues the members of a group (or a single tensor: one name) as one
// operation: each member's name and input are checked, then check(i) checks
// the rest of member i; fill(i, entry) adds what is particular to the
// operation to its entry.
StatusOr<Handle> SubmitGroup(Runtime& runtime, OpType op,
                             const std::vector<std::string>& names,
                             const std::vector<Tensor>& inputs,
                             const std::function<Status(size_t)>& check,
                             const std::function<void(size_t, Entry&)>& fill) {
  const std::string group_key = GroupKey(names);
  auto operation = std::make_shared<internal::Operation>(names.size());
  std::vector<Entry> entries;
  for (size_t i = 0; i < names.size(); ++i) {
    if (Status s = CheckName(names[i]); !s.ok()) return s;
    if (Status s = CheckTensor(names[i], inputs[i], "input"); !s.ok()) return s;
    if (Status s = check(i); !s.ok()) return s;
    Entry entry;
    entry.request = MakeRequest(runtime, op, names[i], inputs[i]);
    entry.request.group_key = group_key;
    entry.request.group_size = GroupSize(names);
    entry.input = inputs[i];
    entry.operation = operation;
    entry.member = static_cast<int>(i);
    fill(i, entry);
    entries.push_back(std::move(entry));
  }
  if (Status s = runtime.Enqueue(std::move(entries)); !s.ok()) return s;
  return Handle(std::move(operation));
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

// Every rank's `payload`, gathered through the global runtime under kolo's
// own name: how ranks agree on a change of the process sets. The allgather
// negotiates like any other, so a rank that never calls is reported as a
// stall rather than hanging the others.
StatusOr<std::vector<std::vector<int64_t>>> GatherFromAll(
    Runtime& global, const std::vector<int64_t>& payload) {
  std::vector<int64_t> mine;
  mine.push_back(static_cast<int64_t>(payload.size()));
  mine.insert(mine.end(), payload.begin(), payload.end());
  auto gathered = std::make_shared<std::vector<int64_t>>();
  Entry entry;
  entry.request.rank = global.mpi().rank();
  entry.request.op = OpType::kAllgather;
  entry.request.name = absl::StrCat(kReservedPrefix, "process_sets");
  entry.request.dtype = DataType::kInt64;
  entry.request.shape = {static_cast<int64_t>(mine.size())};
  entry.input.data = mine.data();
  entry.input.dtype = DataType::kInt64;
  entry.input.shape = entry.request.shape;
  entry.allocator =
      [gathered](const std::vector<int64_t>& shape) -> StatusOr<void*> {
    gathered->resize(static_cast<size_t>(shape.empty() ? 1 : shape[0]));
    return static_cast<void*>(gathered->data());
  };
  StatusOr<Handle> handle = Submit(global, std::move(entry));
  if (!handle.ok()) return handle.status();
  if (Status s = handle->Wait(); !s.ok()) return s;
  std::vector<std::vector<int64_t>> all;
  size_t at = 0;
  while (at < gathered->size()) {
    const int64_t length = (*gathered)[at++];
    if (length < 0 || static_cast<size_t>(length) > gathered->size() - at) {
      return absl::InternalError("malformed process-set agreement message");
    }
    all.emplace_back(gathered->begin() + at, gathered->begin() + at + length);
    at += static_cast<size_t>(length);
  }
  if (static_cast<int>(all.size()) != global.mpi().size()) {
    return absl::InternalError(absl::StrCat("process-set agreement gathered ",
                                            all.size(), " messages for ",
                                            global.mpi().size(), " ranks"));
  }
  return all;
}

std::string DescribeChange(const std::vector<int64_t>& payload) {
  if (payload.empty()) return "nothing";
  std::vector<int64_t> rest(payload.begin() + 1, payload.end());
  switch (payload[0]) {
    case 1:
      return absl::StrCat("to add a set of ranks [", absl::StrJoin(rest, ", "),
                          "]");
    case 2:
      return absl::StrCat("to remove process set ", absl::StrJoin(rest, ", "));
    default:
      return "something else";
  }
}

// Fails (on every rank alike: all see the same messages) unless every rank
// asked for the same change.
Status CheckSameChange(const std::vector<std::vector<int64_t>>& all) {
  for (size_t r = 1; r < all.size(); ++r) {
    if (all[r] != all[0]) {
      return absl::FailedPreconditionError(absl::StrCat(
          "process sets must be changed by every rank alike: rank 0 asked ",
          DescribeChange(all[0]), ", rank ", r, " asked ",
          DescribeChange(all[r])));
    }
  }
  return absl::OkStatus();
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
  std::map<int, SetState> sets;
  {
    MutexLock lock(&g_mu);
    runtime.swap(g_runtime);
    sets.swap(g_sets);
    g_removed_sets.clear();
    g_next_set = 1;
    if (runtime != nullptr) g_shut_down = true;
  }
  // The sets first: their runtimes stop their members' pending operations.
  for (auto& [id, set] : sets) {
    if (set.runtime != nullptr) set.runtime->Shutdown();
  }
  sets.clear();
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

StatusOr<Handle> ProcessSet::AllreduceAsync(
    const std::string& name, const Tensor& input, const Tensor& output,
    const AllreduceOptions& options) const {
  return GroupedAllreduceAsync({name}, {input}, {output}, options);
}

StatusOr<Handle> ProcessSet::GroupedAllreduceAsync(
    const std::vector<std::string>& names, const std::vector<Tensor>& inputs,
    const std::vector<Tensor>& outputs, const AllreduceOptions& options) const {
  StatusOr<Target> target = Resolve(id_);
  if (!target.ok()) return target.status();
  std::shared_ptr<Runtime>* runtime = &target->runtime;
  if (names.empty() || names.size() != inputs.size() ||
      names.size() != outputs.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "grouped allreduce needs as many names, inputs and outputs (got ",
        names.size(), ", ", inputs.size(), ", ", outputs.size(), ")"));
  }
  const int size = (*runtime)->mpi().size();
  auto check = [&](size_t i) -> Status {
    const std::string& name = names[i];
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
    return options.op == ReduceOp::kAdasum ? CheckAdasum(name, inputs[i], size)
                                           : absl::OkStatus();
  };
  return SubmitGroup(**runtime, OpType::kAllreduce, names, inputs, check,
                     [&](size_t i, Entry& entry) {
                       entry.request.reduce_op = options.op;
                       entry.request.prescale = options.prescale_factor;
                       entry.request.postscale = options.postscale_factor;
                       entry.request.priority = options.priority;
                       entry.output = outputs[i];
                     });
}

StatusOr<Handle> ProcessSet::AllgatherAsync(const std::string& name,
                                            const Tensor& input,
                                            OutputAllocator allocator) const {
  return GroupedAllgatherAsync({name}, {input}, {std::move(allocator)});
}

StatusOr<Handle> ProcessSet::GroupedAllgatherAsync(
    const std::vector<std::string>& names, const std::vector<Tensor>& inputs,
    std::vector<OutputAllocator> allocators) const {
  StatusOr<Target> target = Resolve(id_);
  if (!target.ok()) return target.status();
  std::shared_ptr<Runtime>* runtime = &target->runtime;
  if (Status s =
          CheckGroup("allgather", names, inputs.size(), allocators.size());
      !s.ok()) {
    return s;
  }
  return SubmitGroup(
      **runtime, OpType::kAllgather, names, inputs,
      [](size_t) { return absl::OkStatus(); },
      [&](size_t i, Entry& entry) {
        if (!allocators.empty()) entry.allocator = std::move(allocators[i]);
      });
}

StatusOr<Handle> ProcessSet::BroadcastAsync(const std::string& name,
                                            const Tensor& buffer,
                                            int root_rank) const {
  StatusOr<Target> target = Resolve(id_);
  if (!target.ok()) return target.status();
  std::shared_ptr<Runtime>* runtime = &target->runtime;
  if (Status s = CheckName(name); !s.ok()) return s;
  if (Status s = CheckTensor(name, buffer, "buffer"); !s.ok()) return s;
  int root = root_rank;
  if (target->ranks.empty()) {
    const int size = (*runtime)->mpi().size();
    if (root_rank < 0 || root_rank >= size) {
      return absl::InvalidArgumentError(
          absl::StrCat("broadcast '", name, "': root rank ", root_rank,
                       " is outside [0, ", size, ")"));
    }
  } else {
    auto member =
        std::lower_bound(target->ranks.begin(), target->ranks.end(), root_rank);
    if (member == target->ranks.end() || *member != root_rank) {
      return absl::InvalidArgumentError(
          absl::StrCat("broadcast '", name, "': root rank ", root_rank,
                       " is not in process set ", id_, " (ranks ",
                       RankList(target->ranks), ")"));
    }
    root = static_cast<int>(member - target->ranks.begin());
  }
  Entry entry;
  entry.request = MakeRequest(**runtime, OpType::kBroadcast, name, buffer);
  entry.request.root = root;
  entry.input = buffer;
  entry.output = buffer;
  return Submit(**runtime, std::move(entry));
}

StatusOr<Handle> ProcessSet::AlltoallAsync(const std::string& name,
                                           const Tensor& input,
                                           std::vector<int64_t> splits,
                                           OutputAllocator allocator) const {
  StatusOr<Target> target = Resolve(id_);
  if (!target.ok()) return target.status();
  std::shared_ptr<Runtime>* runtime = &target->runtime;
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

StatusOr<Handle> ProcessSet::ReducescatterAsync(const std::string& name,
                                                const Tensor& input,
                                                OutputAllocator allocator,
                                                ReduceOp op) const {
  return GroupedReducescatterAsync({name}, {input}, op, {std::move(allocator)});
}

StatusOr<Handle> ProcessSet::GroupedReducescatterAsync(
    const std::vector<std::string>& names, const std::vector<Tensor>& inputs,
    ReduceOp op, std::vector<OutputAllocator> allocators) const {
  StatusOr<Target> target = Resolve(id_);
  if (!target.ok()) return target.status();
  std::shared_ptr<Runtime>* runtime = &target->runtime;
  if (Status s =
          CheckGroup("reducescatter", names, inputs.size(), allocators.size());
      !s.ok()) {
    return s;
  }
  auto check = [&](size_t i) -> Status {
    if (Status s = CheckReduction(names[i], inputs[i].dtype, op, 1.0, 1.0);
        !s.ok()) {
      return s;
    }
    if (op == ReduceOp::kAdasum) {
      return absl::InvalidArgumentError(absl::StrCat(
          "reducescatter '", names[i], "': adasum is an allreduce op only"));
    }
    return absl::OkStatus();
  };
  return SubmitGroup(**runtime, OpType::kReducescatter, names, inputs, check,
                     [&](size_t i, Entry& entry) {
                       entry.request.reduce_op = op;
                       if (!allocators.empty()) {
                         entry.allocator = std::move(allocators[i]);
                       }
                     });
}

Status ProcessSet::Barrier() const {
  StatusOr<Target> target = Resolve(id_);
  if (!target.ok()) return target.status();
  std::shared_ptr<Runtime>* runtime = &target->runtime;
  Entry entry;
  entry.request.rank = (*runtime)->mpi().rank();
  entry.request.op = OpType::kBarrier;
  entry.request.name =
      absl::StrCat(kReservedPrefix, "barrier.", (*runtime)->NextBarrier());
  entry.request.dtype = DataType::kUint8;
  StatusOr<Handle> handle = Submit(**runtime, std::move(entry));
  if (!handle.ok()) return handle.status();
  return handle->Wait();
}

StatusOr<int> ProcessSet::Join() const {
  StatusOr<Target> target = Resolve(id_);
  if (!target.ok()) return target.status();
  std::shared_ptr<Runtime>* runtime = &target->runtime;
  Entry entry;
  entry.request.rank = (*runtime)->mpi().rank();
  entry.request.op = OpType::kJoin;
  entry.request.name = kJoinName;
  entry.request.dtype = DataType::kUint8;
  StatusOr<Handle> handle = Submit(**runtime, std::move(entry));
  if (!handle.ok()) return handle.status();
  if (Status s = handle->Wait(); !s.ok()) return s;
  return target->Global(handle->last_joined_rank());
}

Status ProcessSet::Allreduce(const std::string& name, const Tensor& input,
                             const Tensor& output,
                             const AllreduceOptions& options) const {
  StatusOr<Handle> handle = AllreduceAsync(name, input, output, options);
  if (!handle.ok()) return handle.status();
  return handle->Wait();
}

Status ProcessSet::Broadcast(const std::string& name, const Tensor& buffer,
                             int root_rank) const {
  StatusOr<Handle> handle = BroadcastAsync(name, buffer, root_rank);
  if (!handle.ok()) return handle.status();
  return handle->Wait();
}

// The global set's collectives.
StatusOr<Handle> AllreduceAsync(const std::string& name, const Tensor& input,
                                const Tensor& output,
                                const AllreduceOptions& options) {
  return ProcessSet().AllreduceAsync(name, input, output, options);
}

StatusOr<Handle> GroupedAllreduceAsync(const std::vector<std::string>& names,
                                       const std::vector<Tensor>& inputs,
                                       const std::vector<Tensor>& outputs,
                                       const AllreduceOptions& options) {
  return ProcessSet().GroupedAllreduceAsync(names, inputs, outputs, options);
}

StatusOr<Handle> AllgatherAsync(const std::string& name, const Tensor& input,
                                OutputAllocator allocator) {
  return ProcessSet().AllgatherAsync(name, input, std::move(allocator));
}

StatusOr<Handle> GroupedAllgatherAsync(
    const std::vector<std::string>& names, const std::vector<Tensor>& inputs,
    std::vector<OutputAllocator> allocators) {
  return ProcessSet().GroupedAllgatherAsync(names, inputs,
                                            std::move(allocators));
}

StatusOr<Handle> BroadcastAsync(const std::string& name, const Tensor& buffer,
                                int root_rank) {
  return ProcessSet().BroadcastAsync(name, buffer, root_rank);
}

StatusOr<Handle> AlltoallAsync(const std::string& name, const Tensor& input,
                               std::vector<int64_t> splits,
                               OutputAllocator allocator) {
  return ProcessSet().AlltoallAsync(name, input, std::move(splits),
                                    std::move(allocator));
}

StatusOr<Handle> ReducescatterAsync(const std::string& name,
                                    const Tensor& input,
                                    OutputAllocator allocator, ReduceOp op) {
  return ProcessSet().ReducescatterAsync(name, input, std::move(allocator), op);
}

StatusOr<Handle> GroupedReducescatterAsync(
    const std::vector<std::string>& names, const std::vector<Tensor>& inputs,
    ReduceOp op, std::vector<OutputAllocator> allocators) {
  return ProcessSet().GroupedReducescatterAsync(names, inputs, op,
                                                std::move(allocators));
}

Status Barrier() { return ProcessSet().Barrier(); }

StatusOr<int> Join() { return ProcessSet().Join(); }

Status Allreduce(const std::string& name, const Tensor& input,
                 const Tensor& output, const AllreduceOptions& options) {
  return ProcessSet().Allreduce(name, input, output, options);
}

Status Broadcast(const std::string& name, const Tensor& buffer, int root_rank) {
  return ProcessSet().Broadcast(name, buffer, root_rank);
}

std::vector<int> ProcessSet::ranks() const {
  MutexLock lock(&g_mu);
  if (g_runtime == nullptr) return {};
  if (id_ == 0) {
    std::vector<int> all(g_runtime->mpi().size());
    for (size_t r = 0; r < all.size(); ++r) all[r] = static_cast<int>(r);
    return all;
  }
  auto found = g_sets.find(id_);
  return found == g_sets.end() ? std::vector<int>() : found->second.ranks;
}

bool ProcessSet::Included() const { return Rank() >= 0; }

int ProcessSet::Rank() const {
  MutexLock lock(&g_mu);
  if (g_runtime == nullptr) return -1;
  if (id_ == 0) return g_runtime->mpi().rank();
  auto found = g_sets.find(id_);
  if (found == g_sets.end() || found->second.runtime == nullptr) return -1;
  return found->second.runtime->mpi().rank();
}

int ProcessSet::Size() const {
  MutexLock lock(&g_mu);
  if (g_runtime == nullptr) return -1;
  if (id_ == 0) return g_runtime->mpi().size();
  auto found = g_sets.find(id_);
  return found == g_sets.end() ? -1
                               : static_cast<int>(found->second.ranks.size());
}

std::string ProcessSet::BackendName() const {
  StatusOr<Target> target = Resolve(id_);
  return target.ok() ? target->runtime->backend_name() : "";
}

RuntimeStats ProcessSet::GetStats() const {
  StatusOr<Target> target = Resolve(id_);
  return target.ok() ? target->runtime->stats() : RuntimeStats{};
}

StatusOr<ProcessSet> AddProcessSet(const std::vector<int>& ranks) {
  MutexLock change(&g_change_mu);
  StatusOr<std::shared_ptr<Runtime>> global = Running();
  if (!global.ok()) return global.status();
  const MpiContext& mpi = (*global)->mpi();
  // Every rank of a job runs the same MPI library at the same level, so
  // this refusal is the same everywhere.
  if (mpi.thread_level() < MPI_THREAD_MULTIPLE) {
    return absl::FailedPreconditionError(absl::StrCat(
        "process sets need MPI_THREAD_MULTIPLE (each set's runtime talks "
        "through MPI on its own thread), but MPI runs at ",
        ThreadLevelName(mpi.thread_level()),
        "; let kolo initialise MPI, or initialise it with "
        "MPI_Init_thread(MPI_THREAD_MULTIPLE)"));
  }
  std::vector<int64_t> payload = {1};
  payload.insert(payload.end(), ranks.begin(), ranks.end());
  StatusOr<std::vector<std::vector<int64_t>>> all =
      GatherFromAll(**global, payload);
  if (!all.ok()) return all.status();
  if (Status s = CheckSameChange(*all); !s.ok()) return s;

  // Every rank now checks the same ranks against the same sets.
  std::vector<int> sorted = ranks;
  std::sort(sorted.begin(), sorted.end());
  const std::string asked = RankList(ranks);
  if (sorted.empty()) {
    return absl::InvalidArgumentError("a process set needs at least one rank");
  }
  if (sorted.front() < 0 || sorted.back() >= mpi.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("process set ", asked, ": rank ",
                     sorted.front() < 0 ? sorted.front() : sorted.back(),
                     " is outside [0, ", mpi.size(), ")"));
  }
  if (auto repeated = std::adjacent_find(sorted.begin(), sorted.end());
      repeated != sorted.end()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "process set ", asked, " names rank ", *repeated, " twice"));
  }
  int id = 0;
  {
    MutexLock lock(&g_mu);
    if (static_cast<int>(sorted.size()) == mpi.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "process set ", asked,
          " holds every rank: that is the global set (kolo::ProcessSet())"));
    }
    for (const auto& [other, set] : g_sets) {
      if (set.ranks == sorted) {
        return absl::InvalidArgumentError(absl::StrCat(
            "process set ", other, " already has ranks ", RankList(sorted)));
      }
    }
    id = g_next_set++;
  }

  const bool member =
      std::binary_search(sorted.begin(), sorted.end(), mpi.rank());
  MPI_Comm members = MPI_COMM_NULL;
  Status started;
  if (int code = MPI_Comm_split(mpi.sets(), member ? 0 : MPI_UNDEFINED,
                                mpi.rank(), &members);
      code != MPI_SUCCESS) {
    started = absl::InternalError(
        absl::StrCat("MPI_Comm_split for process set ", id, " failed"));
  }
  std::shared_ptr<Runtime> runtime;
  if (started.ok() && member) {
    StatusOr<std::unique_ptr<MpiContext>> context =
        MpiContext::CreateForMembers(members, (*global)->options().hostname);
    if (context.ok()) {
      StatusOr<std::unique_ptr<Runtime>> made = Runtime::StartProcessSet(
          (*global)->options(), *std::move(context), id);
      if (made.ok()) {
        runtime = *std::move(made);
      } else {
        started = made.status();
      }
    } else {
      started = context.status();
    }
  }
  // Every rank learns whether the set started on every member.
  StatusOr<std::vector<std::vector<int64_t>>> outcomes =
      GatherFromAll(**global, {started.ok() ? 1 : 0});
  if (!outcomes.ok()) return outcomes.status();
  std::vector<int> failed;
  for (size_t r = 0; r < outcomes->size(); ++r) {
    if ((*outcomes)[r] != std::vector<int64_t>{1}) {
      failed.push_back(static_cast<int>(r));
    }
  }
  if (!failed.empty()) {
    if (runtime != nullptr) runtime->Shutdown();
    return absl::InternalError(
        absl::StrCat("process set ", asked, " could not start on rank(s) ",
                     absl::StrJoin(failed, ", "),
                     started.ok() ? " (their logs say why)"
                                  : absl::StrCat(": ", started.message())));
  }
  MutexLock lock(&g_mu);
  g_sets[id] = SetState{sorted, std::move(runtime)};
  return ProcessSet::FromId(id);
}

Status RemoveProcessSet(const ProcessSet& set) {
  MutexLock change(&g_change_mu);
  StatusOr<std::shared_ptr<Runtime>> global = Running();
  if (!global.ok()) return global.status();
  StatusOr<std::vector<std::vector<int64_t>>> all =
      GatherFromAll(**global, {2, set.id()});
  if (!all.ok()) return all.status();
  if (Status s = CheckSameChange(*all); !s.ok()) return s;
  if (set.is_global()) {
    return absl::InvalidArgumentError(
        "the global process set cannot be removed");
  }
  std::shared_ptr<Runtime> runtime;
  {
    MutexLock lock(&g_mu);
    auto found = g_sets.find(set.id());
    if (found == g_sets.end()) {
      return g_removed_sets.count(set.id()) > 0
                 ? absl::FailedPreconditionError(absl::StrCat(
                       "process set ", set.id(), " has been removed already"))
                 : absl::NotFoundError(
                       absl::StrCat("there is no process set ", set.id()));
    }
    runtime = std::move(found->second.runtime);
    g_removed_sets[set.id()] = std::move(found->second.ranks);
    g_sets.erase(found);
  }
  if (runtime != nullptr) runtime->Shutdown();
  return absl::OkStatus();
}

std::vector<ProcessSet> ProcessSets() {
  MutexLock lock(&g_mu);
  if (g_runtime == nullptr) return {};
  std::vector<ProcessSet> sets = {ProcessSet()};
  for (const auto& [id, set] : g_sets) sets.push_back(ProcessSet::FromId(id));
  return sets;
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
