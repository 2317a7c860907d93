// Collectives on torch tensors: conversion to kolo::Tensor, the handles that
// keep tensors alive while the runtime works on them, and the process-set
// wrappers. Every runtime Status that is not OK becomes a c10::Error.
#include <c10/core/Stream.h>
#include <c10/core/StreamGuard.h>
#include <c10/core/impl/VirtualGuardImpl.h>
#include <c10/util/Exception.h>
#include <c10/util/Optional.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <utility>

#if KOLO_TORCH_CUDA
#include <c10/cuda/CUDAStream.h>
#endif

#include "kolo/torch.h"
#include "runtime/common/mutex.h"

namespace kolo {
namespace torch {
namespace internal {

// Shared by a Handle and its copies. The tensors listed here are referenced
// by the runtime until the operation completes.
struct HandleState {
  std::string description;  // "allreduce 'grad.fc.weight'", for messages
  kolo::Handle handle;
  // Memory the runtime reads or writes (contiguous), kept alive.
  std::vector<at::Tensor> buffers;
  // Tensors wait() returns.
  std::vector<at::Tensor> results;
  // For in-place operations on non-contiguous tensors: results[i] receives
  // buffers[i] after completion.
  bool copy_back = false;
  // Outputs of allgather/alltoall/reducescatter (one per grouped tensor),
  // created by the allocator on kolo's background thread; read only after
  // the handle completed.
  struct Output {
    at::TensorOptions options;
    // CUDA inputs: the stream that was current on the submitting thread.
    // The allocator makes it current while it allocates, so the output
    // lives on the input's device and the caching allocator files the
    // block under the stream the caller goes on to use.
    c10::optional<c10::Stream> producer_stream;
    at::Tensor allocated;
  };
  std::vector<Output> outputs;

  Mutex mu;
  bool finished ABSL_GUARDED_BY(mu) = false;
  std::string error ABSL_GUARDED_BY(mu);  // empty = success

  HandleState() = default;
  HandleState(const HandleState&) = delete;
  HandleState& operator=(const HandleState&) = delete;
  // The last copy of a Handle dropped before completion waits here, as a
  // std::future from std::async does: the runtime may still be using the
  // buffers (and the allocator writes `allocated`).
  ~HandleState() {
    if (handle.valid()) handle.Wait().IgnoreError();
  }
};

}  // namespace internal

namespace {

using internal::HandleState;

DataType ToKoloDataType(at::ScalarType type) {
  switch (type) {
    case at::kByte:
      return DataType::kUint8;
    case at::kChar:
      return DataType::kInt8;
    case at::kInt:
      return DataType::kInt32;
    case at::kLong:
      return DataType::kInt64;
    case at::kHalf:
      return DataType::kFloat16;
    case at::kBFloat16:
      return DataType::kBfloat16;
    case at::kFloat:
      return DataType::kFloat32;
    case at::kDouble:
      return DataType::kFloat64;
    case at::kBool:
      return DataType::kBool;
    default:
      TORCH_CHECK_VALUE(false, "kolo: unsupported tensor dtype ", type,
                        " (supported: uint8, int8, int32, int64, float16, "
                        "bfloat16, float32, float64, bool)");
  }
}

// The stream that is current for `device` on this thread (CUDA: what
// c10::cuda::getCurrentCUDAStream returns), through c10's device-generic
// guard interface, so this compiles against CPU-only LibTorch too.
c10::Stream CurrentStream(c10::Device device) {
  return c10::impl::VirtualGuardImpl(device.type()).getStream(device);
}

// REQUIRES: tensor is contiguous.
kolo::Tensor ToKoloTensor(const at::Tensor& tensor) {
  TORCH_CHECK(tensor.defined(), "kolo: undefined tensor");
  kolo::Tensor result;
  result.data = tensor.data_ptr();
  result.dtype = ToKoloDataType(tensor.scalar_type());
  result.shape.assign(tensor.sizes().begin(), tensor.sizes().end());
  const c10::Device device = tensor.device();
  if (device.is_cuda()) {
    result.device.kind = Device::kCuda;
    result.device.index = device.index();
#if KOLO_TORCH_CUDA
    // The runtime orders its work after what this stream has queued so far
    // (the kernels that produced the tensor).
    result.cuda_stream =
        c10::cuda::getCurrentCUDAStream(device.index()).stream();
#endif
    // A CPU-only LibTorch cannot make CUDA tensors; a CUDA LibTorch that
    // CMake did not recognise leaves cuda_stream null (the legacy default
    // stream), which is LibTorch's current stream unless the caller set one.
  } else {
    TORCH_CHECK(device.is_cpu(), "kolo: unsupported device ", device,
                " (CPU and CUDA tensors are supported)");
  }
  return result;
}

std::string Describe(const char* operation, const std::string& name) {
  return std::string(operation) + " '" + name + "'";
}

// Throws the runtime's status as c10::Error; an invalid argument as
// c10::ValueError (a c10::Error that Python bindings raise as ValueError).
void CheckOk(const Status& status, const std::string& description) {
  TORCH_CHECK_VALUE(status.code() != absl::StatusCode::kInvalidArgument,
                    "kolo: ", description, " failed: ", status.ToString());
  TORCH_CHECK(status.ok(), "kolo: ", description,
              " failed: ", status.ToString());
}

// A contiguous view of `tensor`, or a contiguous copy.
at::Tensor ContiguousBuffer(const at::Tensor& tensor) {
  TORCH_CHECK(tensor.defined(), "kolo: undefined tensor");
  return tensor.contiguous();
}

Handle Start(std::shared_ptr<HandleState> state,
             const StatusOr<kolo::Handle>& handle) {
  CheckOk(handle.status(), state->description);
  state->handle = *handle;
  return Handle(std::move(state));
}

// Adds an output of allgather/alltoall/reducescatter for `input` (its dtype
// and device, allocated while the caller's stream for that device is
// current) and returns its allocator, which makes it a torch tensor on kolo's
// background thread. Errors are returned, never thrown there.
OutputAllocator AddOutput(const std::shared_ptr<HandleState>& state,
                          const at::Tensor& input) {
  HandleState::Output output;
  output.options = input.options();
  if (input.is_cuda()) output.producer_stream = CurrentStream(input.device());
  state->outputs.push_back(std::move(output));
  // A raw pointer: capturing the shared_ptr would make a cycle through the
  // runtime's operation; the state outlives the operation (see ~HandleState).
  HandleState* raw = state.get();
  const size_t index = state->outputs.size() - 1;
  return [raw, index](const std::vector<int64_t>& shape) -> StatusOr<void*> {
    HandleState::Output& out = raw->outputs[index];
    try {
      // Sets the device (and stream) of a CUDA input on this thread, which
      // is kolo's background thread, not the caller's.
      c10::OptionalStreamGuard guard(out.producer_stream);
      out.allocated = at::empty(shape, out.options);
      return out.allocated.data_ptr();
    } catch (const std::exception& e) {
      return absl::ResourceExhaustedError(
          std::string("kolo: cannot allocate the output: ") + e.what());
    }
  };
}

std::shared_ptr<HandleState> NewState(const char* operation,
                                      const std::string& name) {
  auto state = std::make_shared<HandleState>();
  state->description = Describe(operation, name);
  return state;
}

// A grouped operation whose outputs the runtime sizes (allgather,
// reducescatter): member i is tensor i, named "<name>.<i>", its contiguous
// buffer kept alive by the state, its output allocated through it.
struct GroupWithOutputs {
  GroupWithOutputs(const std::shared_ptr<HandleState>& state,
                   const std::vector<at::Tensor>& tensors,
                   const std::string& name) {
    for (size_t i = 0; i < tensors.size(); ++i) {
      at::Tensor input = ContiguousBuffer(tensors[i]);
      names.push_back(name + "." + std::to_string(i));
      inputs.push_back(ToKoloTensor(input));
      allocators.push_back(AddOutput(state, input));
      state->buffers.push_back(input);
    }
  }
  std::vector<std::string> names;
  std::vector<kolo::Tensor> inputs;
  std::vector<OutputAllocator> allocators;
};

Handle AllreduceImpl(const at::Tensor& tensor, const std::string& name,
                     const AllreduceOptions& options, bool in_place,
                     const ProcessSet& process_set) {
  auto state = NewState("allreduce", name);
  at::Tensor input = ContiguousBuffer(tensor);
  at::Tensor output;
  if (in_place) {
    output = input;
    state->copy_back = !input.is_same(tensor);
    state->results = {tensor};
  } else {
    output = at::empty_like(input, at::MemoryFormat::Contiguous);
    state->results = {output};
  }
  state->buffers = {input, output};
  return Start(state,
               process_set.AllreduceAsync(name, ToKoloTensor(input),
                                          ToKoloTensor(output), options));
}

Handle GroupedAllreduceImpl(const std::vector<at::Tensor>& tensors,
                            const std::string& name,
                            const AllreduceOptions& options, bool in_place,
                            const ProcessSet& process_set) {
  auto state = NewState("grouped allreduce", name);
  std::vector<std::string> names;
  std::vector<kolo::Tensor> inputs;
  std::vector<kolo::Tensor> outputs;
  std::vector<at::Tensor> output_buffers;
  for (size_t i = 0; i < tensors.size(); ++i) {
    at::Tensor input = ContiguousBuffer(tensors[i]);
    at::Tensor output =
        in_place ? input : at::empty_like(input, at::MemoryFormat::Contiguous);
    names.push_back(name + "." + std::to_string(i));
    inputs.push_back(ToKoloTensor(input));
    outputs.push_back(ToKoloTensor(output));
    state->buffers.push_back(input);
    output_buffers.push_back(output);
    state->copy_back =
        state->copy_back || (in_place && !input.is_same(tensors[i]));
  }
  if (in_place) {
    state->results = tensors;  // lines up with buffers for the copy back
  } else {
    state->results = output_buffers;
    state->buffers.insert(state->buffers.end(), output_buffers.begin(),
                          output_buffers.end());
  }
  return Start(state, process_set.GroupedAllreduceAsync(names, inputs, outputs,
                                                        options));
}

Handle BroadcastImpl(const at::Tensor& tensor, int root_rank,
                     const std::string& name, bool in_place,
                     const ProcessSet& process_set) {
  auto state = NewState("broadcast", name);
  at::Tensor buffer;
  if (in_place) {
    buffer = ContiguousBuffer(tensor);
    state->copy_back = !buffer.is_same(tensor);
    state->results = {tensor};
  } else {
    buffer = tensor.clone(at::MemoryFormat::Contiguous);
    state->results = {buffer};
  }
  state->buffers = {buffer};
  return Start(
      state, process_set.BroadcastAsync(name, ToKoloTensor(buffer), root_rank));
}

}  // namespace

// ---------------------------------------------------------------------------
// Handle

Handle::Handle(std::shared_ptr<internal::HandleState> state)
    : state_(std::move(state)) {}

bool Handle::poll() const {
  TORCH_CHECK(valid(), "kolo: poll() on an empty Handle");
  return state_->handle.Poll();
}

std::vector<at::Tensor> Handle::wait_all() const {
  TORCH_CHECK(valid(), "kolo: wait() on an empty Handle");
  const Status status = state_->handle.Wait();
  MutexLock lock(&state_->mu);
  if (!state_->finished) {
    state_->finished = true;
    if (!status.ok()) {
      state_->error =
          "kolo: " + state_->description + " failed: " + status.ToString();
    } else if (!state_->outputs.empty()) {
      state_->results.clear();
      for (size_t i = 0; i < state_->outputs.size(); ++i) {
        HandleState::Output& out = state_->outputs[i];
        if (!out.allocated.defined()) {
          // The runtime skips the allocator for an empty output.
          c10::OptionalStreamGuard guard(out.producer_stream);
          out.allocated =
              at::empty(state_->handle.output_shape(i), out.options);
        }
        state_->results.push_back(out.allocated);
      }
    } else if (state_->copy_back) {
      at::NoGradGuard no_grad;
      for (size_t i = 0; i < state_->results.size(); ++i) {
        if (!state_->results[i].is_same(state_->buffers[i])) {
          state_->results[i].copy_(state_->buffers[i]);
        }
      }
    }
    state_->buffers.clear();
  }
  TORCH_CHECK(state_->error.empty(), state_->error);
  return state_->results;
}

at::Tensor Handle::wait() const {
  std::vector<at::Tensor> results = wait_all();
  TORCH_CHECK(results.size() == 1, "kolo: wait() on a handle with ",
              results.size(), " results; use wait_all()");
  return results[0];
}

std::vector<int64_t> Handle::received_splits() const {
  wait_all();
  return state_->handle.received_splits();
}

// ---------------------------------------------------------------------------
// Process set

void init() { CheckOk(kolo::Init(), "init"); }
void shutdown() { CheckOk(kolo::Shutdown(), "shutdown"); }
int rank() { return kolo::Rank(); }
int size() { return kolo::Size(); }
int local_rank() { return kolo::LocalRank(); }
int local_size() { return kolo::LocalSize(); }

// ---------------------------------------------------------------------------
// Collectives

Handle allreduce_async(const at::Tensor& tensor, const std::string& name,
                       const AllreduceOptions& options,
                       const ProcessSet& process_set) {
  return AllreduceImpl(tensor, name, options, /*in_place=*/false, process_set);
}

Handle allreduce_async_(const at::Tensor& tensor, const std::string& name,
                        const AllreduceOptions& options,
                        const ProcessSet& process_set) {
  return AllreduceImpl(tensor, name, options, /*in_place=*/true, process_set);
}

at::Tensor allreduce(const at::Tensor& tensor, const std::string& name,
                     const AllreduceOptions& options,
                     const ProcessSet& process_set) {
  return allreduce_async(tensor, name, options, process_set).wait();
}

at::Tensor allreduce_(const at::Tensor& tensor, const std::string& name,
                      const AllreduceOptions& options,
                      const ProcessSet& process_set) {
  return allreduce_async_(tensor, name, options, process_set).wait();
}

Handle grouped_allreduce_async(const std::vector<at::Tensor>& tensors,
                               const std::string& name,
                               const AllreduceOptions& options,
                               const ProcessSet& process_set) {
  return GroupedAllreduceImpl(tensors, name, options, /*in_place=*/false,
                              process_set);
}

Handle grouped_allreduce_async_(const std::vector<at::Tensor>& tensors,
                                const std::string& name,
                                const AllreduceOptions& options,
                                const ProcessSet& process_set) {
  return GroupedAllreduceImpl(tensors, name, options, /*in_place=*/true,
                              process_set);
}

std::vector<at::Tensor> grouped_allreduce(
    const std::vector<at::Tensor>& tensors, const std::string& name,
    const AllreduceOptions& options, const ProcessSet& process_set) {
  return grouped_allreduce_async(tensors, name, options, process_set)
      .wait_all();
}

std::vector<at::Tensor> grouped_allreduce_(
    const std::vector<at::Tensor>& tensors, const std::string& name,
    const AllreduceOptions& options, const ProcessSet& process_set) {
  return grouped_allreduce_async_(tensors, name, options, process_set)
      .wait_all();
}

Handle allgather_async(const at::Tensor& tensor, const std::string& name,
                       const ProcessSet& process_set) {
  auto state = NewState("allgather", name);
  at::Tensor input = ContiguousBuffer(tensor);
  state->buffers = {input};
  return Start(state, process_set.AllgatherAsync(name, ToKoloTensor(input),
                                                 AddOutput(state, input)));
}

at::Tensor allgather(const at::Tensor& tensor, const std::string& name,
                     const ProcessSet& process_set) {
  return allgather_async(tensor, name, process_set).wait();
}

Handle grouped_allgather_async(const std::vector<at::Tensor>& tensors,
                               const std::string& name,
                               const ProcessSet& process_set) {
  auto state = NewState("grouped allgather", name);
  GroupWithOutputs group(state, tensors, name);
  return Start(state,
               process_set.GroupedAllgatherAsync(group.names, group.inputs,
                                                 std::move(group.allocators)));
}

std::vector<at::Tensor> grouped_allgather(
    const std::vector<at::Tensor>& tensors, const std::string& name,
    const ProcessSet& process_set) {
  return grouped_allgather_async(tensors, name, process_set).wait_all();
}

Handle broadcast_async(const at::Tensor& tensor, int root_rank,
                       const std::string& name, const ProcessSet& process_set) {
  return BroadcastImpl(tensor, root_rank, name, /*in_place=*/false,
                       process_set);
}

Handle broadcast_async_(const at::Tensor& tensor, int root_rank,
                        const std::string& name,
                        const ProcessSet& process_set) {
  return BroadcastImpl(tensor, root_rank, name, /*in_place=*/true, process_set);
}

at::Tensor broadcast(const at::Tensor& tensor, int root_rank,
                     const std::string& name, const ProcessSet& process_set) {
  return broadcast_async(tensor, root_rank, name, process_set).wait();
}

at::Tensor broadcast_(const at::Tensor& tensor, int root_rank,
                      const std::string& name, const ProcessSet& process_set) {
  return broadcast_async_(tensor, root_rank, name, process_set).wait();
}

Handle alltoall_async(const at::Tensor& tensor, const std::string& name,
                      std::vector<int64_t> splits,
                      const ProcessSet& process_set) {
  auto state = NewState("alltoall", name);
  at::Tensor input = ContiguousBuffer(tensor);
  state->buffers = {input};
  return Start(state, process_set.AlltoallAsync(name, ToKoloTensor(input),
                                                std::move(splits),
                                                AddOutput(state, input)));
}

at::Tensor alltoall(const at::Tensor& tensor, const std::string& name,
                    std::vector<int64_t> splits,
                    std::vector<int64_t>* received_splits,
                    const ProcessSet& process_set) {
  Handle handle = alltoall_async(tensor, name, std::move(splits), process_set);
  at::Tensor result = handle.wait();
  if (received_splits != nullptr) {
    *received_splits = handle.received_splits();
  }
  return result;
}

Handle reducescatter_async(const at::Tensor& tensor, const std::string& name,
                           ReduceOp op, const ProcessSet& process_set) {
  auto state = NewState("reducescatter", name);
  at::Tensor input = ContiguousBuffer(tensor);
  state->buffers = {input};
  return Start(state,
               process_set.ReducescatterAsync(name, ToKoloTensor(input),
                                              AddOutput(state, input), op));
}

at::Tensor reducescatter(const at::Tensor& tensor, const std::string& name,
                         ReduceOp op, const ProcessSet& process_set) {
  return reducescatter_async(tensor, name, op, process_set).wait();
}

Handle grouped_reducescatter_async(const std::vector<at::Tensor>& tensors,
                                   const std::string& name, ReduceOp op,
                                   const ProcessSet& process_set) {
  auto state = NewState("grouped reducescatter", name);
  GroupWithOutputs group(state, tensors, name);
  return Start(state,
               process_set.GroupedReducescatterAsync(
                   group.names, group.inputs, op, std::move(group.allocators)));
}

std::vector<at::Tensor> grouped_reducescatter(
    const std::vector<at::Tensor>& tensors, const std::string& name,
    ReduceOp op, const ProcessSet& process_set) {
  return grouped_reducescatter_async(tensors, name, op, process_set).wait_all();
}

int join(const ProcessSet& process_set) {
  StatusOr<int> last = process_set.Join();
  CheckOk(last.status(), "join");
  return *last;
}

double metric_average(double value, const std::string& name,
                      const ProcessSet& process_set) {
  at::Tensor tensor = at::full({}, value, at::kDouble);
  return allreduce_(tensor, name, {}, process_set).item<double>();
}

at::Tensor metric_average(const at::Tensor& value, const std::string& name,
                          const ProcessSet& process_set) {
  TORCH_CHECK(value.is_floating_point(),
              "kolo: metric_average needs a floating-point tensor, got ",
              value.scalar_type());
  // Metrics are small: they travel on the CPU data plane whatever their
  // device, so ranks may hold them on different devices, and a build without
  // NCCL can average CUDA metrics too.
  return allreduce(value.detach().to(at::kCPU), name, {}, process_set)
      .to(value.device());
}

}  // namespace torch
}  // namespace kolo
