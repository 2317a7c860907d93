// NCCL's collectives under the measuring procedure (see nccl_baseline.h).
#include "bench/nccl_baseline.h"

#include <cuda_runtime_api.h>
#include <mpi.h>
#include <nccl.h>

#include <algorithm>
#include <cstddef>
#include <string>

#include "bench/values.h"
#include "runtime/backend/nccl/nccl_datatype.h"
#include "runtime/common/dtype_dispatch.h"

namespace kolo::bench {
namespace {

// bool travels as ncclUint8 (nccl_datatype.h), on which ncclMax is logical
// OR and ncclMin logical AND.
ncclRedOp_t NcclOp(DataType dtype, ReduceOp op) {
  const bool logical = dtype == DataType::kBool;
  switch (op) {
    case ReduceOp::kSum:
      return logical ? ncclMax : ncclSum;
    case ReduceOp::kAverage:  // Unsupported() refuses it for bool
      return ncclAvg;
    case ReduceOp::kMin:
      return ncclMin;
    case ReduceOp::kMax:
      return ncclMax;
    case ReduceOp::kProduct:
      return logical ? ncclMin : ncclProd;
    case ReduceOp::kAdasum:  // Unsupported() refuses it
      break;
  }
  return ncclSum;
}

bool IsFloating(DataType dtype) {
  const DtypeKind kind = DtypeKindOf(dtype);
  return kind == DtypeKind::kFloating || kind == DtypeKind::kHalf;
}

std::byte* At(void* base, int64_t element, int64_t element_size) {
  return static_cast<std::byte*>(base) + element * element_size;
}

Status NcclError(const char* call, ncclResult_t result) {
  return absl::InternalError(std::string(call) +
                             " failed: " + ncclGetErrorString(result));
}

}  // namespace

struct NcclBaseline::State {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  int ranks = 1;
};

StatusOr<std::unique_ptr<NcclBaseline>> NcclBaseline::Create(int rank,
                                                              int ranks,
                                                              int gpu) {
  std::unique_ptr<NcclBaseline> baseline(new NcclBaseline());
  baseline->rank_ = rank;
  baseline->state_ = std::make_unique<State>();
  baseline->state_->ranks = ranks;
  cudaSetDevice(gpu);
  ncclUniqueId id{};
  ncclResult_t result = ncclSuccess;
  if (rank == 0) result = ncclGetUniqueId(&id);
  int ok = result == ncclSuccess ? 1 : 0;
  MPI_Bcast(&ok, 1, MPI_INT, 0, MPI_COMM_WORLD);
  if (!ok) {
    return rank == 0 ? NcclError("ncclGetUniqueId", result)
                     : absl::InternalError("ncclGetUniqueId failed on rank 0");
  }
  MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, MPI_COMM_WORLD);
  result = ncclCommInitRank(&baseline->state_->comm, ranks, id, rank);
  if (result != ncclSuccess) return NcclError("ncclCommInitRank", result);
  if (cudaError_t e = cudaStreamCreateWithFlags(&baseline->state_->stream,
                                                cudaStreamNonBlocking);
      e != cudaSuccess) {
    return absl::InternalError(std::string("cudaStreamCreate failed: ") +
                               cudaGetErrorString(e));
  }
  return baseline;
}

NcclBaseline::~NcclBaseline() {
  if (state_ == nullptr) return;
  if (state_->comm != nullptr) ncclCommDestroy(state_->comm);
  if (state_->stream != nullptr) cudaStreamDestroy(state_->stream);
}

std::string NcclBaseline::Version() {
  int version = 0;
  ncclGetVersion(&version);
  // NCCL >= 2.9 encodes major * 10000 + minor * 100 + patch.
  return "NCCL " + std::to_string(version / 10000) + "." +
         std::to_string(version / 100 % 100) + "." +
         std::to_string(version % 100);
}

std::string NcclBaseline::Unsupported(Collective collective, DataType dtype,
                                      ReduceOp op, int ranks) {
  if (StatusOr<ncclDataType_t> type = nccl::NcclDatatype(dtype); !type.ok()) {
    return std::string(type.status().message());
  }
  if (Reduces(collective) && op == ReduceOp::kAdasum) {
    return "NCCL has no adasum reduction";
  }
  if (Reduces(collective) && op == ReduceOp::kAverage && !IsFloating(dtype)) {
    return std::string("kolo's integer average rounds toward zero; NCCL's "
                       "ncclAvg is not compared for ") +
           DataTypeName(dtype);
  }
  if (Reduces(collective) && op == ReduceOp::kAverage &&
      (ranks & (ranks - 1)) != 0) {
    return "ncclAvg premultiplies by a rounded 1/" + std::to_string(ranks) +
           ", which the reference (sum, then divide) does not match";
  }
  return "";
}

Measurement NcclBaseline::Measure(const Layout& layout,
                                  const RunConfig& config, bool in_place,
                                  const MessageBuffers& buffers) {
  const ValueKind kind = ValueKindFor(layout.collective, config.op);
  const ncclDataType_t type = *nccl::NcclDatatype(config.dtype);
  const ncclRedOp_t op = NcclOp(config.dtype, config.op);
  const int64_t element_size = DataTypeSize(config.dtype);
  const bool really_in_place =
      layout.collective == Collective::kBroadcast ||
      (in_place && layout.collective == Collective::kAllreduce);
  void* output = buffers.output();
  const void* input = really_in_place ? output : buffers.input();
  void* host_source =
      really_in_place ? buffers.host_output() : buffers.host_input();
  State& s = *state_;

  Procedure procedure;
  procedure.prepare = [&](int seed) {
    const ValueModel model(config.dtype, kind, seed);
    if (!really_in_place) {
      Poison(config.dtype, buffers.host_output(), layout.output_count);
    }
    FillInput(model, rank_, host_source, 0, layout.input_count);
    if (really_in_place) {
      buffers.Upload(0, layout.output_count * element_size);
    } else {
      buffers.Upload(layout.input_count * element_size,
                     layout.output_count * element_size);
    }
  };
  procedure.run = [&]() -> Status {
    ncclResult_t result = ncclSuccess;
    const char* call = "";
    switch (layout.collective) {
      case Collective::kAllreduce:
        call = "ncclAllReduce";
        result = ncclAllReduce(input, output, layout.count, type, op, s.comm,
                               s.stream);
        break;
      case Collective::kAllgather:
        call = "ncclAllGather";
        result = ncclAllGather(input, output, layout.input_count, type, s.comm,
                               s.stream);
        break;
      case Collective::kBroadcast:
        call = "ncclBroadcast";
        result = ncclBroadcast(output, output, layout.count, type, config.root,
                               s.comm, s.stream);
        break;
      case Collective::kReducescatter:
        call = "ncclReduceScatter";
        result = ncclReduceScatter(input, output, layout.output_count, type, op,
                                   s.comm, s.stream);
        break;
      case Collective::kAlltoall: {
        // Equal chunks to and from every rank, as one group of sends and
        // receives (NCCL has no alltoall call).
        call = "ncclSend/ncclRecv";
        const int64_t chunk = layout.input_count / s.ranks;
        result = ncclGroupStart();
        for (int peer = 0; peer < s.ranks && result == ncclSuccess; ++peer) {
          result = ncclSend(At(const_cast<void*>(input), peer * chunk,
                               element_size),
                            chunk, type, peer, s.comm, s.stream);
          if (result == ncclSuccess) {
            result = ncclRecv(At(output, peer * chunk, element_size), chunk,
                              type, peer, s.comm, s.stream);
          }
        }
        const ncclResult_t ended = ncclGroupEnd();
        if (result == ncclSuccess) result = ended;
        break;
      }
    }
    if (result != ncclSuccess) return NcclError(call, result);
    if (cudaError_t e = cudaStreamSynchronize(s.stream); e != cudaSuccess) {
      return absl::InternalError(std::string("cudaStreamSynchronize after ") +
                                 call + ": " + cudaGetErrorString(e));
    }
    return absl::OkStatus();
  };
  procedure.count_wrong = [&](int seed) {
    const ValueModel model(config.dtype, kind, seed);
    buffers.Download(layout.output_count * element_size);
    return CountWrong(layout, model, config.op, config.root, rank_,
                      buffers.host_output());
  };
  return ::kolo::bench::Measure(procedure, config);
}

}  // namespace kolo::bench
