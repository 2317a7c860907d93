// kolo's collectives under the measuring procedure.
#include "bench/kolo_runner.h"

#include <algorithm>
#include <cstddef>
#include <vector>

#include "bench/values.h"
#include "kolo/kolo.h"

namespace kolo::bench {
namespace {

std::byte* At(void* base, int64_t element, int64_t element_size) {
  return static_cast<std::byte*>(base) + element * element_size;
}

Tensor Vector(void* data, DataType dtype, int64_t count, Device device) {
  Tensor tensor;
  tensor.data = data;
  tensor.dtype = dtype;
  tensor.shape = {count};
  tensor.device = device;
  return tensor;
}

// Hands kolo the part's slice of the preallocated output buffer, so no
// iteration allocates.
OutputAllocator Into(void* data, int64_t expected_elements) {
  return [data, expected_elements](
             const std::vector<int64_t>& shape) -> StatusOr<void*> {
    int64_t elements = 1;
    for (int64_t d : shape) elements *= d;
    if (elements != expected_elements) {
      return absl::InternalError("kolo_bench: kolo asked for an output of " +
                                 std::to_string(elements) + " elements where " +
                                 std::to_string(expected_elements) +
                                 " were expected");
    }
    return data;
  };
}

StatusOr<Handle> Submit(const ProcessSet& set, const Layout& layout,
                        const RunConfig& config, const Part& part,
                        const std::string& name, void* input, void* output,
                        Device device) {
  const int64_t element_size = DataTypeSize(config.dtype);
  const Tensor in = Vector(At(input, part.input_offset, element_size),
                           config.dtype, part.input_count, device);
  void* out = At(output, part.output_offset, element_size);
  switch (layout.collective) {
    case Collective::kAllreduce:
      return set.AllreduceAsync(
          name, in, Vector(out, config.dtype, part.output_count, device),
          AllreduceOptions{config.op, 1.0, 1.0});
    case Collective::kAllgather:
      return set.AllgatherAsync(name, in, Into(out, part.output_count));
    case Collective::kBroadcast:
      return set.BroadcastAsync(
          name, Vector(out, config.dtype, part.output_count, device),
          config.root);
    case Collective::kReducescatter:
      return set.ReducescatterAsync(name, in, Into(out, part.output_count),
                                    config.op);
    case Collective::kAlltoall:
      return set.AlltoallAsync(name, in, {}, Into(out, part.output_count));
  }
  return absl::InternalError("kolo_bench: unknown collective");
}

}  // namespace

bool KoloHasInPlace(Collective collective) {
  return collective == Collective::kAllreduce ||
         collective == Collective::kBroadcast;
}

bool KoloHasOutOfPlace(Collective collective) {
  return collective != Collective::kBroadcast;
}

Measurement MeasureKolo(const Layout& layout, const RunConfig& config,
                        bool in_place, const std::string& name,
                        const MessageBuffers& buffers,
                        const ProcessSet& process_set) {
  int rank = process_set.Rank();
  const int64_t element_size = DataTypeSize(config.dtype);
  void* output = buffers.output();
  void* source = in_place ? output : buffers.input();
  void* host_source = in_place ? buffers.host_output() : buffers.host_input();
  std::vector<std::string> names;
  for (size_t p = 0; p < layout.parts.size(); ++p) {
    names.push_back(name + ".part" + std::to_string(p));
  }
  const ValueKind kind = ValueKindFor(layout.collective, config.op);

  Procedure procedure;
  procedure.prepare = [&](int seed) {
    const ValueModel model(config.dtype, kind, seed);
    if (!in_place) {
      Poison(config.dtype, buffers.host_output(), layout.output_count);
    }
    FillInput(model, rank, host_source, 0, layout.input_count);
    const int64_t input_bytes = layout.input_count * element_size;
    const int64_t output_bytes = layout.output_count * element_size;
    if (in_place) {
      buffers.Upload(0, std::max(input_bytes, output_bytes));
    } else {
      buffers.Upload(input_bytes, output_bytes);
    }
  };
  procedure.run = [&]() -> Status {
    Status first_error;
    std::vector<Handle> handles;
    for (size_t p = 0; p < layout.parts.size(); ++p) {
      StatusOr<Handle> handle =
          Submit(process_set, layout, config, layout.parts[p], names[p], source,
                 output, buffers.device());
      if (handle.ok()) {
        handles.push_back(*handle);
      } else if (first_error.ok()) {
        first_error = handle.status();
      }
    }
    for (const Handle& handle : handles) {
      Status status = handle.Wait();
      if (!status.ok() && first_error.ok()) first_error = status;
    }
    return first_error;
  };
  procedure.count_wrong = [&](int seed) {
    const ValueModel model(config.dtype, kind, seed);
    buffers.Download(layout.output_count * element_size);
    return CountWrong(layout, model, config.op, config.root, rank,
                      buffers.host_output());
  };
  const int64_t executed_before = process_set.GetStats().collectives_executed;
  Measurement measurement = Measure(procedure, config);
  const int64_t executed =
      process_set.GetStats().collectives_executed - executed_before;
  measurement.collectives_per_iteration =
      static_cast<double>(executed) /
      (config.warmup + config.iters + config.check);
  return measurement;
}

}  // namespace kolo::bench
