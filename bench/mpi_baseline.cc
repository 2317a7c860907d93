// MPI's collectives under the measuring procedure.
#include "bench/mpi_baseline.h"

#include <mpi.h>

#include <algorithm>
#include <climits>

#include "bench/values.h"
#include "runtime/backend/mpi/mpi_datatype.h"

namespace kolo::bench {
namespace {

MPI_Op MpiOp(DataType dtype, ReduceOp op) {
  const bool logical = dtype == DataType::kBool;
  switch (op) {
    case ReduceOp::kSum:
      return logical ? MPI_LOR : MPI_SUM;
    case ReduceOp::kMin:
      return logical ? MPI_LAND : MPI_MIN;
    case ReduceOp::kMax:
      return logical ? MPI_LOR : MPI_MAX;
    case ReduceOp::kProduct:
      return logical ? MPI_LAND : MPI_PROD;
    case ReduceOp::kAverage:
    case ReduceOp::kAdasum:
      break;
  }
  return MPI_OP_NULL;
}

Status Check(int code, Collective collective) {
  if (code == MPI_SUCCESS) return absl::OkStatus();
  return absl::InternalError(std::string(MpiFunctionName(collective)) +
                             " failed with code " + std::to_string(code));
}

// Runs one call of the collective on element counts that fit an int.
Status RunOnce(const Layout& layout, const RunConfig& config, bool in_place,
               const void* input, void* output, MPI_Datatype type, MPI_Op op) {
  const int ranks = layout.ranks;
  switch (layout.collective) {
    case Collective::kAllreduce: {
      // Larger messages go as several calls of at most INT_MAX elements.
      const int64_t element_size = DataTypeSize(config.dtype);
      for (int64_t offset = 0; offset < layout.count; offset += INT_MAX) {
        const int count =
            static_cast<int>(std::min<int64_t>(INT_MAX, layout.count - offset));
        char* out = static_cast<char*>(output) + offset * element_size;
        const void* send =
            in_place ? MPI_IN_PLACE
                     : static_cast<const char*>(input) + offset * element_size;
        Status status =
            Check(MPI_Allreduce(send, out, count, type, op, MPI_COMM_WORLD),
                  layout.collective);
        if (!status.ok()) return status;
      }
      return absl::OkStatus();
    }
    case Collective::kBroadcast: {
      const int64_t element_size = DataTypeSize(config.dtype);
      for (int64_t offset = 0; offset < layout.count; offset += INT_MAX) {
        const int count =
            static_cast<int>(std::min<int64_t>(INT_MAX, layout.count - offset));
        Status status =
            Check(MPI_Bcast(static_cast<char*>(output) + offset * element_size,
                            count, type, config.root, MPI_COMM_WORLD),
                  layout.collective);
        if (!status.ok()) return status;
      }
      return absl::OkStatus();
    }
    case Collective::kAllgather:
      return Check(
          MPI_Allgather(input, static_cast<int>(layout.input_count), type,
                        output, static_cast<int>(layout.input_count), type,
                        MPI_COMM_WORLD),
          layout.collective);
    case Collective::kReducescatter:
      return Check(MPI_Reduce_scatter_block(
                       input, output, static_cast<int>(layout.output_count),
                       type, op, MPI_COMM_WORLD),
                   layout.collective);
    case Collective::kAlltoall: {
      const int block = static_cast<int>(layout.count / ranks);
      return Check(
          MPI_Alltoall(input, block, type, output, block, type, MPI_COMM_WORLD),
          layout.collective);
    }
  }
  return absl::InternalError("kolo_bench: unknown collective");
}

}  // namespace

const char* MpiFunctionName(Collective collective) {
  switch (collective) {
    case Collective::kAllreduce:
      return "MPI_Allreduce";
    case Collective::kAllgather:
      return "MPI_Allgather";
    case Collective::kBroadcast:
      return "MPI_Bcast";
    case Collective::kReducescatter:
      return "MPI_Reduce_scatter_block";
    case Collective::kAlltoall:
      return "MPI_Alltoall";
  }
  return "MPI";
}

std::string MpiUnsupported(Collective collective, DataType dtype, ReduceOp op) {
  if (StatusOr<MPI_Datatype> type = MpiDatatype(dtype); !type.ok()) {
    return std::string(type.status().message());
  }
  if (Reduces(collective) && MpiOp(dtype, op) == MPI_OP_NULL) {
    return std::string("MPI has no ") + ReduceOpName(op) + " reduction";
  }
  return "";
}

Measurement MeasureMpi(const Layout& layout, const RunConfig& config,
                       bool in_place, void* input, void* output) {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  const ValueKind kind = ValueKindFor(layout.collective, config.op);
  const MPI_Datatype type = *MpiDatatype(config.dtype);
  const MPI_Op op =
      Reduces(layout.collective) ? MpiOp(config.dtype, config.op) : MPI_OP_NULL;

  Procedure procedure;
  procedure.prepare = [&](int seed) {
    const ValueModel model(config.dtype, kind, seed);
    if (!in_place) Poison(config.dtype, output, layout.output_count);
    FillInput(model, rank, in_place ? output : input, 0, layout.input_count);
  };
  procedure.run = [&]() -> Status {
    // Partitioned collectives' per-rank blocks are ints in MPI.
    if (layout.collective != Collective::kAllreduce &&
        layout.collective != Collective::kBroadcast &&
        layout.count / layout.ranks > INT_MAX) {
      return absl::InvalidArgumentError(
          std::string(MpiFunctionName(layout.collective)) +
          ": a block of more than INT_MAX elements");
    }
    return RunOnce(layout, config, in_place, input, output, type, op);
  };
  procedure.count_wrong = [&](int seed) {
    const ValueModel model(config.dtype, kind, seed);
    return CountWrong(layout, model, config.op, config.root, rank, output);
  };
  return Measure(procedure, config);
}

}  // namespace kolo::bench
