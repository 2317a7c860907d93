"""Horovod's PyTorch collectives on kolo's runtime.

Every asynchronous function returns an integer handle for poll() and
synchronize(), as Horovod's do. Operations are keyed by name on every rank;
without a name, each kind of operation numbers its unnamed calls
("allreduce.noname.<n>"), so ranks must make their unnamed calls of a kind in
the same order. Errors: bad arguments raise ValueError; a failure of the
operation (a cross-rank mismatch, a dead peer, shutdown) raises
HorovodInternalError, a RuntimeError.
"""

import atexit
import itertools
import threading
import warnings

import torch

from kolo import _kolo_torch as _lib
from kolo.torch.compression import Compression

# Reduction operations (kolo's C API values).
Sum = _lib.SUM
Average = _lib.AVERAGE
Min = _lib.MIN
Max = _lib.MAX
Product = _lib.PRODUCT
# Adaptive summation (Horovod's Adasum): float tensors, a power-of-two number
# of ranks, allreduce only; other uses raise ValueError.
Adasum = _lib.ADASUM


class HorovodInternalError(RuntimeError):
    """A collective failed: a cross-rank mismatch, a stall, a dead peer or
    shutdown. The message is kolo's."""


def _op(op, average):
    """Horovod's rule for the deprecated `average` argument."""
    if op is not None:
        if average is not None:
            raise ValueError("The op parameter supersedes average. "
                             "Please provide only one of them.")
        return op
    if average is not None:
        warnings.warn("Parameter `average` has been replaced with `op` and "
                      "will be removed", DeprecationWarning)
        return Average if average else Sum
    return Average


def _submit(function, *args):
    try:
        return function(*args)
    except RuntimeError as error:
        raise HorovodInternalError(str(error)) from error


# ---------------------------------------------------------------------------
# Process set.

def _require_init():
    if not _lib.is_initialized():
        raise ValueError("Horovod has not been initialized; use hvd.init().")


def init(comm=None, process_sets=None):
    """Starts kolo on this process (collective: every rank calls it). MPI is
    initialised by kolo unless the program already did. Calling it again is a
    no-op."""
    if comm is not None or process_sets is not None:
        raise NotImplementedError(
            "kolo.torch.init() takes no communicator or process sets yet: "
            "kolo runs on MPI_COMM_WORLD")
    _lib.init()
    # Before the interpreter tears down, so that no handle is left waiting
    # for an operation nobody completes.
    atexit.register(shutdown)


def shutdown():
    """Stops kolo on every rank; pending operations fail. Calling it again
    is a no-op."""
    _lib.shutdown()
    with _lock:
        _handles.clear()


def is_initialized():
    return _lib.is_initialized()


def _topology(function):
    def query():
        _require_init()
        return function()
    query.__name__ = function.__name__
    query.__doc__ = f"kolo's {function.__name__}; ValueError before init()."
    return query


rank = _topology(_lib.rank)
size = _topology(_lib.size)
local_rank = _topology(_lib.local_rank)
local_size = _topology(_lib.local_size)
cross_rank = _topology(_lib.cross_rank)
cross_size = _topology(_lib.cross_size)


def mpi_threads_supported():
    """kolo always runs MPI with MPI_THREAD_MULTIPLE (init fails without)."""
    _require_init()
    return True


def mpi_enabled():
    return True


def mpi_built():
    return True


def gloo_enabled():
    return False


def gloo_built():
    return False


def nccl_built():
    """Whether this kolo takes CUDA tensors (built with NCCL)."""
    return _lib.nccl_built()


def cuda_built():
    return _lib.nccl_built()


def rocm_built():
    return False


def ddl_built():
    return False


def ccl_built():
    return False


def start_timeline(file_path, mark_cycles=False):
    """Writes a Chrome-trace/Perfetto timeline to file_path (rank 0)."""
    _submit(_lib.start_timeline, file_path, mark_cycles)


def stop_timeline():
    _submit(_lib.stop_timeline)


# ---------------------------------------------------------------------------
# Handles.

# handle -> (kolo Handle, function(results, kolo Handle) -> Python result).
_handles = {}
_lock = threading.Lock()
_next_handle = itertools.count(1)
_unnamed = {}


def _name(kind, name):
    if name is None:
        with _lock:
            number = _unnamed.get(kind, 0)
            _unnamed[kind] = number + 1
        return f"{kind}.noname.{number}"
    return f"{kind}.{name}"


def _register(native, finish):
    handle = next(_next_handle)
    with _lock:
        _handles[handle] = (native, finish)
    return handle


def poll(handle):
    """True once the operation of `handle` has completed; never blocks."""
    with _lock:
        entry = _handles.get(handle)
    if entry is None:
        raise ValueError(f"Handle {handle} was not created or has been "
                         "cleared.")
    return entry[0].poll()


def synchronize(handle):
    """Waits for the operation of `handle` and returns its result (None for
    an unknown or already synchronized handle, as Horovod)."""
    with _lock:
        entry = _handles.pop(handle, None)
    if entry is None:
        return None
    native, finish = entry
    try:
        results = native.wait()
    except RuntimeError as error:
        raise HorovodInternalError(str(error)) from error
    return finish(results, native)


def _first(results, native):
    return results[0]


def _as_tuple(results, native):
    return tuple(results)


# ---------------------------------------------------------------------------
# Allreduce.

def _allreduce_async(tensor, name, op, prescale_factor, postscale_factor,
                     in_place):
    native = _submit(_lib.allreduce_async, tensor, _name("allreduce", name),
                     op, prescale_factor, postscale_factor, in_place)
    return _register(native, _first)


def allreduce_async(tensor, average=None, name=None, op=None,
                    prescale_factor=1.0, postscale_factor=1.0):
    """Starts reducing `tensor` over all ranks into a new tensor (op Average
    by default: the sum divided by size; postscale_factor * reduce(
    prescale_factor * tensor)). Returns a handle."""
    op = _op(op, average)
    return _allreduce_async(tensor, name, op, prescale_factor,
                            postscale_factor, False)


def allreduce_async_(tensor, average=None, name=None, op=None,
                     prescale_factor=1.0, postscale_factor=1.0):
    """allreduce_async() in place: `tensor` receives the result."""
    op = _op(op, average)
    return _allreduce_async(tensor, name, op, prescale_factor,
                            postscale_factor, True)


def _reduction_backward(grad_output, op, prescale_factor, postscale_factor):
    if op not in (Sum, Average):
        raise NotImplementedError(
            "kolo: no gradient for an allreduce with op Min, Max or Product")
    return allreduce(grad_output, op=op, prescale_factor=prescale_factor,
                     postscale_factor=postscale_factor)


class _Allreduce(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor, name, op, prescale_factor, postscale_factor):
        ctx.op = op
        ctx.scale = (prescale_factor, postscale_factor)
        return synchronize(_allreduce_async(tensor, name, op, prescale_factor,
                                            postscale_factor, False))

    @staticmethod
    def backward(ctx, grad_output):
        # The gradient of the sum over ranks of each rank's loss.
        return (_reduction_backward(grad_output, ctx.op, *ctx.scale),
                None, None, None, None)


def allreduce(tensor, average=None, name=None, compression=Compression.none,
              op=None, prescale_factor=1.0, postscale_factor=1.0):
    """Reduces `tensor` over all ranks; returns a new tensor. Differentiable
    (op Sum or Average): the gradient is the same allreduce of the output's
    gradient. `compression` sets the wire format."""
    op = _op(op, average)
    compressed, ctx = compression.compress(tensor)
    reduced = _Allreduce.apply(compressed, name, op, prescale_factor,
                               postscale_factor)
    return compression.decompress(reduced, ctx)


def allreduce_(tensor, average=None, name=None, op=None, prescale_factor=1.0,
               postscale_factor=1.0):
    """allreduce() in place; returns `tensor`."""
    return synchronize(allreduce_async_(tensor, average, name, op,
                                        prescale_factor, postscale_factor))


def _grouped_allreduce_async(tensors, name, op, prescale_factor,
                             postscale_factor, in_place):
    native = _submit(_lib.grouped_allreduce_async, list(tensors),
                     _name("grouped_allreduce", name), op, prescale_factor,
                     postscale_factor, in_place)
    return _register(native, _as_tuple)


def grouped_allreduce_async(tensors, average=None, name=None, op=None,
                            prescale_factor=1.0, postscale_factor=1.0):
    """Starts an all-or-nothing allreduce of a list of tensors (fused when
    they fit). synchronize() returns a tuple of new tensors."""
    op = _op(op, average)
    return _grouped_allreduce_async(tensors, name, op, prescale_factor,
                                    postscale_factor, False)


def grouped_allreduce_async_(tensors, average=None, name=None, op=None,
                             prescale_factor=1.0, postscale_factor=1.0):
    """grouped_allreduce_async() in place."""
    op = _op(op, average)
    return _grouped_allreduce_async(tensors, name, op, prescale_factor,
                                    postscale_factor, True)


class _GroupedAllreduce(torch.autograd.Function):
    @staticmethod
    def forward(ctx, name, op, prescale_factor, postscale_factor, *tensors):
        ctx.op = op
        ctx.scale = (prescale_factor, postscale_factor)
        return synchronize(_grouped_allreduce_async(
            tensors, name, op, prescale_factor, postscale_factor, False))

    @staticmethod
    def backward(ctx, *grad_outputs):
        if ctx.op not in (Sum, Average):
            raise NotImplementedError(
                "kolo: no gradient for an allreduce with op Min, Max or "
                "Product")
        grads = grouped_allreduce(list(grad_outputs), op=ctx.op,
                                  prescale_factor=ctx.scale[0],
                                  postscale_factor=ctx.scale[1])
        return (None, None, None, None, *grads)


def grouped_allreduce(tensors, average=None, name=None,
                      compression=Compression.none, op=None,
                      prescale_factor=1.0, postscale_factor=1.0):
    """Reduces a list of tensors, all or nothing; returns a list of new
    tensors. Differentiable as allreduce()."""
    op = _op(op, average)
    compressed, ctxs = zip(*[compression.compress(t) for t in tensors])
    reduced = _GroupedAllreduce.apply(name, op, prescale_factor,
                                      postscale_factor, *compressed)
    return [compression.decompress(t, c) for t, c in zip(reduced, ctxs)]


def grouped_allreduce_(tensors, average=None, name=None, op=None,
                       prescale_factor=1.0, postscale_factor=1.0):
    """grouped_allreduce() in place; returns the tensors as a tuple."""
    return synchronize(grouped_allreduce_async_(
        tensors, average, name, op, prescale_factor, postscale_factor))


def sparse_allreduce_async(tensor, name, op):
    """Reduces a sparse COO tensor by allgathering its indices and values
    (op Average or Sum). Returns a function that waits and returns the
    reduced sparse tensor."""
    if op not in (Sum, Average):
        raise ValueError("sparse allreduce supports op Average and Sum")
    # Allgather concatenates along dimension 0: indices go as [nnz, ndim].
    indices = allgather_async(tensor._indices().t().contiguous(),
                              name=f"{name}.indices")
    values = allgather_async(tensor._values(), name=f"{name}.values")

    def wait():
        gathered_values = synchronize(values)
        gathered_indices = synchronize(indices)
        if op == Average:
            gathered_values = gathered_values / size()
        return torch.sparse_coo_tensor(gathered_indices.t(), gathered_values,
                                       tensor.size())
    return wait


# ---------------------------------------------------------------------------
# Allgather.

def allgather_async(tensor, name=None):
    """Starts concatenating every rank's tensor along dimension 0 (which may
    differ between ranks). Returns a handle."""
    native = _submit(_lib.allgather_async, tensor, _name("allgather", name))
    return _register(native, _first)


class _Allgather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor, name):
        ctx.rows = tensor.shape[0]
        return synchronize(allgather_async(tensor, name))

    @staticmethod
    def backward(ctx, grad_output):
        # As Horovod: the average over ranks of the output's gradient, this
        # rank's rows of it.
        reduced = allreduce(grad_output, op=Average)
        rows = allgather(torch.tensor([ctx.rows], dtype=torch.int64))
        offset = int(rows[:rank()].sum())
        return reduced.narrow(0, offset, ctx.rows), None


def allgather(tensor, name=None):
    """Concatenates every rank's tensor along dimension 0, in rank order.
    Differentiable (see _Allgather.backward)."""
    return _Allgather.apply(tensor, name)


def grouped_allgather_async(tensors, name=None):
    """Starts an all-or-nothing allgather of a list of tensors (named
    <name>.<i>; fused when they fit); synchronize() returns a list."""
    native = _submit(_lib.grouped_allgather_async, list(tensors),
                     _name("grouped_allgather", name))
    return _register(native, lambda results, native: list(results))


def grouped_allgather(tensors, name=None):
    return synchronize(grouped_allgather_async(tensors, name))


# ---------------------------------------------------------------------------
# Broadcast.

def _broadcast_async(tensor, root_rank, name, in_place):
    native = _submit(_lib.broadcast_async, tensor, root_rank,
                     _name("broadcast", name), in_place)
    return _register(native, _first)


def broadcast_async(tensor, root_rank, name=None):
    """Starts copying root_rank's tensor to every rank, into a new tensor."""
    return _broadcast_async(tensor, root_rank, name, False)


def broadcast_async_(tensor, root_rank, name=None):
    """broadcast_async() into `tensor`."""
    return _broadcast_async(tensor, root_rank, name, True)


class _Broadcast(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor, root_rank, name):
        ctx.root_rank = root_rank
        return synchronize(broadcast_async(tensor, root_rank, name))

    @staticmethod
    def backward(ctx, grad_output):
        # As Horovod: the average of the output's gradient on the root,
        # zero elsewhere.
        reduced = allreduce(grad_output, op=Average)
        if rank() != ctx.root_rank:
            reduced = torch.zeros_like(reduced)
        return reduced, None, None


def broadcast(tensor, root_rank, name=None):
    """root_rank's tensor, as a new tensor on every rank. Differentiable."""
    return _Broadcast.apply(tensor, root_rank, name)


def broadcast_(tensor, root_rank, name=None):
    """broadcast() into `tensor`; returns it."""
    return synchronize(broadcast_async_(tensor, root_rank, name))


# ---------------------------------------------------------------------------
# Alltoall.

def _splits_list(splits):
    if splits is None:
        return []
    if isinstance(splits, torch.Tensor):
        return [int(s) for s in splits.tolist()]
    return [int(s) for s in splits]


def alltoall_async(tensor, splits=None, name=None):
    """Starts sending splits[j] rows (dimension 0) of `tensor` to rank j
    (equal parts without splits). synchronize() returns (output,
    received_splits), received_splits an int32 tensor."""
    native = _submit(_lib.alltoall_async, tensor, _name("alltoall", name),
                     _splits_list(splits))

    def finish(results, native):
        received = torch.tensor(native.received_splits(), dtype=torch.int32)
        return results[0], received
    return _register(native, finish)


class _Alltoall(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor, splits, name):
        output, received = synchronize(alltoall_async(tensor, splits, name))
        ctx.received = received
        ctx.mark_non_differentiable(received)
        return output, received

    @staticmethod
    def backward(ctx, grad_output, grad_received):
        # The rows go back where they came from.
        grad, _ = synchronize(alltoall_async(grad_output, ctx.received))
        return grad, None, None


def alltoall(tensor, splits=None, name=None):
    """Sends splits[j] rows of `tensor` to rank j and returns the rows
    received, in rank order; with `splits`, also the rows received from each
    rank (an int32 tensor). Differentiable."""
    output, received = _Alltoall.apply(tensor, splits, name)
    return output if splits is None else (output, received)


# ---------------------------------------------------------------------------
# Reducescatter.

def _check_reducescatter_op(op):
    if op not in (Sum, Average):
        raise ValueError("reducescatter supports op Average and Sum")
    return op


def reducescatter_async(tensor, name=None, op=Average, prescale_factor=1.0,
                        postscale_factor=1.0):
    """Starts reducing every rank's tensor and scattering dimension 0: rank r
    gets rows [r * n / size, ...): n // size rows, the first n % size ranks
    one more."""
    _check_reducescatter_op(op)
    if prescale_factor != 1.0:
        tensor = tensor * prescale_factor
    native = _submit(_lib.reducescatter_async, tensor,
                     _name("reducescatter", name), op)
    if postscale_factor == 1.0:
        return _register(native, _first)
    return _register(native,
                     lambda results, native: results[0] * postscale_factor)


class _Reducescatter(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor, name, op, prescale_factor, postscale_factor):
        ctx.op = op
        ctx.scale = prescale_factor * postscale_factor
        return synchronize(reducescatter_async(tensor, name, op,
                                               prescale_factor,
                                               postscale_factor))

    @staticmethod
    def backward(ctx, grad_output):
        grad = allgather(grad_output) * ctx.scale
        if ctx.op == Average:
            grad = grad / size()
        return grad, None, None, None, None


def reducescatter(tensor, name=None, compression=Compression.none, op=Average,
                  prescale_factor=1.0, postscale_factor=1.0):
    """Reduces every rank's tensor and returns this rank's rows of the result
    (see reducescatter_async). Differentiable."""
    compressed, ctx = compression.compress(tensor)
    reduced = _Reducescatter.apply(compressed, name, op, prescale_factor,
                                   postscale_factor)
    return compression.decompress(reduced, ctx)


def grouped_reducescatter_async(tensors, name=None, op=Average,
                                prescale_factor=1.0, postscale_factor=1.0):
    """Starts an all-or-nothing reducescatter of a list of tensors (named
    <name>.<i>; fused when they fit); synchronize() returns a list."""
    _check_reducescatter_op(op)
    scaled = [t * prescale_factor if prescale_factor != 1.0 else t
              for t in tensors]
    native = _submit(_lib.grouped_reducescatter_async, scaled,
                     _name("grouped_reducescatter", name), op)
    return _register(native, lambda results, native: [
        r * postscale_factor if postscale_factor != 1.0 else r
        for r in results])


def grouped_reducescatter(tensors, name=None, compression=Compression.none,
                          op=Average, prescale_factor=1.0,
                          postscale_factor=1.0):
    compressed, ctxs = zip(*[compression.compress(t) for t in tensors])
    reduced = synchronize(grouped_reducescatter_async(
        compressed, name, op, prescale_factor, postscale_factor))
    return [compression.decompress(t, c) for t, c in zip(reduced, ctxs)]


# ---------------------------------------------------------------------------
# Join and barrier.

def join(device=-1):
    """This rank has run out of data: it takes part in the other ranks'
    allreduces with zeros until every rank has joined. Blocks; returns the
    rank that joined last. `device` is accepted for Horovod's signature."""
    return _submit(_lib.join)


def barrier():
    """Blocks until every rank has called barrier()."""
    _submit(_lib.barrier)
