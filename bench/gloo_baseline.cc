// Gloo's ring-chunked allreduce under the measuring procedure.
#include "bench/gloo_baseline.h"

#include <mpi.h>
#include <stdlib.h>

#include <chrono>
#include <climits>
#include <exception>
#include <filesystem>
#include <type_traits>
#include <vector>

#include "bench/values.h"
#include "gloo/allreduce_ring_chunked.h"
#include "gloo/rendezvous/context.h"
#include "gloo/rendezvous/file_store.h"
#include "gloo/transport/tcp/device.h"
#include "runtime/common/dtype_dispatch.h"

namespace kolo::bench {
namespace {

constexpr std::chrono::seconds kGlooTimeout(120);

// The storage types (runtime/common/dtype_dispatch.h) Gloo's reductions run
// on here: C++'s own arithmetic types, not kolo's 16-bit floats or bool.
template <typename T>
constexpr bool kGlooRuns = std::is_arithmetic_v<T>;

template <typename T>
const gloo::ReductionFunction<T>* GlooReduction(ReduceOp op) {
  switch (op) {
    case ReduceOp::kMin:
      return gloo::ReductionFunction<T>::min;
    case ReduceOp::kMax:
      return gloo::ReductionFunction<T>::max;
    case ReduceOp::kProduct:
      return gloo::ReductionFunction<T>::product;
    case ReduceOp::kSum:
    case ReduceOp::kAverage:
    case ReduceOp::kAdasum:  // Unsupported() refuses both
      break;
  }
  return gloo::ReductionFunction<T>::sum;
}

// Makes a fresh directory on rank 0 and tells every rank its path; empty
// when rank 0 could not make one.
std::string SharedTemporaryDirectory(int rank) {
  std::string path;
  if (rank == 0) {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "kolo_bench_gloo.XXXXXX")
            .string();
    if (mkdtemp(pattern.data()) != nullptr) path = pattern;
  }
  int length = static_cast<int>(path.size());
  MPI_Bcast(&length, 1, MPI_INT, 0, MPI_COMM_WORLD);
  path.resize(length);
  MPI_Bcast(path.data(), length, MPI_CHAR, 0, MPI_COMM_WORLD);
  return path;
}

template <typename T>
Measurement MeasureTyped(
    const std::shared_ptr<gloo::rendezvous::Context>& context,
    const Layout& layout, const RunConfig& config, void* buffer) {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  std::unique_ptr<gloo::AllreduceRingChunked<T>> algorithm;
  std::string error;
  if (layout.count > INT_MAX) {
    error = "Gloo counts are ints; " + std::to_string(layout.count) +
            " elements is too many";
  } else {
    try {
      algorithm = std::make_unique<gloo::AllreduceRingChunked<T>>(
          context, std::vector<T*>{static_cast<T*>(buffer)},
          static_cast<int>(layout.count), GlooReduction<T>(config.op));
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  error = AgreeOnError(error);
  if (!error.empty()) {
    Measurement failed;
    failed.error = error;
    return failed;
  }

  const ValueKind kind = ValueKindFor(Collective::kAllreduce, config.op);
  Procedure procedure;
  procedure.prepare = [&](int seed) {
    FillInput(ValueModel(config.dtype, kind, seed), rank, buffer, 0,
              layout.count);
  };
  procedure.run = [&]() -> Status {
    try {
      algorithm->run();
    } catch (const std::exception& e) {
      return absl::InternalError(std::string("gloo: ") + e.what());
    }
    return absl::OkStatus();
  };
  procedure.count_wrong = [&](int seed) {
    return CountWrong(layout, ValueModel(config.dtype, kind, seed), config.op,
                      config.root, rank, buffer);
  };
  return Measure(procedure, config);
}

}  // namespace

std::string GlooBaseline::Unsupported(DataType dtype, ReduceOp op) {
  if (!DispatchDtype(dtype, [](auto tag) {
        return kGlooRuns<typename decltype(tag)::Type>;
      })) {
    return std::string(
               "the Gloo baseline runs uint8, int8, int32, int64, "
               "float32 and float64, not ") +
           DataTypeName(dtype);
  }
  if (op == ReduceOp::kAverage) return "Gloo has no average reduction";
  if (op == ReduceOp::kAdasum) return "Gloo has no adasum reduction";
  return "";
}

StatusOr<std::unique_ptr<GlooBaseline>> GlooBaseline::Connect() {
  int rank = 0;
  int ranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  const std::string directory = SharedTemporaryDirectory(rank);
  if (directory.empty()) {
    return absl::InternalError(
        "kolo_bench: cannot make a temporary directory for Gloo's file store");
  }
  std::shared_ptr<gloo::rendezvous::Context> context;
  std::string error;
  try {
    gloo::transport::tcp::attr attr;
    attr.hostname = "127.0.0.1";
    std::shared_ptr<gloo::transport::Device> device =
        gloo::transport::tcp::CreateDevice(attr);
    gloo::rendezvous::FileStore store(directory);
    context = std::make_shared<gloo::rendezvous::Context>(rank, ranks);
    context->setTimeout(kGlooTimeout);
    context->connectFullMesh(store, device);
  } catch (const std::exception& e) {
    error = e.what();
  }
  error = AgreeOnError(error);
  std::unique_ptr<GlooBaseline> baseline(
      new GlooBaseline(std::move(context), directory));
  if (!error.empty()) {
    return absl::InternalError("kolo_bench: Gloo could not connect: " + error);
  }
  return baseline;
}

GlooBaseline::~GlooBaseline() {
  MPI_Barrier(MPI_COMM_WORLD);
  context_.reset();
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank == 0) {
    std::error_code ignored;
    std::filesystem::remove_all(store_directory_, ignored);
  }
}

Measurement GlooBaseline::MeasureAllreduce(const Layout& layout,
                                           const RunConfig& config,
                                           void* buffer) {
  return DispatchDtype(config.dtype, [&](auto tag) {
    using T = typename decltype(tag)::Type;
    if constexpr (kGlooRuns<T>) {
      return MeasureTyped<T>(context_, layout, config, buffer);
    } else {
      Measurement refused;
      refused.error = Unsupported(config.dtype, config.op);
      return refused;
    }
  });
}

}  // namespace kolo::bench
