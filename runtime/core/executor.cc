// Implementation of the executor.
#include "runtime/core/executor.h"

#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace kolo {
namespace {

ReductionSpec SpecFor(const Response& response) {
  ReductionSpec spec;
  spec.dtype = response.dtype;
  spec.op = response.reduce_op;
  spec.prescale = response.prescale;
  spec.postscale = response.postscale;
  if (response.reduce_op == ReduceOp::kAverage) {
    spec.op = ReduceOp::kSum;
    spec.divisor = std::max(response.contributors, 1);
  }
  return spec;
}

}  // namespace

int64_t RowElements(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (size_t i = 1; i < shape.size(); ++i) n *= shape[i];
  return n;
}

int64_t Rows(const std::vector<int64_t>& shape) {
  return shape.empty() ? 1 : shape[0];
}

int64_t ReducescatterRows(int64_t rows, int size, int rank) {
  return rows / size + (rank < rows % size ? 1 : 0);
}

Executor::Executor(Backend* backend, int rank, int size, int64_t fusion_bytes)
    : backend_(backend),
      rank_(rank),
      size_(size),
      fusion_buffer_(fusion_bytes > 0 ? new char[fusion_bytes] : nullptr),
      fusion_bytes_(fusion_bytes) {}

void Executor::Record(const Response& response, const std::string& activity,
                      int64_t start_ns) {
  if (timeline_ == nullptr || !timeline_->active()) return;
  const int64_t end_ns = TimelineNowNs();
  for (const ResponseTensor& tensor : response.tensors) {
    timeline_->Span(tensor.request.name, activity, start_ns, end_ns);
  }
}

Status Executor::Execute(const Response& response, std::vector<Entry>& entries,
                         const std::vector<bool>& present) {
  const bool timed = timeline_ != nullptr && timeline_->active();
  if (!timed) return Run(response, entries, present);
  const int64_t start_ns = TimelineNowNs();
  for (const ResponseTensor& tensor : response.tensors) {
    timeline_->Queued(tensor.request.name, start_ns);
  }
  // The fused allreduce records its copies and the backend step itself.
  const bool fused = response.op == OpType::kAllreduce &&
                     response.tensors.size() > 1;
  Status status = Run(response, entries, present);
  if (!fused) {
    Record(response,
           absl::AsciiStrToUpper(absl::StrCat(backend_->name(), "_",
                                              OpTypeName(response.op))),
           start_ns);
  }
  return status;
}

Status Executor::Run(const Response& response, std::vector<Entry>& entries,
                     const std::vector<bool>& present) {
  switch (response.op) {
    case OpType::kAllreduce:
      return Allreduce(response, entries, present);
    case OpType::kAllgather:
      return Allgather(response, entries.front());
    case OpType::kBroadcast: {
      Entry& entry = entries.front();
      return backend_->Broadcast(entry.output.data, entry.output.size_bytes(),
                                 response.root);
    }
    case OpType::kAlltoall:
      return Alltoall(response, entries.front());
    case OpType::kReducescatter:
      return Reducescatter(response, entries.front());
    case OpType::kBarrier:
      return backend_->Barrier();
    case OpType::kJoin:
      for (Entry& entry : entries) {
        entry.operation->last_joined_rank = response.last_joined_rank;
      }
      return absl::OkStatus();
  }
  return absl::InternalError("unknown operation in response");
}

Status Executor::Allreduce(const Response& response,
                           std::vector<Entry>& entries,
                           const std::vector<bool>& present) {
  const ReductionSpec spec = SpecFor(response);
  const int64_t element = DataTypeSize(response.dtype);
  if (response.tensors.size() == 1) {
    const int64_t count = response.tensors.front().request.num_elements();
    if (!present[0]) {
      zeros_.assign(count * element, 0);
      return backend_->Allreduce(zeros_.data(), count, spec);
    }
    Entry& entry = entries.front();
    return backend_->Allreduce(entry.input.data, entry.output.data, count,
                               spec);
  }
  // Fused: pack, reduce once, unpack.
  int64_t total = 0;
  for (const ResponseTensor& tensor : response.tensors) {
    total += tensor.request.num_elements();
  }
  if (total * element > fusion_bytes_) {
    return absl::InternalError(absl::StrCat(
        "fused allreduce of ", total * element,
        " bytes does not fit the fusion buffer of ", fusion_bytes_, " bytes"));
  }
  char* buffer = fusion_buffer_.get();
  int64_t phase_start = timeline_ != nullptr ? TimelineNowNs() : 0;
  int64_t offset = 0;
  for (size_t i = 0; i < response.tensors.size(); ++i) {
    const int64_t bytes = response.tensors[i].request.num_elements() * element;
    if (present[i]) {
      std::memcpy(buffer + offset, entries[i].input.data, bytes);
    } else {
      std::memset(buffer + offset, 0, bytes);
    }
    offset += bytes;
  }
  Record(response, "MEMCPY_IN_FUSION_BUFFER", phase_start);
  phase_start = timeline_ != nullptr ? TimelineNowNs() : 0;
  if (Status s = backend_->Allreduce(buffer, total, spec); !s.ok()) return s;
  Record(response,
         absl::AsciiStrToUpper(absl::StrCat(backend_->name(), "_allreduce")),
         phase_start);
  phase_start = timeline_ != nullptr ? TimelineNowNs() : 0;
  offset = 0;
  for (size_t i = 0; i < response.tensors.size(); ++i) {
    const int64_t bytes = response.tensors[i].request.num_elements() * element;
    if (present[i]) std::memcpy(entries[i].output.data, buffer + offset, bytes);
    offset += bytes;
  }
  Record(response, "MEMCPY_OUT_FUSION_BUFFER", phase_start);
  return absl::OkStatus();
}

Status Executor::AllocateOutput(Entry& entry,
                                const std::vector<int64_t>& shape) {
  entry.operation->output_shape = shape;
  entry.output.dtype = entry.input.dtype;
  entry.output.shape = shape;
  entry.output.device = entry.input.device;
  const int64_t bytes = entry.output.size_bytes();
  if (entry.allocator) {
    StatusOr<void*> memory = entry.allocator(shape);
    if (!memory.ok()) return memory.status();
    if (*memory == nullptr && bytes > 0) {
      return absl::InternalError(absl::StrCat(
          "the output allocator of '", entry.request.name,
          "' returned no memory for ", bytes, " bytes"));
    }
    entry.output.data = *memory;
    return absl::OkStatus();
  }
  entry.operation->owned_output.reset(new char[std::max<int64_t>(bytes, 1)],
                                      std::default_delete<char[]>());
  entry.output.data = entry.operation->owned_output.get();
  return absl::OkStatus();
}

Status Executor::Allgather(const Response& response, Entry& entry) {
  const ResponseTensor& tensor = response.tensors.front();
  const std::vector<int64_t>& shape = entry.request.shape;
  const int64_t row_bytes = RowElements(shape) * DataTypeSize(response.dtype);
  std::vector<int64_t> bytes_per_rank(size_);
  int64_t rows = 0;
  for (int r = 0; r < size_; ++r) {
    bytes_per_rank[r] = tensor.first_dims[r] * row_bytes;
    rows += tensor.first_dims[r];
  }
  std::vector<int64_t> output_shape = shape;
  if (output_shape.empty()) output_shape.push_back(1);
  output_shape[0] = rows;
  if (Status s = AllocateOutput(entry, output_shape); !s.ok()) return s;
  return backend_->Allgatherv(entry.input.data, entry.output.data,
                              bytes_per_rank);
}

Status Executor::Alltoall(const Response& response, Entry& entry) {
  const std::vector<int64_t>& shape = entry.request.shape;
  const int64_t row_bytes = RowElements(shape) * DataTypeSize(response.dtype);
  std::vector<int64_t> send_bytes(size_);
  std::vector<int64_t> recv_bytes(size_);
  std::vector<int64_t> received(size_);
  int64_t rows = 0;
  for (int r = 0; r < size_; ++r) {
    send_bytes[r] = response.splits[rank_ * size_ + r] * row_bytes;
    received[r] = response.splits[r * size_ + rank_];
    recv_bytes[r] = received[r] * row_bytes;
    rows += received[r];
  }
  std::vector<int64_t> output_shape = shape;
  if (output_shape.empty()) output_shape.push_back(1);
  output_shape[0] = rows;
  if (Status s = AllocateOutput(entry, output_shape); !s.ok()) return s;
  entry.operation->received_splits = std::move(received);
  return backend_->Alltoallv(entry.input.data, send_bytes, entry.output.data,
                             recv_bytes);
}

Status Executor::Reducescatter(const Response& response, Entry& entry) {
  const std::vector<int64_t>& shape = entry.request.shape;
  const int64_t rows = Rows(shape);
  const int64_t row_elements = RowElements(shape);
  std::vector<int64_t> counts(size_);
  for (int r = 0; r < size_; ++r) {
    counts[r] = ReducescatterRows(rows, size_, r) * row_elements;
  }
  std::vector<int64_t> output_shape = shape;
  if (output_shape.empty()) output_shape.push_back(1);
  output_shape[0] = ReducescatterRows(rows, size_, rank_);
  if (Status s = AllocateOutput(entry, output_shape); !s.ok()) return s;
  return backend_->ReduceScatter(entry.input.data, entry.output.data, counts,
                                 SpecFor(response));
}

}  // namespace kolo
