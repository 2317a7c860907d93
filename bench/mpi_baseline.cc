// MPI_Allreduce under the measuring procedure.
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

}  // namespace

std::string MpiAllreduceUnsupported(DataType dtype, ReduceOp op) {
  if (StatusOr<MPI_Datatype> type = MpiDatatype(dtype); !type.ok()) {
    return std::string(type.status().message());
  }
  if (MpiOp(dtype, op) == MPI_OP_NULL) {
    return std::string("MPI has no ") + ReduceOpName(op) + " reduction";
  }
  return "";
}

Measurement MeasureMpiAllreduce(const Layout& layout, const RunConfig& config,
                                bool in_place, void* input, void* output) {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  const ValueKind kind = ValueKindFor(Collective::kAllreduce, config.op);
  const MPI_Datatype type = *MpiDatatype(config.dtype);
  const MPI_Op op = MpiOp(config.dtype, config.op);
  // MPI counts are ints; larger messages go as several calls.
  const int64_t max_call = INT_MAX;

  Procedure procedure;
  procedure.prepare = [&](int seed) {
    const ValueModel model(config.dtype, kind, seed);
    if (!in_place) Poison(config.dtype, output, layout.output_count);
    FillInput(model, rank, in_place ? output : input, 0, layout.input_count);
  };
  procedure.run = [&]() -> Status {
    const int64_t element_size = DataTypeSize(config.dtype);
    for (int64_t offset = 0; offset < layout.count; offset += max_call) {
      const int count =
          static_cast<int>(std::min<int64_t>(max_call, layout.count - offset));
      char* out = static_cast<char*>(output) + offset * element_size;
      const void* send =
          in_place ? MPI_IN_PLACE
                   : static_cast<const char*>(input) + offset * element_size;
      const int code =
          MPI_Allreduce(send, out, count, type, op, MPI_COMM_WORLD);
      if (code != MPI_SUCCESS) {
        return absl::InternalError("MPI_Allreduce failed with code " +
                                   std::to_string(code));
      }
    }
    return absl::OkStatus();
  };
  procedure.count_wrong = [&](int seed) {
    const ValueModel model(config.dtype, kind, seed);
    return CountWrong(layout, model, config.op, config.root, rank, output);
  };
  return Measure(procedure, config);
}

}  // namespace kolo::bench
