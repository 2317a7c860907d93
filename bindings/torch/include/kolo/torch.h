// kolo/torch.h: kolo for LibTorch. Collectives on torch::Tensor, a
// DistributedOptimizer that allreduces gradients while backward is still
// running, broadcasts of model parameters and optimizer state, metric
// averaging, learning-rate warm-up and a rank-sharding sampler: the five steps
// of the Horovod recipe (initialise, broadcast the initial state, wrap the
// optimizer, average metrics, checkpoint on one rank) for C++ training loops.
//
// Errors. Every failure, from this rank or from the runtime (a cross-rank
// mismatch, a stall, a dead peer, shutdown), is thrown as c10::Error whose
// message carries the runtime's status and message; invalid arguments (an
// unsupported dtype, a bad root rank, a name already pending) as
// c10::ValueError, a c10::Error that Python bindings raise as ValueError.
//
// Names. Every collective takes a name. All ranks must use the same name for
// the same tensor, and a name must be unique among a rank's pending
// operations; reusing a name once its handle has completed is normal.
//
// Devices. CPU tensors run on kolo's CPU data plane; CUDA tensors are passed
// to the runtime as device memory (they need a runtime built with NCCL; other
// builds, and machines without a GPU, fail the submission with the runtime's
// message). A CUDA tensor is submitted with the stream that is current on the
// calling thread (c10::cuda::getCurrentCUDAStream): the runtime waits for the
// work queued on it so far, so no synchronisation is needed before a call.
// Once a handle has completed, its results are in device memory and any
// stream may read them. Outputs that kolo allocates (allgather, alltoall,
// reducescatter) are on the input's device, allocated for the caller's
// stream. Every rank passes a tensor on the same kind of device.
//
// Naming follows LibTorch (snake_case functions, trailing underscore for
// in-place operations), since these functions sit next to torch's own.
//
// Thread safety: the free functions may be called from any thread.
// DistributedOptimizer, LearningRateWarmup, DistributedSampler,
// SyncBatchNorm and elastic::ElasticSampler are not safe for concurrent use
// without external synchronisation.
#ifndef KOLO_TORCH_H_
#define KOLO_TORCH_H_

#include <torch/data/samplers/base.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/options/batchnorm.h>
#include <torch/nn/pimpl.h>
#include <torch/optim/optimizer.h>
#include <torch/ordered_dict.h>
#include <torch/version.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kolo/kolo.h"
#include "kolo/process_set.h"

namespace kolo {
namespace torch {

// ---------------------------------------------------------------------------
// Process set. Thin wrappers over kolo::Init() and friends that throw
// c10::Error instead of returning a Status.

// Collective: every rank calls it once before any other function here.
void init();
// Collective: stops the runtime on every rank.
void shutdown();
int rank();
int size();
int local_rank();
int local_size();

// ---------------------------------------------------------------------------
// Collectives on tensors. Any layout is accepted: a non-contiguous tensor is
// copied into a contiguous buffer (and, for in-place operations, copied back
// when the handle is waited on). Supported dtypes: uint8, int8, int32, int64,
// float16, bfloat16, float32, float64, bool.

namespace internal {
struct HandleState;
}  // namespace internal

// The result of an asynchronous collective. Cheap to copy; keeps the tensors
// the operation reads and writes alive until it completes: dropping the last
// copy of an unfinished Handle blocks until the operation completes (as a
// std::future from std::async does). Results carry no autograd history.
class Handle {
 public:
  Handle() = default;
  explicit Handle(std::shared_ptr<internal::HandleState> state);

  bool valid() const { return state_ != nullptr; }
  // True once the operation has completed, successfully or not. Never blocks.
  bool poll() const;
  // Blocks until the operation completes and returns its result (for in-place
  // operations, the tensor that was passed in). Throws c10::Error with the
  // runtime's message if it failed. May be called more than once.
  // REQUIRES: the operation has exactly one result tensor.
  ::torch::Tensor wait() const;
  // As wait(), for any number of results (grouped operations).
  std::vector<::torch::Tensor> wait_all() const;
  // alltoall, after wait(): rows received from each rank.
  std::vector<int64_t> received_splits() const;

 private:
  std::shared_ptr<internal::HandleState> state_;
};

// Allreduce. options.op is average by default; see kolo::AllreduceOptions for
// the scale factors. allreduce_async returns a new tensor; allreduce_async_
// writes the result into `tensor`.
Handle allreduce_async(const ::torch::Tensor& tensor, const std::string& name,
                       const AllreduceOptions& options = {},
                       const ProcessSet& process_set = ProcessSet());
Handle allreduce_async_(const ::torch::Tensor& tensor, const std::string& name,
                        const AllreduceOptions& options = {},
                        const ProcessSet& process_set = ProcessSet());
::torch::Tensor allreduce(const ::torch::Tensor& tensor,
                          const std::string& name,
                          const AllreduceOptions& options = {},
                          const ProcessSet& process_set = ProcessSet());
// Returns `tensor`, now holding the result.
::torch::Tensor allreduce_(const ::torch::Tensor& tensor,
                           const std::string& name,
                           const AllreduceOptions& options = {},
                           const ProcessSet& process_set = ProcessSet());

// All-or-nothing allreduce of several tensors (fused when they fit). Tensor i
// is named "<name>.<i>".
Handle grouped_allreduce_async(const std::vector<::torch::Tensor>& tensors,
                               const std::string& name,
                               const AllreduceOptions& options = {},
                               const ProcessSet& process_set = ProcessSet());
Handle grouped_allreduce_async_(const std::vector<::torch::Tensor>& tensors,
                                const std::string& name,
                                const AllreduceOptions& options = {},
                                const ProcessSet& process_set = ProcessSet());
std::vector<::torch::Tensor> grouped_allreduce(
    const std::vector<::torch::Tensor>& tensors, const std::string& name,
    const AllreduceOptions& options = {},
    const ProcessSet& process_set = ProcessSet());
std::vector<::torch::Tensor> grouped_allreduce_(
    const std::vector<::torch::Tensor>& tensors, const std::string& name,
    const AllreduceOptions& options = {},
    const ProcessSet& process_set = ProcessSet());

// Concatenates every rank's tensor along the first dimension, in rank order.
// The first dimension may differ between ranks.
Handle allgather_async(const ::torch::Tensor& tensor, const std::string& name,
                       const ProcessSet& process_set = ProcessSet());
::torch::Tensor allgather(const ::torch::Tensor& tensor,
                          const std::string& name,
                          const ProcessSet& process_set = ProcessSet());

// All-or-nothing allgather of several tensors (fused when they fit; see
// kolo::GroupedAllgatherAsync). Tensor i is named "<name>.<i>"; every rank
// passes the same number of tensors. Returns one gathered tensor per input.
Handle grouped_allgather_async(const std::vector<::torch::Tensor>& tensors,
                               const std::string& name,
                               const ProcessSet& process_set = ProcessSet());
std::vector<::torch::Tensor> grouped_allgather(
    const std::vector<::torch::Tensor>& tensors, const std::string& name,
    const ProcessSet& process_set = ProcessSet());

// root_rank's tensor, on every rank. broadcast returns a new tensor (root:
// a copy); broadcast_ overwrites `tensor`.
Handle broadcast_async(const ::torch::Tensor& tensor, int root_rank,
                       const std::string& name,
                       const ProcessSet& process_set = ProcessSet());
Handle broadcast_async_(const ::torch::Tensor& tensor, int root_rank,
                        const std::string& name,
                        const ProcessSet& process_set = ProcessSet());
::torch::Tensor broadcast(const ::torch::Tensor& tensor, int root_rank,
                          const std::string& name,
                          const ProcessSet& process_set = ProcessSet());
::torch::Tensor broadcast_(const ::torch::Tensor& tensor, int root_rank,
                           const std::string& name,
                           const ProcessSet& process_set = ProcessSet());

// Sends splits[j] first-dimension rows to rank j (empty: equal parts) and
// returns the rows received, in rank order.
Handle alltoall_async(const ::torch::Tensor& tensor, const std::string& name,
                      std::vector<int64_t> splits = {},
                      const ProcessSet& process_set = ProcessSet());
// received_splits, when not null, receives the rows that came from each rank.
::torch::Tensor alltoall(const ::torch::Tensor& tensor, const std::string& name,
                         std::vector<int64_t> splits = {},
                         std::vector<int64_t>* received_splits = nullptr,
                         const ProcessSet& process_set = ProcessSet());

// Reduces every rank's tensor and returns this rank's share of the first
// dimension (dim0 / size rows; the first dim0 % size ranks get one more).
Handle reducescatter_async(const ::torch::Tensor& tensor,
                           const std::string& name,
                           ReduceOp op = ReduceOp::kAverage,
                           const ProcessSet& process_set = ProcessSet());
::torch::Tensor reducescatter(const ::torch::Tensor& tensor,
                              const std::string& name,
                              ReduceOp op = ReduceOp::kAverage,
                              const ProcessSet& process_set = ProcessSet());

// All-or-nothing reducescatter of several tensors (fused when they fit),
// named as grouped_allgather's. Returns this rank's share of each.
Handle grouped_reducescatter_async(
    const std::vector<::torch::Tensor>& tensors, const std::string& name,
    ReduceOp op = ReduceOp::kAverage,
    const ProcessSet& process_set = ProcessSet());
std::vector<::torch::Tensor> grouped_reducescatter(
    const std::vector<::torch::Tensor>& tensors, const std::string& name,
    ReduceOp op = ReduceOp::kAverage,
    const ProcessSet& process_set = ProcessSet());

// This rank has no more data; it contributes zeros to the other ranks'
// allreduces until all have joined. Blocks; returns the rank that joined last.
int join(const ProcessSet& process_set = ProcessSet());

// The average of `value` over all ranks (float64 arithmetic: exact when the
// sum is). Collective: every rank calls it with the same name.
double metric_average(double value, const std::string& name,
                      const ProcessSet& process_set = ProcessSet());
// Element-wise average over all ranks of a tensor of any floating dtype;
// returns a new tensor, detached, of the input's dtype and device. The values
// travel through the CPU data plane whatever their device (metrics are
// small), so ranks may hold them on different devices.
::torch::Tensor metric_average(const ::torch::Tensor& value,
                               const std::string& name,
                               const ProcessSet& process_set = ProcessSet());

// ---------------------------------------------------------------------------
// Objects: arbitrary bytes (a serialized config, a vocabulary, an RNG state),
// of any length, including 0. Collective: every rank calls the same function
// with the same name. Bytes travel through the CPU data plane.

// root_rank's bytes, on every rank (root_rank gets its own back; the others'
// `bytes` are ignored). The length travels first, then the payload: names
// "<name>.size" and "<name>.data".
std::string broadcast_object(const std::string& bytes, int root_rank,
                             const std::string& name = "broadcast_object",
                             const ProcessSet& process_set = ProcessSet());
std::vector<char> broadcast_object(
    const std::vector<char>& bytes, int root_rank,
    const std::string& name = "broadcast_object",
    const ProcessSet& process_set = ProcessSet());
// Every rank's bytes, in rank order; the lengths may differ between ranks.
// One grouped allgather of each rank's length and bytes (names "<name>.0"
// and "<name>.1").
std::vector<std::string> allgather_object(
    const std::string& bytes, const std::string& name = "allgather_object",
    const ProcessSet& process_set = ProcessSet());
std::vector<std::vector<char>> allgather_object(
    const std::vector<char>& bytes,
    const std::string& name = "allgather_object",
    const ProcessSet& process_set = ProcessSet());
// The same for an IValue (a tensor, a dict of tensors, a string, a list ...):
// serialized with torch::pickle_save, restored with torch::pickle_load
// (tensors come back on the CPU).
::c10::IValue broadcast_object(const ::c10::IValue& value, int root_rank,
                               const std::string& name = "broadcast_object",
                               const ProcessSet& process_set = ProcessSet());
std::vector<::c10::IValue> allgather_object(
    const ::c10::IValue& value, const std::string& name = "allgather_object",
    const ProcessSet& process_set = ProcessSet());
// A string literal is bytes, not an IValue.
inline std::string broadcast_object(
    const char* bytes, int root_rank,
    const std::string& name = "broadcast_object",
    const ProcessSet& process_set = ProcessSet()) {
  return broadcast_object(std::string(bytes), root_rank, name, process_set);
}
inline std::vector<std::string> allgather_object(
    const char* bytes, const std::string& name = "allgather_object",
    const ProcessSet& process_set = ProcessSet()) {
  return allgather_object(std::string(bytes), name, process_set);
}

// ---------------------------------------------------------------------------
// Model and optimizer state.

// Copies root_rank's parameters and buffers (BatchNorm running statistics and
// num_batches_tracked included) into every rank's module, in place. All
// tensors are submitted before any is waited on, so the runtime fuses them.
// Names: "bcast.param.<name>" and "bcast.buffer.<name>".
// REQUIRES: the modules have the same structure on every rank.
void broadcast_parameters(const ::torch::nn::Module& module, int root_rank,
                          const ProcessSet& process_set = ProcessSet());
// As above for any named tensors (e.g. a state dict), named "bcast.<name>".
void broadcast_parameters(
    const ::torch::OrderedDict<std::string, ::torch::Tensor>& named_tensors,
    int root_rank, const ProcessSet& process_set = ProcessSet());

// Makes every rank's optimizer state equal to root_rank's: the options of the
// defaults and of every parameter group (learning rate, momentum, betas, eps,
// weight decay, flags, ...) and every parameter's state (step counts and
// state tensors). Where a rank lacks state that root_rank has, it is created;
// where root_rank has none (e.g. before its first step), it is removed; so
// the optimizers are identical afterwards, also before the first step. A
// DistributedOptimizer is handled through the optimizer it wraps. Typically
// called after broadcast_parameters() on the model.
//
// Any optimizer works whose options and state serialize themselves (the
// LibTorch convention that torch::save relies on): LBFGS, optimizers of your
// own such as the CheXNet example's Adadelta. Root_rank writes the optimizer
// (optimizer.save(), the defaults' and every group's options) into a
// torch::serialize archive, broadcast_object() takes it to the other ranks,
// which load it; state tensors land on the device of their parameter on each
// rank, in root_rank's dtype. SGD, Adam, AdamW, Adagrad and RMSprop
// themselves (not subclasses) take a faster path: their options travel as
// one float64 tensor and their state tensors are broadcast in place, fused,
// on their own device (CUDA tensors through NCCL), with no serialization.
//
// Every rank first learns every rank's optimizer type and parameter-group
// sizes (one allgather_object, "optstate.signature"); if any differs from
// root_rank's, every rank throws, naming the ranks and both. A rank that
// cannot load the archive makes every rank throw too.
// REQUIRES: same optimizer type and parameter-group sizes on every rank.
void broadcast_optimizer_state(::torch::optim::Optimizer& optimizer,
                               int root_rank,
                               const ProcessSet& process_set = ProcessSet());

// ---------------------------------------------------------------------------
// DistributedOptimizer.

enum class Compression {
  kNone,  // allreduce gradients in their own dtype
  kFp16,  // allreduce a float16 copy (half the bytes; ~3 significant digits)
  kBf16,  // allreduce a bfloat16 copy (float32's range; ~2 digits)
};

// When the gradient allreduces start (DistributedOptimizerOptions::overlap).
enum class Overlap {
  // Measure both and keep the faster: after 3 warm-up steps, 10 steps
  // alternate between on and off; the ranks average the median step time
  // of each (one allreduce in the optimizer's process set) and all keep
  // "off" where it was at least 2 % faster, "on" otherwise. Which one wins
  // depends on the host: overlapping needs a core for kolo's thread while
  // backward computes.
  kAuto,
  // From each gradient's hook, while backward computes the rest.
  kOn,
  // All at once in synchronize(), after backward (no thread competes with
  // backward for the cores).
  kOff,
};

struct DistributedOptimizerOptions {
  // Backward passes whose gradients accumulate locally (summed, as autograd
  // does) before one allreduce and step(). Divide each pass's loss by this
  // number to average them instead. Default 1.
  int backward_passes_per_step = 1;
  // kAverage (default), kSum or kAdasum over ranks. kAdasum combines the
  // gradients by adaptive summation (kolo/types.h) instead of averaging
  // them: set the learning rate as for one rank, not scaled by the number of
  // ranks. It needs float gradients and a power-of-two number of ranks
  // (throws c10::ValueError at construction otherwise). Unlike Horovod's
  // PyTorch DistributedOptimizer, which applies Adasum to the change the
  // wrapped optimizer makes to each parameter, kolo applies it to the
  // gradients before the wrapped optimizer steps: the same update for plain
  // SGD (Adasum commutes with scaling all inputs by -lr), different for
  // optimizers with state (momentum, Adam).
  ReduceOp op = ReduceOp::kAverage;
  // Average only: each gradient is multiplied by 1/f before the sum and the
  // sum by f/size after it (Horovod's split of the average), which keeps
  // float16 sums of many ranks from overflowing. Default 1: no split.
  double gradient_predivide_factor = 1.0;
  // Wire format of the gradients; the optimizer always sees its own dtype.
  Compression compression = Compression::kNone;
  // When the allreduces start; see Overlap. Default: measured.
  Overlap overlap = Overlap::kAuto;
  // Defer each parameter's update to the next forward pass (see "Updates in
  // the forward pass" below): step() returns while the gradient allreduces
  // are still running, and ready() applies a block's update just before the
  // block computes. Needs overlap on (kAuto counts as kOn here). Default
  // false: step() waits for every allreduce and updates every parameter.
  bool update_in_forward = false;
  // The ranks that reduce gradients together (kolo/process_set.h): the
  // global set by default. A process set trains a replica of the model
  // among its members only (e.g. one data-parallel group of a job that
  // also runs model-parallel or evaluation groups); this rank must be a
  // member.
  ProcessSet process_set;
};

// Counters of a DistributedOptimizer, for instrumentation and tests.
struct DistributedOptimizerStats {
  // Gradient allreduces enqueued by the gradient hooks, during backward.
  int64_t allreduces_from_hooks = 0;
  // Gradient allreduces enqueued by synchronize() because the parameter's
  // hook had not fired (unused parameter, or fewer backward passes than
  // backward_passes_per_step).
  int64_t allreduces_from_synchronize = 0;
  // steady_clock time in ns (the clock of kolo::RuntimeStats) when the first
  // gradient allreduce of the most recent step was enqueued; 0 before any.
  int64_t first_enqueue_ns = 0;
  // Completed calls of step().
  int64_t steps = 0;
  // Whether the hooks start allreduces in the coming backward passes.
  bool overlapping = true;
  // update_in_forward: parameters updated by ready() (in the forward pass)
  // and by finish_updates() or the next step() (not reached by ready()).
  int64_t updates_in_forward = 0;
  int64_t updates_at_finish = 0;
  // Overlap::kAuto: the step after which the choice was made (-1 while
  // measuring, and for kOn/kOff), and the median step time (s, averaged
  // over ranks) measured with overlap on and off.
  int64_t overlap_decided_at_step = -1;
  double overlap_on_step_s = 0;
  double overlap_off_step_s = 0;
};

// Wraps a torch::optim optimizer so that gradients are reduced over all ranks
// before every step. It is itself a torch::optim::Optimizer: pass it wherever
// one is expected (a train() taking torch::optim::Optimizer&, LibTorch's LR
// schedulers such as torch::optim::StepLR, torch::save and torch::load).
//
// How. A post hook on each parameter's gradient accumulator (the autograd
// node that writes param.grad()) enqueues that parameter's allreduce, named
// "grad.<parameter name>", as soon as backward has produced its gradient on
// the last of backward_passes_per_step passes. The hook never blocks, so the
// allreduces run (fused by the runtime) while backward is still computing the
// gradients of earlier layers. step() waits for all of them (synchronize())
// and then steps the wrapped optimizer.
//
// Unused parameters. A parameter whose hook has not fired when synchronize()
// runs (its gradient was not computed on this rank in this step) still takes
// part, so that no rank waits for a name another rank never submits: an
// undefined gradient is set to zeros first, and its allreduce is enqueued
// then, under the same name on every rank. Such a parameter therefore ends up
// with a defined (averaged, possibly zero) gradient, as in Horovod.
//
// Usage per step: zero_grad(); loss.backward() (backward_passes_per_step
// times); step(). To modify the reduced gradients (e.g. clipping), call
// synchronize(), modify, then step(): step() does not reduce them again.
// step(closure) evaluates the closure (forward and backward) first, then
// reduces and steps. LBFGS (which re-evaluates the loss inside step()) is
// rejected.
//
// Two views of one optimizer. LibTorch's Optimizer keeps its parameter
// groups, options and state in the base class, reached through non-virtual
// accessors, so this class holds a copy of the wrapped optimizer's (the same
// parameter and state tensors; copied options and state entries) and keeps
// the two in step: whatever was changed through one view since the previous
// step() (a group's options, e.g. the learning rate a scheduler sets; groups
// added with add_param_group(); state entries replaced, added or erased) is
// copied to the other at the next step(), save(), load() or
// broadcast_optimizer_state(), this view winning where both changed. So code
// that sets the learning rate on the wrapped optimizer keeps working, and so
// does code that uses this one. state() is refreshed from the wrapped
// optimizer after every step() and load(). Groups added later must hold
// parameters from named_parameters. save() writes the wrapped optimizer's
// format: a file saved from either loads into the other.
//
// Construct it after the model has been moved to its device and dtype (the
// hooks belong to the parameter tensors). It must not be destroyed while a
// backward pass is running. CUDA gradients are handed to the runtime as
// device memory from the hook, with the stream the autograd engine runs the
// parameter's backward on (current on the hook's thread): the NCCL backend
// orders its allreduce after the kernels that produced the gradient, and a
// compressed copy is made on that stream too. Mixed precision: with a loss
// scaler, scale the loss, call synchronize(), check and unscale the reduced
// gradients, then step() (or skip the step; see chexnet_train's --amp fp16).
//
// Updates in the forward pass (options.update_in_forward). Where the network
// is slower than backward, the gradients of the first layers, computed last,
// are still in flight when backward ends, and the next forward pass needs
// exactly those first. With update_in_forward, step() enqueues what is left
// and returns without waiting; each gradient allreduce carries a priority
// (the earlier its parameter in named_parameters, i.e. in the forward pass,
// the higher), so rank 0 sends a backlog first-layer-first
// (AllreduceOptions::priority); and ready(module) — called by the model's
// forward before each block — waits for that block's gradients and applies
// the wrapped optimizer's update to its parameters only. Communication then
// runs on into the next forward pass, and the result is exactly that of
// step(): the same update of every parameter, applied before its first use.
//   - Which parameters: ready() takes a module (its parameters, recursively)
//     or a list; parameters step() did not defer are ignored. Parameters in
//     named_parameters must be in forward order for the priorities to help.
//   - Safety: a parameter whose update is still deferred when backward
//     reaches its gradient was used by forward with its old value (ready()
//     was not called for it): backward throws c10::Error naming it instead of
//     training on stale weights. Updates never reached by ready() (an unused
//     branch) are applied by the next step(), finish_updates(), save(),
//     load(), synchronize() and broadcast_optimizer_state(). Call
//     finish_updates() before reading the parameters outside a training
//     forward pass (evaluation, checkpoints written by hand).
//   - zero_grad() zeroes a deferred parameter's gradient once its update has
//     been applied. state() of this view is refreshed when the last deferred
//     update has been applied. A step() after an explicit synchronize()
//     updates every parameter at once, as without the option.
//   - The update of a subset is the wrapped optimizer's step() with the
//     other parameters' gradients hidden (undefined) for its duration, so the
//     optimizer must update each parameter from its own gradient and state
//     only, as LibTorch's SGD, Adam, AdamW, Adagrad and RMSprop do.
class DistributedOptimizer : public ::torch::optim::Optimizer {
 public:
  // named_parameters: the model's parameters with stable names, identical on
  // every rank (e.g. module->named_parameters()). Parameters that do not
  // require grad are skipped.
  // REQUIRES: every parameter of the optimizer appears in named_parameters.
  DistributedOptimizer(std::shared_ptr<::torch::optim::Optimizer> optimizer,
                       const ::torch::OrderedDict<std::string, ::torch::Tensor>&
                           named_parameters,
                       DistributedOptimizerOptions options = {});
  ~DistributedOptimizer() override;
  DistributedOptimizer(DistributedOptimizer&&) noexcept;
  DistributedOptimizer& operator=(DistributedOptimizer&&) noexcept;

  // Reduces any gradients not yet reduced in this step (see above), waits for
  // every gradient allreduce and writes the results into param.grad().
  // Throws c10::Error with the runtime's message if one failed (the step's
  // state is reset either way). Does nothing when called again before the
  // next backward pass.
  void synchronize();
  // The closure (if any; its loss is returned), synchronize(), then the
  // wrapped optimizer's step().
  ::torch::Tensor step(LossClosure closure = nullptr) override;
  // update_in_forward: applies the deferred updates of `module`'s parameters
  // (recursively) or of `parameters`, waiting for their gradient
  // allreduces. Does nothing for parameters without a deferred update (and
  // without update_in_forward). Throws c10::Error if an allreduce failed.
  void ready(const ::torch::nn::Module& module);
  void ready(const std::vector<::torch::Tensor>& parameters);
  // Applies every deferred update now.
  void finish_updates();
  // The wrapped optimizer's zero_grad(). Throws if gradient allreduces are
  // pending (backward ran but step()/synchronize() did not). Called through
  // a torch::optim::Optimizer&, LibTorch's own zero_grad() runs (it is not
  // virtual): the same gradients, without that check.
#if TORCH_VERSION_MAJOR >= 2
  void zero_grad(bool set_to_none = true);
#else
  void zero_grad();
#endif
  // The wrapped optimizer's checkpoint format (see above).
  void save(::torch::serialize::OutputArchive& archive) const override;
  void load(::torch::serialize::InputArchive& archive) override;

  // The wrapped optimizer (see "Two views" above).
  ::torch::optim::Optimizer& optimizer();
  const DistributedOptimizerOptions& options() const;
  DistributedOptimizerStats stats() const;

 private:
  class Impl;
  friend void broadcast_optimizer_state(::torch::optim::Optimizer& optimizer,
                                        int root_rank,
                                        const ProcessSet& process_set);

  // Copies what changed through this view to the wrapped optimizer.
  void PushChanges() const;
  // Copies option changes and added groups of the wrapped optimizer to this
  // view and refreshes state().
  void PullChanges();

  std::unique_ptr<Impl> impl_;
};

// ---------------------------------------------------------------------------
// Learning-rate warm-up (Goyal et al. 2017, "Accurate, Large Minibatch SGD").
//
// Training on `size` ranks multiplies the global batch by `size`, so the
// learning rate is scaled by `size` too, but reached gradually: at epoch e,
// batch b (both from 0) of steps_per_epoch batches,
//
//   t = e + b / steps_per_epoch
//   lr = base_lr * (1 + (size - 1) * min(t, warmup_epochs) / warmup_epochs)
//
// i.e. base_lr at t = 0, rising linearly (per batch) to base_lr * size at
// t = warmup_epochs. base_lr is each parameter group's lr at construction.
// Once warm-up is over, adjust() sets base_lr * size once and then leaves the
// learning rate alone, so a decay schedule can take over.
class LearningRateWarmup {
 public:
  // REQUIRES: warmup_epochs > 0, steps_per_epoch > 0, size >= 1 (usually
  // kolo::torch::size()).
  LearningRateWarmup(::torch::optim::Optimizer& optimizer, double warmup_epochs,
                     int64_t steps_per_epoch, int size);

  // The factor above for (epoch, batch).
  double multiplier(int64_t epoch, int64_t batch) const;
  // The factor above for t = `progress` epochs, for loops whose steps per
  // epoch vary (e.g. elastic training, where the world size may change
  // mid-epoch: t = epoch + samples consumed / samples in the epoch).
  double multiplier_at(double progress) const;
  // Sets every group's lr for (epoch, batch), before that batch's step.
  // Returns false (and changes nothing) after warm-up has been finished.
  bool adjust(int64_t epoch, int64_t batch);

 private:
  // Epochs completed at the start of (epoch, batch): t in the formula.
  double Progress(int64_t epoch, int64_t batch) const;

  ::torch::optim::Optimizer& optimizer_;
  double warmup_epochs_;
  int64_t steps_per_epoch_;
  int size_;
  std::vector<double> base_lrs_;
  bool finished_ = false;
};

// ---------------------------------------------------------------------------
// DistributedSampler: this rank's share of a data set's indices, for
// torch::data::make_data_loader or for hand-written loops.
//
// Each epoch, the indices 0..dataset_size-1 are (if shuffle) permuted with a
// Fisher-Yates shuffle driven by std::mt19937_64 seeded with seed + epoch,
// using rejection sampling for the bounded draws; mt19937_64's output is
// fixed by the C++ standard and nothing else is left to the library, so the
// order is the same on every rank, compiler, standard library and torch
// version. The list is then made a multiple of num_replicas: padded by
// repeating it from its start (drop_last = false; every sample is seen at
// least once) or truncated (drop_last = true; no sample is seen twice).
// Rank r takes positions r, r + num_replicas, r + 2 * num_replicas, ... so
// every rank gets the same number of samples and together they cover the
// (padded or truncated) list exactly once.
class DistributedSampler
    : public ::torch::data::samplers::Sampler<std::vector<size_t>> {
 public:
  // REQUIRES: num_replicas >= 1, 0 <= rank < num_replicas.
  DistributedSampler(size_t dataset_size, int num_replicas, int rank,
                     bool shuffle = true, uint64_t seed = 0,
                     bool drop_last = false);

  // Selects the epoch's order and rewinds to its start (call before each
  // epoch; every rank must use the same epoch).
  void set_epoch(int64_t epoch);
  // Resumes the current epoch after `batch` batches of `batch_size` samples
  // had been consumed (e.g. from a checkpoint written mid-epoch). Lasts until
  // the next set_epoch(); reset() rewinds to this position.
  void set_start_batch(int64_t batch, int64_t batch_size);
  int64_t epoch() const { return epoch_; }

  // This rank's indices for the current epoch, from the start position.
  std::vector<size_t> indices() const;
  // Samples per rank per epoch (from the start of the epoch).
  size_t num_samples() const { return num_samples_; }
  // num_samples() * num_replicas.
  size_t total_size() const { return num_samples_ * num_replicas_; }

  // torch::data::samplers::Sampler. reset() rewinds to the start position
  // (a new_size changes dataset_size); next() returns up to batch_size of
  // this rank's indices, or nullopt at the end of the epoch.
  void reset(c10::optional<size_t> new_size = c10::nullopt) override;
  c10::optional<std::vector<size_t>> next(size_t batch_size) override;
  // Saves and restores the epoch, the position and the configuration.
  void save(::torch::serialize::OutputArchive& archive) const override;
  void load(::torch::serialize::InputArchive& archive) override;

 private:
  void Recompute();

  size_t dataset_size_;
  int num_replicas_;
  int rank_;
  bool shuffle_;
  uint64_t seed_;
  bool drop_last_;
  int64_t epoch_ = 0;
  size_t num_samples_ = 0;
  size_t start_ = 0;             // first position served after reset()
  size_t position_ = 0;          // next position next() serves
  std::vector<size_t> indices_;  // this rank's indices for epoch_
};

// ---------------------------------------------------------------------------
// SyncBatchNorm: batch normalisation over the global batch of all ranks.
//
// In training mode, the mean and variance of each channel are those of the
// concatenation of every rank's input (ranks may hold different numbers of
// samples, zero included), so the output, the gradients and the running
// statistics are those of torch::nn::BatchNorm{1,2,3}d on one process that
// sees the whole global batch:
//   forward: each rank reduces its input to per-channel sums (count, sum,
//     sum of squares, in float64); one allreduce (sum), named
//     "<name>.stats", adds them up; mean and biased variance normalise the
//     input; running_mean and running_var (unbiased, with the global count)
//     and num_batches_tracked are updated exactly as BatchNorm does it,
//     including momentum = nullopt (cumulative average).
//   backward: one allreduce, "<name>.grad", adds up every rank's per-channel
//     sums of grad_output and grad_output * (input - mean), which give the
//     input's gradient. Only needed when the input requires grad.
// weight.grad and bias.grad are this rank's contribution: their sum over
// ranks is the gradient of the sum of every rank's loss, so averaging them
// (DistributedOptimizer's default) gives the gradient of the average loss,
// like every other parameter.
//
// In evaluation mode the layer normalises with its running statistics (or,
// with track_running_stats = false, with this rank's own batch statistics,
// as BatchNorm does), without any communication.
//
// Every rank must run forward and backward through the layer in training
// mode the same number of times and in the same order, like any collective.
// A global batch with a single value per channel is refused, on every rank,
// with c10::ValueError (BatchNorm refuses it on one process).
//
// Input: (N, C, ...) with C = options.num_features(): (N, C) and (N, C, L)
// as BatchNorm1d, (N, C, H, W) as BatchNorm2d, (N, C, D, H, W) as
// BatchNorm3d. float16 and bfloat16 inputs are reduced in float32.
//
// Names. The layer's collectives are named after `name`, which must be the
// same on every rank and differ between layers. By default it is
// "syncbn.#<k>" for the k-th SyncBatchNorm constructed in this process, which
// every rank agrees on when all build their models in the same order;
// convert_sync_batchnorm names each layer after its place in the model
// ("syncbn.features.norm0").
class SyncBatchNormImpl : public ::torch::nn::Cloneable<SyncBatchNormImpl> {
 public:
  // options: as for torch::nn::BatchNorm2d (num_features, eps = 1e-5,
  // momentum = 0.1, affine = true, track_running_stats = true).
  explicit SyncBatchNormImpl(const ::torch::nn::BatchNormOptions& options,
                             std::string name = "");
  // A layer that shares `other`'s options, parameters and buffers (the same
  // tensors, so an optimizer built on `other`'s parameters keeps working).
  // An empty name is replaced by the default one.
  SyncBatchNormImpl(const ::torch::nn::BatchNorm1dImpl& other,
                    std::string name);
  SyncBatchNormImpl(const ::torch::nn::BatchNorm2dImpl& other,
                    std::string name);
  SyncBatchNormImpl(const ::torch::nn::BatchNorm3dImpl& other,
                    std::string name);

  ::torch::Tensor forward(const ::torch::Tensor& input);

  // Allocates fresh parameters (weight 1, bias 0) and buffers (running mean
  // 0, running variance 1, num_batches_tracked 0).
  void reset() override;
  void reset_running_stats();
  void reset_parameters();
  void pretty_print(std::ostream& stream) const override;

  // The prefix of this layer's collective names.
  const std::string& collective_name() const { return name_; }

  ::torch::nn::BatchNormOptions options;
  // As in torch::nn::BatchNorm2d: weight and bias are undefined unless
  // options.affine(); the buffers are undefined unless
  // options.track_running_stats().
  ::torch::Tensor weight;
  ::torch::Tensor bias;
  ::torch::Tensor running_mean;
  ::torch::Tensor running_var;
  ::torch::Tensor num_batches_tracked;

 private:
  template <typename BatchNorm>
  void Adopt(const BatchNorm& other);
  // Registers the given tensors as this layer's parameters and buffers.
  void Register(::torch::Tensor weight, ::torch::Tensor bias,
                ::torch::Tensor running_mean, ::torch::Tensor running_var,
                ::torch::Tensor num_batches_tracked);

  std::string name_;
};

// The module holder, as TORCH_MODULE(SyncBatchNorm) would declare it (the
// macro's unqualified torch:: would name this namespace here).
class SyncBatchNorm : public ::torch::nn::ModuleHolder<SyncBatchNormImpl> {
 public:
  using ::torch::nn::ModuleHolder<SyncBatchNormImpl>::ModuleHolder;
  using Impl = SyncBatchNormImpl;
};

// Replaces every torch::nn::BatchNorm1d, BatchNorm2d and BatchNorm3d inside
// `module` (recursively) by a SyncBatchNorm that shares its options,
// parameters, buffers (running statistics, num_batches_tracked) and
// training mode, named "syncbn.<path>" after its place in the model. The
// parameters and buffers keep their names and tensors, so state dicts,
// checkpoints, optimizers and broadcast_parameters are unaffected. Returns
// the number of layers replaced. Call it on every rank, before the first
// forward pass; SyncBatchNorm layers already present are left alone.
//
// LibTorch's forward() calls submodules through C++ members, so a layer can
// only be replaced where the model reaches it through its module tree:
// registered children of torch::nn::Sequential, ModuleList and ModuleDict
// (whose entries are swapped too), and of any module that keeps no other
// reference to it. A BatchNorm that something else still holds (typically a
// member such as `torch::nn::BatchNorm2d norm_` that forward() calls, which
// LibTorch's replace_module cannot reach) would keep running unsynchronised,
// so then nothing is changed and c10::ValueError names that layer.
// REQUIRES: `module` is not itself a BatchNorm (construct a SyncBatchNorm).
int64_t convert_sync_batchnorm(::torch::nn::Module& module);

}  // namespace torch
}  // namespace kolo

#include "kolo/elastic.h"

#endif  // KOLO_TORCH_H_
