// Implementation of the executor.
#include "runtime/core/executor.h"

#include <algorithm>
#include <cstring>
#include <new>

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

StatusOr<std::unique_ptr<Executor>> Executor::Create(Backend* backend, int rank,
                                                     int size,
                                                     int64_t fusion_bytes) {
  std::unique_ptr<char[]> buffer;
  if (fusion_bytes > 0) {
    buffer.reset(new (std::nothrow) char[fusion_bytes]);
    if (buffer == nullptr) {
      return absl::ResourceExhaustedError(
          absl::StrCat("KOLO_FUSION_THRESHOLD=", fusion_bytes,
                       ": cannot allocate a fusion buffer of that many bytes"));
    }
  }
  return std::unique_ptr<Executor>(
      new Executor(backend, rank, size, std::move(buffer), fusion_bytes));
}

Executor::Executor(Backend* backend, int rank, int size,
                   std::unique_ptr<char[]> fusion_buffer, int64_t fusion_bytes)
    : backend_(backend),
      rank_(rank),
      size_(size),
      fusion_buffer_(std::move(fusion_buffer)),
      fusion_bytes_(fusion_bytes),
      adasum_(backend, rank, size) {}

namespace {

// a * b, or false when it overflows.
bool Multiply(int64_t a, int64_t b, int64_t* out) {
  return !__builtin_mul_overflow(a, b, out);
}

bool Elements(const std::vector<int64_t>& shape, int64_t* out) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0 || !Multiply(n, d, &n)) return false;
  }
  *out = n;
  return true;
}

// The dimensions after the first.
std::vector<int64_t> RowShape(const std::vector<int64_t>& shape) {
  return shape.size() > 1 ? std::vector<int64_t>(shape.begin() + 1, shape.end())
                          : std::vector<int64_t>{};
}

}  // namespace

Status Executor::Check(const Response& response,
                       const std::vector<Entry>& entries,
                       const std::vector<bool>& present) const {
  auto corrupt = [&](absl::string_view what) {
    const std::string name = response.tensors.empty()
                                 ? std::string("(no tensor)")
                                 : response.tensors.front().request.name;
    return absl::InternalError(absl::StrCat(
        "the coordinator's ", OpTypeName(response.op), " '", name,
        "' does not match rank ", rank_, "'s own submission: ", what));
  };
  if (response.op == OpType::kBarrier || response.op == OpType::kJoin) {
    return absl::OkStatus();
  }
  if (response.tensors.empty()) return corrupt("it names no tensor");
  const bool fusible_op = response.op == OpType::kAllreduce ||
                          response.op == OpType::kAllgather ||
                          response.op == OpType::kReducescatter;
  if (!fusible_op && response.tensors.size() != 1) {
    return corrupt(
        absl::StrCat("it names ", response.tensors.size(), " tensors"));
  }
  const int64_t element = DataTypeSize(response.dtype);
  int64_t fused_bytes = 0;
  for (size_t i = 0; i < response.tensors.size(); ++i) {
    const Request& agreed = response.tensors[i].request;
    int64_t elements = 0;
    int64_t bytes = 0;
    if (!Elements(agreed.shape, &elements) ||
        !Multiply(elements, element, &bytes) ||
        __builtin_add_overflow(fused_bytes, bytes, &fused_bytes)) {
      return corrupt("its sizes overflow");
    }
    if (agreed.dtype != response.dtype) return corrupt("mixed dtypes");
    if (!present[i]) continue;
    const Request& own = entries[i].request;
    if (own.op != response.op || own.dtype != response.dtype) {
      return corrupt(absl::StrCat("this rank submitted a ", OpTypeName(own.op),
                                  " of ", DataTypeName(own.dtype)));
    }
    if (response.op == OpType::kAllgather) {
      const std::vector<int64_t>& rows = response.tensors[i].first_dims;
      if (static_cast<int>(rows.size()) != size_ ||
          rows[rank_] != Rows(own.shape) ||
          RowShape(own.shape) != RowShape(agreed.shape)) {
        return corrupt("its rows or row shape differ");
      }
      int64_t total_rows = 0;
      for (int64_t r : rows) {
        if (__builtin_add_overflow(total_rows, r, &total_rows)) {
          return corrupt("its row counts overflow");
        }
      }
      int64_t row = 0;
      int64_t out = 0;
      if (!Elements(RowShape(own.shape), &row) ||
          !Multiply(row, element, &row) || !Multiply(row, total_rows, &out)) {
        return corrupt("its output size overflows");
      }
    } else if (response.op == OpType::kAlltoall) {
      // Ranks send different numbers of rows; the rows must agree.
      if (RowShape(own.shape) != RowShape(agreed.shape)) {
        return corrupt("the row shapes differ");
      }
    } else if (own.shape != agreed.shape) {
      return corrupt("the shapes differ");
    }
    if (response.op == OpType::kAlltoall) {
      if (response.splits.size() != static_cast<size_t>(size_) * size_) {
        return corrupt("its split matrix has the wrong size");
      }
      if (own.splits.size() != static_cast<size_t>(size_)) {
        return corrupt("this rank's splits are incomplete");
      }
      int64_t received = 0;
      for (int r = 0; r < size_; ++r) {
        if (response.splits[rank_ * size_ + r] != own.splits[r]) {
          return corrupt("its splits for this rank differ");
        }
        if (__builtin_add_overflow(received, response.splits[r * size_ + rank_],
                                   &received)) {
          return corrupt("its splits overflow");
        }
      }
      int64_t row = 0;
      int64_t out = 0;
      if (!Elements(RowShape(own.shape), &row) ||
          !Multiply(row, element, &row) || !Multiply(row, received, &out)) {
        return corrupt("its output size overflows");
      }
    }
  }
  if (response.tensors.size() > 1) {
    // A fused allgather or reducescatter holds its inputs and its outputs
    // (this rank's share) in the buffer.
    if (response.op == OpType::kAllgather) {
      int64_t own = 0;
      int64_t gathered = 0;
      for (const ResponseTensor& tensor : response.tensors) {
        const int64_t row =
            RowElements(tensor.request.shape) * DataTypeSize(response.dtype);
        for (int r = 0; r < size_; ++r) {
          const int64_t bytes = tensor.first_dims[r] * row;
          gathered += bytes;
          if (r == rank_) own += bytes;
        }
      }
      fused_bytes = own + gathered;
    } else if (response.op == OpType::kReducescatter) {
      int64_t share = 0;
      for (const ResponseTensor& tensor : response.tensors) {
        share += ReducescatterRows(Rows(tensor.request.shape), size_, rank_) *
                 RowElements(tensor.request.shape) *
                 DataTypeSize(response.dtype);
      }
      fused_bytes += share;
    }
    if (fused_bytes > fusion_bytes_) {
      return corrupt(absl::StrCat("a fused batch of ", fused_bytes,
                                  " bytes does not fit this rank's fusion "
                                  "buffer of ",
                                  fusion_bytes_, " bytes"));
    }
  }
  return absl::OkStatus();
}

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
  const bool fused =
      response.op == OpType::kAllreduce && response.tensors.size() > 1;
  Status status = Run(response, entries, present);
  if (!fused) Record(response, BackendActivity(response), start_ns);
  return status;
}

std::string Executor::BackendActivity(const Response& response) const {
  std::string activity = absl::StrCat(span_prefix_, backend_->name(), "_",
                                      OpTypeName(response.op));
  if (response.op == OpType::kAllreduce &&
      response.reduce_op != ReduceOp::kAdasum) {
    int64_t count = 0;
    for (const ResponseTensor& tensor : response.tensors) {
      count += tensor.request.num_elements();
    }
    const char* algorithm = backend_->AllreduceAlgorithm(count, response.dtype);
    if (*algorithm != '\0') absl::StrAppend(&activity, "_", algorithm);
  } else if (response.op == OpType::kBroadcast ||
             response.op == OpType::kAllgather) {
    // The largest part any rank contributes (a broadcast: the root's).
    std::vector<int64_t> part(response.op == OpType::kAllgather ? size_ : 1);
    for (const ResponseTensor& tensor : response.tensors) {
      const int64_t elements = tensor.request.num_elements();
      if (response.op == OpType::kBroadcast) {
        part[0] += elements;
        continue;
      }
      const int64_t row = RowElements(tensor.request.shape);
      const int ranks =
          std::min<int>(size_, static_cast<int>(tensor.first_dims.size()));
      for (int r = 0; r < ranks; ++r) part[r] += tensor.first_dims[r] * row;
    }
    const int64_t bytes = *std::max_element(part.begin(), part.end()) *
                          DataTypeSize(response.dtype);
    const char* algorithm = backend_->CopyAlgorithm(bytes);
    if (*algorithm != '\0') absl::StrAppend(&activity, "_", algorithm);
  }
  return absl::AsciiStrToUpper(activity);
}

Status Executor::Run(const Response& response, std::vector<Entry>& entries,
                     const std::vector<bool>& present) {
  switch (response.op) {
    case OpType::kAllreduce:
      return Allreduce(response, entries, present);
    case OpType::kAllgather:
      if (response.tensors.size() > 1) return FusedAllgather(response, entries);
      return Allgather(response, entries.front());
    case OpType::kBroadcast: {
      Entry& entry = entries.front();
      return backend_->Broadcast(entry.output.data, entry.output.size_bytes(),
                                 response.root);
    }
    case OpType::kAlltoall:
      return Alltoall(response, entries.front());
    case OpType::kReducescatter:
      if (response.tensors.size() > 1) {
        return FusedReducescatter(response, entries);
      }
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

Status Executor::ReduceInPlace(const Response& response, void* buffer,
                               const std::vector<int64_t>& counts) {
  if (response.reduce_op == ReduceOp::kAdasum) {
    return adasum_.Run(buffer, counts, response.dtype, response.prescale,
                       response.postscale);
  }
  int64_t total = 0;
  for (int64_t count : counts) total += count;
  return backend_->Allreduce(buffer, total, SpecFor(response));
}

Status Executor::Allreduce(const Response& response,
                           std::vector<Entry>& entries,
                           const std::vector<bool>& present) {
  const int64_t element = DataTypeSize(response.dtype);
  std::vector<int64_t> counts;
  int64_t total = 0;
  for (const ResponseTensor& tensor : response.tensors) {
    counts.push_back(tensor.request.num_elements());
    total += counts.back();
  }
  if (response.tensors.size() == 1) {
    if (!present[0]) {
      zeros_.assign(total * element, 0);
      return ReduceInPlace(response, zeros_.data(), counts);
    }
    Entry& entry = entries.front();
    // Adasum works in place; the backends may read the input where it is.
    if (response.reduce_op == ReduceOp::kAdasum) {
      if (entry.output.data != entry.input.data) {
        std::memcpy(entry.output.data, entry.input.data, total * element);
      }
      return ReduceInPlace(response, entry.output.data, counts);
    }
    return backend_->Allreduce(entry.input.data, entry.output.data, total,
                               SpecFor(response));
  }
  // Fused: pack, reduce once, unpack.
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
  if (Status s = ReduceInPlace(response, buffer, counts); !s.ok()) return s;
  Record(response, BackendActivity(response), phase_start);
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
  entry.operation->output_shapes[entry.member] = shape;
  entry.output.dtype = entry.input.dtype;
  entry.output.shape = shape;
  entry.output.device = entry.input.device;
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
    return absl::OkStatus();
  }
  entry.operation->owned_outputs[entry.member].reset(
      new char[std::max<int64_t>(bytes, 1)], std::default_delete<char[]>());
  entry.output.data = entry.operation->owned_outputs[entry.member].get();
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

// Fused allgather. Each rank packs its rows of every tensor, in response
// order, at the start of the buffer; one Allgatherv gathers the packs after
// them (rank r's pack, then rank r + 1's); each tensor's output takes its
// rows from every rank's pack.
Status Executor::FusedAllgather(const Response& response,
                                std::vector<Entry>& entries) {
  const size_t n = response.tensors.size();
  const int64_t element = DataTypeSize(response.dtype);
  std::vector<int64_t> row_bytes(n);
  std::vector<int64_t> pack_bytes(size_, 0);
  for (size_t i = 0; i < n; ++i) {
    row_bytes[i] = RowElements(entries[i].request.shape) * element;
    std::vector<int64_t> output_shape = entries[i].request.shape;
    if (output_shape.empty()) output_shape.push_back(1);
    output_shape[0] = 0;
    for (int r = 0; r < size_; ++r) {
      const int64_t rows = response.tensors[i].first_dims[r];
      pack_bytes[r] += rows * row_bytes[i];
      output_shape[0] += rows;
    }
    if (Status s = AllocateOutput(entries[i], output_shape); !s.ok()) return s;
  }
  char* input = fusion_buffer_.get();
  char* gathered = input + pack_bytes[rank_];
  int64_t offset = 0;
  for (size_t i = 0; i < n; ++i) {
    const int64_t bytes = response.tensors[i].first_dims[rank_] * row_bytes[i];
    if (bytes > 0) std::memcpy(input + offset, entries[i].input.data, bytes);
    offset += bytes;
  }
  if (Status s = backend_->Allgatherv(input, gathered, pack_bytes); !s.ok()) {
    return s;
  }
  std::vector<int64_t> written(n, 0);  // bytes of each output filled so far
  offset = 0;
  for (int r = 0; r < size_; ++r) {
    for (size_t i = 0; i < n; ++i) {
      const int64_t bytes = response.tensors[i].first_dims[r] * row_bytes[i];
      if (bytes > 0) {
        std::memcpy(static_cast<char*>(entries[i].output.data) + written[i],
                    gathered + offset, bytes);
      }
      written[i] += bytes;
      offset += bytes;
    }
  }
  return absl::OkStatus();
}

// Fused reducescatter. The buffer holds, for rank 0, 1, ... in turn, that
// rank's share of every tensor (in response order); one ReduceScatter leaves
// this rank's reduced shares after them, which go to the outputs.
Status Executor::FusedReducescatter(const Response& response,
                                    std::vector<Entry>& entries) {
  const size_t n = response.tensors.size();
  const int64_t element = DataTypeSize(response.dtype);
  std::vector<int64_t> row_bytes(n);
  std::vector<int64_t> counts(size_, 0);
  int64_t input_bytes = 0;
  for (size_t i = 0; i < n; ++i) {
    const std::vector<int64_t>& shape = entries[i].request.shape;
    row_bytes[i] = RowElements(shape) * element;
    input_bytes += Rows(shape) * row_bytes[i];
    for (int r = 0; r < size_; ++r) {
      counts[r] +=
          ReducescatterRows(Rows(shape), size_, r) * RowElements(shape);
    }
    std::vector<int64_t> output_shape = shape;
    if (output_shape.empty()) output_shape.push_back(1);
    output_shape[0] = ReducescatterRows(Rows(shape), size_, rank_);
    if (Status s = AllocateOutput(entries[i], output_shape); !s.ok()) return s;
  }
  char* input = fusion_buffer_.get();
  char* share = input + input_bytes;
  int64_t offset = 0;
  std::vector<int64_t> first_row(n, 0);  // of rank r's share, per tensor
  for (int r = 0; r < size_; ++r) {
    for (size_t i = 0; i < n; ++i) {
      const int64_t rows =
          ReducescatterRows(Rows(entries[i].request.shape), size_, r);
      const int64_t bytes = rows * row_bytes[i];
      if (bytes > 0) {
        std::memcpy(input + offset,
                    static_cast<const char*>(entries[i].input.data) +
                        first_row[i] * row_bytes[i],
                    bytes);
      }
      first_row[i] += rows;
      offset += bytes;
    }
  }
  if (Status s =
          backend_->ReduceScatter(input, share, counts, SpecFor(response));
      !s.ok()) {
    return s;
  }
  offset = 0;
  for (size_t i = 0; i < n; ++i) {
    const int64_t bytes = entries[i].output.size_bytes();
    if (bytes > 0) std::memcpy(entries[i].output.data, share + offset, bytes);
    offset += bytes;
  }
  return absl::OkStatus();
}

}  // namespace kolo
