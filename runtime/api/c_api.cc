// kolo's C API (kolo/c_api.h): a thin layer over the C++ API that turns
// statuses into codes plus a thread-local message, and handles into ids.
#include "kolo/c_api.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "kolo/kolo.h"
#include "kolo/process_set.h"
#include "runtime/common/mutex.h"

namespace {

thread_local std::string t_last_error;

kolo::Mutex g_handles_mu;
// What kolo_wait needs besides the handle: where alltoall's received counts
// go, and the outputs (`outputs` of them) to free when an allgather or
// alltoall fails.
struct HandleRecord {
  kolo::Handle handle;
  int64_t* recv_counts = nullptr;
  void** output = nullptr;
  int outputs = 1;
};
absl::flat_hash_map<kolo_handle, HandleRecord> g_handles
    ABSL_GUARDED_BY(g_handles_mu);
kolo_handle g_next_handle ABSL_GUARDED_BY(g_handles_mu) = 1;

int Code(const kolo::Status& status) {
  t_last_error = status.ok() ? "" : std::string(status.message());
  return static_cast<int>(status.code());
}

int InvalidArgument(const std::string& message) {
  return Code(absl::InvalidArgumentError(message));
}

bool ValidDtype(kolo_dtype dtype) {
  return kolo::IsValidDataType(static_cast<int>(dtype));
}

kolo::Tensor Flat(const void* data, int64_t count, kolo_dtype dtype) {
  kolo::Tensor tensor;
  tensor.data = const_cast<void*>(data);
  tensor.dtype = static_cast<kolo::DataType>(dtype);
  tensor.shape = {count};
  return tensor;
}

int Register(kolo::StatusOr<kolo::Handle> handle, kolo_handle* out,
             void** output = nullptr, int64_t* recv_counts = nullptr,
             int outputs = 1) {
  if (!handle.ok()) return Code(handle.status());
  kolo::MutexLock lock(&g_handles_mu);
  *out = g_next_handle++;
  g_handles.emplace(
      *out, HandleRecord{*std::move(handle), recv_counts, output, outputs});
  return Code(absl::OkStatus());
}

// Allocates an allgather's or alltoall's output with malloc (the caller
// releases it with kolo_free) and reports its element count.
kolo::OutputAllocator MallocOutput(void** output, int64_t* output_count,
                                   kolo_dtype dtype, const char* operation) {
  const int64_t element =
      kolo::DataTypeSize(static_cast<kolo::DataType>(dtype));
  return [output, output_count, element, operation](
             const std::vector<int64_t>& shape) -> kolo::StatusOr<void*> {
    *output_count = shape[0];
    *output = std::malloc(std::max<int64_t>(shape[0] * element, 1));
    if (*output == nullptr) {
      return absl::ResourceExhaustedError(
          absl::StrCat(operation, ": out of memory"));
    }
    return *output;
  };
}

// Reports a reducescatter's element count and hands out the caller's output.
kolo::OutputAllocator CallerOutput(void* output, int64_t* output_count,
                                   const std::string& name) {
  return [output, output_count,
          name](const std::vector<int64_t>& shape) -> kolo::StatusOr<void*> {
    *output_count = shape[0];
    if (output == nullptr && shape[0] > 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("reducescatter '", name, "': output is NULL"));
    }
    return output;
  };
}

// Names, inputs and counts of a grouped call, checked; "" when valid.
std::string GroupArguments(const char* function, int n,
                           const char* const* names, const void* const* inputs,
                           const int64_t* counts, kolo_dtype dtype,
                           std::vector<std::string>* name_list,
                           std::vector<kolo::Tensor>* tensors) {
  for (int i = 0; i < n; ++i) {
    if (names[i] == nullptr || counts[i] < 0) {
      return absl::StrCat(function, ": entry ", i,
                          " has a NULL name or a negative count");
    }
    name_list->emplace_back(names[i]);
    tensors->push_back(Flat(inputs[i], counts[i], dtype));
  }
  return "";
}

}  // namespace

extern "C" {

int kolo_init(void) { return Code(kolo::Init()); }
int kolo_shutdown(void) { return Code(kolo::Shutdown()); }
int kolo_is_initialized(void) { return kolo::IsInitialized() ? 1 : 0; }
int kolo_rank(void) { return kolo::Rank(); }
int kolo_size(void) { return kolo::Size(); }
int kolo_local_rank(void) { return kolo::LocalRank(); }
int kolo_local_size(void) { return kolo::LocalSize(); }
int kolo_cross_rank(void) { return kolo::CrossRank(); }
int kolo_cross_size(void) { return kolo::CrossSize(); }
const char* kolo_last_error(void) { return t_last_error.c_str(); }

const char* kolo_backend_name(void) {
  thread_local std::string name;
  name = kolo::BackendName();
  return name.c_str();
}

const char* kolo_mpi_library(void) {
  static const std::string* const library = new std::string(kolo::MpiLibrary());
  return library->c_str();
}

int kolo_add_process_set(const int* ranks, int n, int* process_set) {
  if ((ranks == nullptr && n > 0) || n < 0 || process_set == nullptr) {
    return InvalidArgument(
        "kolo_add_process_set: ranks and process_set must not be NULL and n "
        "must be >= 0");
  }
  kolo::StatusOr<kolo::ProcessSet> set =
      kolo::AddProcessSet(std::vector<int>(ranks, ranks + n));
  if (set.ok()) *process_set = set->id();
  return Code(set.status());
}

int kolo_remove_process_set(int process_set) {
  return Code(kolo::RemoveProcessSet(kolo::ProcessSet::FromId(process_set)));
}

int kolo_process_set_rank(int process_set) {
  return kolo::ProcessSet::FromId(process_set).Rank();
}

int kolo_process_set_size(int process_set) {
  return kolo::ProcessSet::FromId(process_set).Size();
}

int kolo_process_set_ranks(int process_set, int* ranks, int capacity) {
  const std::vector<int> members =
      kolo::ProcessSet::FromId(process_set).ranks();
  if (members.empty()) return -1;
  for (int i = 0; i < capacity && i < static_cast<int>(members.size()); ++i) {
    ranks[i] = members[i];
  }
  return static_cast<int>(members.size());
}

int kolo_allreduce_async(const char* name, const void* input, void* output,
                         int64_t count, kolo_dtype dtype, kolo_reduce_op op,
                         kolo_handle* handle) {
  return kolo_process_set_allreduce_async(0, name, input, output, count, dtype,
                                          op, handle);
}

int kolo_process_set_allreduce_async(int process_set, const char* name,
                                     const void* input, void* output,
                                     int64_t count, kolo_dtype dtype,
                                     kolo_reduce_op op, kolo_handle* handle) {
  return kolo_process_set_allreduce_scaled_async(
      process_set, name, input, output, count, dtype, op, 1.0, 1.0, handle);
}

int kolo_allreduce_scaled_async(const char* name, const void* input,
                                void* output, int64_t count, kolo_dtype dtype,
                                kolo_reduce_op op, double prescale,
                                double postscale, kolo_handle* handle) {
  return kolo_process_set_allreduce_scaled_async(
      0, name, input, output, count, dtype, op, prescale, postscale, handle);
}

int kolo_process_set_allreduce_scaled_async(int process_set, const char* name,
                                            const void* input, void* output,
                                            int64_t count, kolo_dtype dtype,
                                            kolo_reduce_op op, double prescale,
                                            double postscale,
                                            kolo_handle* handle) {
  if (name == nullptr || handle == nullptr || count < 0 || !ValidDtype(dtype)) {
    return InvalidArgument(
        "kolo_allreduce_async: name and handle must not be NULL, count must "
        "be >= 0 and dtype valid");
  }
  kolo::AllreduceOptions options;
  options.op = static_cast<kolo::ReduceOp>(op);
  options.prescale_factor = prescale;
  options.postscale_factor = postscale;
  return Register(kolo::ProcessSet::FromId(process_set)
                      .AllreduceAsync(name, Flat(input, count, dtype),
                                      Flat(output, count, dtype), options),
                  handle);
}

int kolo_grouped_allreduce_async(int n, const char* const* names,
                                 const void* const* inputs,
                                 void* const* outputs, const int64_t* counts,
                                 kolo_dtype dtype, kolo_reduce_op op,
                                 kolo_handle* handle) {
  return kolo_process_set_grouped_allreduce_async(0, n, names, inputs, outputs,
                                                  counts, dtype, op, handle);
}

int kolo_process_set_grouped_allreduce_async(
    int process_set, int n, const char* const* names, const void* const* inputs,
    void* const* outputs, const int64_t* counts, kolo_dtype dtype,
    kolo_reduce_op op, kolo_handle* handle) {
  if (n <= 0 || names == nullptr || inputs == nullptr || outputs == nullptr ||
      counts == nullptr || handle == nullptr || !ValidDtype(dtype)) {
    return InvalidArgument(
        "kolo_grouped_allreduce_async: n must be > 0, arrays and handle must "
        "not be NULL and dtype valid");
  }
  std::vector<std::string> name_list;
  std::vector<kolo::Tensor> in;
  std::vector<kolo::Tensor> out;
  for (int i = 0; i < n; ++i) {
    if (names[i] == nullptr || counts[i] < 0) {
      return InvalidArgument(
          absl::StrCat("kolo_grouped_allreduce_async: entry ", i,
                       " has a NULL name or a negative count"));
    }
    name_list.emplace_back(names[i]);
    in.push_back(Flat(inputs[i], counts[i], dtype));
    out.push_back(Flat(outputs[i], counts[i], dtype));
  }
  kolo::AllreduceOptions options;
  options.op = static_cast<kolo::ReduceOp>(op);
  return Register(kolo::ProcessSet::FromId(process_set)
                      .GroupedAllreduceAsync(name_list, in, out, options),
                  handle);
}

int kolo_broadcast_async(const char* name, void* buffer, int64_t count,
                         kolo_dtype dtype, int root_rank, kolo_handle* handle) {
  return kolo_process_set_broadcast_async(0, name, buffer, count, dtype,
                                          root_rank, handle);
}

int kolo_process_set_broadcast_async(int process_set, const char* name,
                                     void* buffer, int64_t count,
                                     kolo_dtype dtype, int root_rank,
                                     kolo_handle* handle) {
  if (name == nullptr || handle == nullptr || count < 0 || !ValidDtype(dtype)) {
    return InvalidArgument(
        "kolo_broadcast_async: name and handle must not be NULL, count must "
        "be >= 0 and dtype valid");
  }
  return Register(
      kolo::ProcessSet::FromId(process_set)
          .BroadcastAsync(name, Flat(buffer, count, dtype), root_rank),
      handle);
}

int kolo_allgather_async(const char* name, const void* input, int64_t count,
                         kolo_dtype dtype, void** output, int64_t* output_count,
                         kolo_handle* handle) {
  return kolo_process_set_allgather_async(0, name, input, count, dtype, output,
                                          output_count, handle);
}

int kolo_process_set_allgather_async(int process_set, const char* name,
                                     const void* input, int64_t count,
                                     kolo_dtype dtype, void** output,
                                     int64_t* output_count,
                                     kolo_handle* handle) {
  if (name == nullptr || output == nullptr || output_count == nullptr ||
      handle == nullptr || count < 0 || !ValidDtype(dtype)) {
    return InvalidArgument(
        "kolo_allgather_async: name, output, output_count and handle must "
        "not be NULL, count must be >= 0 and dtype valid");
  }
  *output = nullptr;
  *output_count = 0;
  return Register(kolo::ProcessSet::FromId(process_set)
                      .AllgatherAsync(name, Flat(input, count, dtype),
                                      MallocOutput(output, output_count, dtype,
                                                   "allgather")),
                  handle, output);
}

int kolo_grouped_allgather_async(int n, const char* const* names,
                                 const void* const* inputs,
                                 const int64_t* counts, kolo_dtype dtype,
                                 void** outputs, int64_t* output_counts,
                                 kolo_handle* handle) {
  return kolo_process_set_grouped_allgather_async(
      0, n, names, inputs, counts, dtype, outputs, output_counts, handle);
}

int kolo_process_set_grouped_allgather_async(
    int process_set, int n, const char* const* names, const void* const* inputs,
    const int64_t* counts, kolo_dtype dtype, void** outputs,
    int64_t* output_counts, kolo_handle* handle) {
  if (n <= 0 || names == nullptr || inputs == nullptr || counts == nullptr ||
      outputs == nullptr || output_counts == nullptr || handle == nullptr ||
      !ValidDtype(dtype)) {
    return InvalidArgument(
        "kolo_grouped_allgather_async: n must be > 0, arrays and handle must "
        "not be NULL and dtype valid");
  }
  std::vector<std::string> name_list;
  std::vector<kolo::Tensor> in;
  const std::string invalid =
      GroupArguments("kolo_grouped_allgather_async", n, names, inputs, counts,
                     dtype, &name_list, &in);
  if (!invalid.empty()) return InvalidArgument(invalid);
  std::vector<kolo::OutputAllocator> allocators;
  for (int i = 0; i < n; ++i) {
    outputs[i] = nullptr;
    output_counts[i] = 0;
    allocators.push_back(
        MallocOutput(&outputs[i], &output_counts[i], dtype, "allgather"));
  }
  return Register(
      kolo::ProcessSet::FromId(process_set)
          .GroupedAllgatherAsync(name_list, in, std::move(allocators)),
      handle, outputs, nullptr, n);
}

int kolo_alltoall_async(const char* name, const void* input, int64_t count,
                        kolo_dtype dtype, const int64_t* send_counts,
                        void** output, int64_t* output_count,
                        int64_t* recv_counts, kolo_handle* handle) {
  return kolo_process_set_alltoall_async(0, name, input, count, dtype,
                                         send_counts, output, output_count,
                                         recv_counts, handle);
}

int kolo_process_set_alltoall_async(int process_set, const char* name,
                                    const void* input, int64_t count,
                                    kolo_dtype dtype,
                                    const int64_t* send_counts, void** output,
                                    int64_t* output_count, int64_t* recv_counts,
                                    kolo_handle* handle) {
  if (name == nullptr || output == nullptr || output_count == nullptr ||
      handle == nullptr || count < 0 || !ValidDtype(dtype)) {
    return InvalidArgument(
        "kolo_alltoall_async: name, output, output_count and handle must not "
        "be NULL, count must be >= 0 and dtype valid");
  }
  *output = nullptr;
  *output_count = 0;
  std::vector<int64_t> splits;
  if (send_counts != nullptr &&
      kolo::ProcessSet::FromId(process_set).Size() > 0) {
    splits.assign(send_counts,
                  send_counts + kolo::ProcessSet::FromId(process_set).Size());
  }
  return Register(
      kolo::ProcessSet::FromId(process_set)
          .AlltoallAsync(name, Flat(input, count, dtype), splits,
                         MallocOutput(output, output_count, dtype, "alltoall")),
      handle, output, recv_counts);
}

int kolo_reducescatter_async(const char* name, const void* input, void* output,
                             int64_t* output_count, int64_t count,
                             kolo_dtype dtype, kolo_reduce_op op,
                             kolo_handle* handle) {
  return kolo_process_set_reducescatter_async(
      0, name, input, output, output_count, count, dtype, op, handle);
}

int kolo_process_set_reducescatter_async(int process_set, const char* name,
                                         const void* input, void* output,
                                         int64_t* output_count, int64_t count,
                                         kolo_dtype dtype, kolo_reduce_op op,
                                         kolo_handle* handle) {
  if (name == nullptr || output_count == nullptr || handle == nullptr ||
      count < 0 || !ValidDtype(dtype)) {
    return InvalidArgument(
        "kolo_reducescatter_async: name, output_count and handle must not be "
        "NULL, count must be >= 0 and dtype valid");
  }
  return Register(
      kolo::ProcessSet::FromId(process_set)
          .ReducescatterAsync(name, Flat(input, count, dtype),
                              CallerOutput(output, output_count, name),
                              static_cast<kolo::ReduceOp>(op)),
      handle);
}

int kolo_grouped_reducescatter_async(int n, const char* const* names,
                                     const void* const* inputs,
                                     void* const* outputs,
                                     int64_t* output_counts,
                                     const int64_t* counts, kolo_dtype dtype,
                                     kolo_reduce_op op, kolo_handle* handle) {
  return kolo_process_set_grouped_reducescatter_async(
      0, n, names, inputs, outputs, output_counts, counts, dtype, op, handle);
}

int kolo_process_set_grouped_reducescatter_async(
    int process_set, int n, const char* const* names, const void* const* inputs,
    void* const* outputs, int64_t* output_counts, const int64_t* counts,
    kolo_dtype dtype, kolo_reduce_op op, kolo_handle* handle) {
  if (n <= 0 || names == nullptr || inputs == nullptr || outputs == nullptr ||
      output_counts == nullptr || counts == nullptr || handle == nullptr ||
      !ValidDtype(dtype)) {
    return InvalidArgument(
        "kolo_grouped_reducescatter_async: n must be > 0, arrays and handle "
        "must not be NULL and dtype valid");
  }
  std::vector<std::string> name_list;
  std::vector<kolo::Tensor> in;
  const std::string invalid =
      GroupArguments("kolo_grouped_reducescatter_async", n, names, inputs,
                     counts, dtype, &name_list, &in);
  if (!invalid.empty()) return InvalidArgument(invalid);
  std::vector<kolo::OutputAllocator> allocators;
  for (int i = 0; i < n; ++i) {
    allocators.push_back(
        CallerOutput(outputs[i], &output_counts[i], name_list[i]));
  }
  return Register(kolo::ProcessSet::FromId(process_set)
                      .GroupedReducescatterAsync(
                          name_list, in, static_cast<kolo::ReduceOp>(op),
                          std::move(allocators)),
                  handle);
}

int kolo_barrier(void) { return kolo_process_set_barrier(0); }

int kolo_process_set_barrier(int process_set) {
  return Code(kolo::ProcessSet::FromId(process_set).Barrier());
}

int kolo_start_timeline(const char* path, int mark_cycles) {
  if (path == nullptr)
    return InvalidArgument("kolo_start_timeline: path is NULL");
  return Code(kolo::StartTimeline(path, mark_cycles != 0));
}

int kolo_stop_timeline(void) { return Code(kolo::StopTimeline()); }

int kolo_join(int* last_rank) { return kolo_process_set_join(0, last_rank); }

int kolo_process_set_join(int process_set, int* last_rank) {
  kolo::StatusOr<int> joined = kolo::ProcessSet::FromId(process_set).Join();
  if (joined.ok() && last_rank != nullptr) *last_rank = *joined;
  return Code(joined.status());
}

int kolo_wait(kolo_handle handle) {
  HandleRecord record;
  {
    kolo::MutexLock lock(&g_handles_mu);
    auto it = g_handles.find(handle);
    if (it == g_handles.end()) {
      return InvalidArgument(
          absl::StrCat("kolo_wait: unknown handle ", handle,
                       " (never issued, or already waited on)"));
    }
    record = std::move(it->second);
    g_handles.erase(it);
  }
  const kolo::Status status = record.handle.Wait();
  if (status.ok() && record.recv_counts != nullptr) {
    const std::vector<int64_t>& received = record.handle.received_splits();
    std::copy(received.begin(), received.end(), record.recv_counts);
  }
  if (!status.ok() && record.output != nullptr) {
    for (int i = 0; i < record.outputs; ++i) {
      std::free(record.output[i]);
      record.output[i] = nullptr;
    }
  }
  return Code(status);
}

int kolo_poll(kolo_handle handle, int* done) {
  if (done == nullptr) return InvalidArgument("kolo_poll: done is NULL");
  kolo::MutexLock lock(&g_handles_mu);
  auto it = g_handles.find(handle);
  if (it == g_handles.end()) {
    *done = 0;
    return InvalidArgument(absl::StrCat("kolo_poll: unknown handle ", handle));
  }
  *done = it->second.handle.Poll() ? 1 : 0;
  return Code(absl::OkStatus());
}

void kolo_free(void* buffer) { std::free(buffer); }

}  // extern "C"
