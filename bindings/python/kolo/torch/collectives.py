"""Horovod's PyTorch collectives on kolo's runtime.

Every asynchronous function returns an integer handle for poll() and
synchronize(), as Horovod's do. Operations are keyed by name on every rank;
without a name, each kind of operation numbers its unnamed calls
("allreduce.noname.<n>"), so ranks must make their unnamed calls of a kind in
the same order. Errors: bad arguments raise ValueError; a failure of the
operation (a cross-rank mismatch, a dead peer, shutdown) raises
HorovodInternalError, a RuntimeError.

Process sets: every collective takes process_set= (global_process_set by
default) and then runs among that set's members only, which alone may call
it. Names are scoped by set ("loss" in a set and "loss" in the global set
are different operations), and unnamed calls are numbered per kind and set.
"""

import atexit
import itertools
import operator
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
# Process sets.

class ProcessSet:
    """A group of ranks that runs collectives of its own (Horovod's
    ProcessSet): model-parallel groups, separate evaluation ranks, ...

    Build it from global ranks, add it with add_process_set() (or
    init(process_sets=[...])) on every rank, then pass it as process_set= to
    collectives, DistributedOptimizer and the broadcast functions; only its
    members call those. Inside a set, ranks are ordered by global rank:
    allgather concatenates in that order, alltoall takes one split per
    member, the k-th member gets the k-th share of a reducescatter. A
    broadcast's root_rank is a global rank (a member).

    ranks: the members' global ranks, ascending. process_set_id: None until
    the set is added, and again once it is removed."""

    process_set_id = None
    ranks = None
    # Horovod's sets may come from an mpi4py communicator; kolo's from ranks.
    mpi_comm = None

    def __init__(self, ranks):
        try:
            self.ranks = sorted(operator.index(r) for r in ranks)
        except TypeError:
            raise ValueError(
                "ProcessSet takes a list (or range) of global ranks, not "
                f"{ranks!r} (kolo builds no sets from mpi4py "
                "communicators)") from None
        # The id this set had before remove_process_set(): collectives on
        # the set pass it on, and the runtime says the set was removed.
        self._removed_id = None

    def size(self):
        """The number of members; None until the set is added."""
        if self.process_set_id is None:
            return None
        _require_init()
        return _lib.process_set_size(self.process_set_id)

    def rank(self):
        """This rank's position among the members (0-based), -1 where it is
        not a member; None until the set is added. Collectives still name
        ranks by their global rank (hvd.rank())."""
        if self.process_set_id is None:
            return None
        _require_init()
        return _lib.process_set_rank(self.process_set_id)

    def included(self):
        """Whether this rank is a member."""
        return rank() in self.ranks

    def _invalidate(self):
        self.process_set_id = None
        self._removed_id = None

    def __str__(self):
        return (f"ProcessSet(process_set_id={self.process_set_id}, "
                f"ranks={self.ranks}, mpi_comm={self.mpi_comm})")

    __repr__ = __str__


# Every rank of the job; its ranks are filled in by init().
global_process_set = ProcessSet([])
global_process_set.process_set_id = 0

# The sets added since init() (removed ones included), which its next
# shutdown() ends: a later init() invalidates them.
_added_sets = []


def _set_id(process_set):
    """The runtime's id of `process_set`; ValueError unless it was added."""
    if not isinstance(process_set, ProcessSet):
        raise ValueError("process_set must be a kolo.torch.ProcessSet, not "
                         f"{type(process_set).__name__}")
    if process_set.process_set_id is not None:
        return process_set.process_set_id
    if process_set._removed_id is not None:
        return process_set._removed_id
    raise ValueError(f"{process_set} has not been added: call "
                     "hvd.add_process_set() on every rank first")


def _member_count(process_set, what):
    """The number of members of an added set this rank is in, for `what`;
    ValueError otherwise."""
    _require_init()
    set_id = _set_id(process_set)
    if _lib.process_set_rank(set_id) < 0:
        reason = ("it has been removed" if process_set._removed_id is not None
                  else f"rank {rank()} is not a member")
        raise ValueError(f"{what} on {process_set}: {reason}")
    return _lib.process_set_size(set_id)


def add_process_set(process_set):
    """Adds a process set (a ProcessSet, or a list of global ranks) and
    returns it, with its process_set_id. Collective: every rank of the job
    calls it with the same ranks, in the same order of calls. ValueError for
    a set added already, ranks that repeat, lie outside the job or match an
    existing set (all ranks: global_process_set); HorovodInternalError
    (on every rank) when the ranks differ between ranks."""
    if not isinstance(process_set, ProcessSet):
        process_set = ProcessSet(process_set)
    if process_set.process_set_id is not None:
        raise ValueError(f"{process_set} has been added already")
    _require_init()
    process_set.process_set_id = _submit(_lib.add_process_set,
                                         process_set.ranks)
    process_set._removed_id = None
    if process_set not in _added_sets:
        _added_sets.append(process_set)
    return process_set


def remove_process_set(process_set):
    """Removes an added process set and returns True; returns False, doing
    nothing, for global_process_set and a set that is not added (or was
    removed already), as Horovod. Collective over every rank of the job, as
    add_process_set(). Operations still pending in the set fail, and later
    ones raise HorovodInternalError."""
    if not isinstance(process_set, ProcessSet):
        raise ValueError("remove_process_set takes a ProcessSet, not "
                         f"{type(process_set).__name__}")
    set_id = process_set.process_set_id
    if set_id is None or set_id == 0:
        return False
    _submit(_lib.remove_process_set, set_id)
    process_set.process_set_id = None
    process_set._removed_id = set_id
    return True


def _require_init():
    if not _lib.is_initialized():
        raise ValueError("Horovod has not been initialized; use hvd.init().")


def init(comm=None, process_sets=None):
    """Starts kolo on this process (collective: every rank calls it). MPI is
    initialised by kolo unless the program already did. Calling it again
    only adds the process sets not added yet.

    process_sets: ProcessSet objects to add, in this order, as
    add_process_set() does (one holding every rank stands for
    global_process_set). None or "dynamic": none; sets can always be added
    later."""
    if comm is not None:
        raise NotImplementedError(
            "kolo.torch.init() takes no communicator: kolo runs on "
            "MPI_COMM_WORLD (use process_sets for groups of ranks)")
    if process_sets is None or process_sets == "dynamic":
        process_sets = []
    elif not isinstance(process_sets, (list, tuple)) or not all(
            isinstance(ps, ProcessSet) for ps in process_sets):
        raise ValueError("process_sets must be a list of ProcessSet objects "
                         f"or 'dynamic', not {process_sets!r}")
    if not _lib.is_initialized():
        # Sets of an earlier init() ended with its shutdown(); their ids
        # will be given out again, to other ranks maybe.
        for stale in _added_sets:
            stale._invalidate()
        _added_sets.clear()
        with _lock:
            _unnamed.clear()
    _lib.init()
    # Before the interpreter tears down, so that no handle is left waiting
    # for an operation nobody completes.
    atexit.register(shutdown)
    global_process_set.ranks = list(range(_lib.size()))
    for process_set in process_sets:
        if process_set.ranks == global_process_set.ranks:
            process_set.process_set_id = 0
        elif process_set.process_set_id is None:
            add_process_set(process_set)


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
# (kind, process set id) -> unnamed calls so far. Per set, so that a rank's
# unnamed calls in one set do not shift its numbering in another.
_unnamed = {}


def _name(kind, name, set_id):
    if name is None:
        with _lock:
            number = _unnamed.get((kind, set_id), 0)
            _unnamed[(kind, set_id)] = number + 1
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
                     in_place, process_set):
    set_id = _set_id(process_set)
    native = _submit(_lib.allreduce_async, tensor,
                     _name("allreduce", name, set_id), op, prescale_factor,
                     postscale_factor, in_place, set_id)
    return _register(native, _first)


def allreduce_async(tensor, average=None, name=None, op=None,
                    prescale_factor=1.0, postscale_factor=1.0,
                    process_set=global_process_set):
    """Starts reducing `tensor` over the ranks of process_set (all ranks by
    default) into a new tensor (op Average by default: the sum divided by
    the number of ranks; postscale_factor * reduce(prescale_factor *
    tensor)). Returns a handle."""
    op = _op(op, average)
    return _allreduce_async(tensor, name, op, prescale_factor,
                            postscale_factor, False, process_set)


def allreduce_async_(tensor, average=None, name=None, op=None,
                     prescale_factor=1.0, postscale_factor=1.0,
                     process_set=global_process_set):
    """allreduce_async() in place: `tensor` receives the result."""
    op = _op(op, average)
    return _allreduce_async(tensor, name, op, prescale_factor,
                            postscale_factor, True, process_set)


def _check_differentiable(op):
    if op not in (Sum, Average):
        raise NotImplementedError(
            "kolo: no gradient for an allreduce with op Min, Max or Product")


class _Allreduce(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor, name, op, prescale_factor, postscale_factor,
                process_set):
        ctx.op = op
        ctx.scale = (prescale_factor, postscale_factor)
        ctx.process_set = process_set
        return synchronize(_allreduce_async(tensor, name, op, prescale_factor,
                                            postscale_factor, False,
                                            process_set))

    @staticmethod
    def backward(ctx, grad_output):
        # The gradient of the sum over ranks of each rank's loss.
        _check_differentiable(ctx.op)
        grad = allreduce(grad_output, op=ctx.op,
                         prescale_factor=ctx.scale[0],
                         postscale_factor=ctx.scale[1],
                         process_set=ctx.process_set)
        return grad, None, None, None, None, None


def allreduce(tensor, average=None, name=None, compression=Compression.none,
              op=None, prescale_factor=1.0, postscale_factor=1.0,
              process_set=global_process_set):
    """Reduces `tensor` over the ranks of process_set; returns a new tensor.
    Differentiable (op Sum or Average): the gradient is the same allreduce
    of the output's gradient. `compression` sets the wire format."""
    op = _op(op, average)
    compressed, ctx = compression.compress(tensor)
    reduced = _Allreduce.apply(compressed, name, op, prescale_factor,
                               postscale_factor, process_set)
    return compression.decompress(reduced, ctx)


def allreduce_(tensor, average=None, name=None, op=None, prescale_factor=1.0,
               postscale_factor=1.0, process_set=global_process_set):
    """allreduce() in place; returns `tensor`."""
    return synchronize(allreduce_async_(tensor, average, name, op,
                                        prescale_factor, postscale_factor,
                                        process_set))


def _grouped_allreduce_async(tensors, name, op, prescale_factor,
                             postscale_factor, in_place, process_set):
    set_id = _set_id(process_set)
    native = _submit(_lib.grouped_allreduce_async, list(tensors),
                     _name("grouped_allreduce", name, set_id), op,
                     prescale_factor, postscale_factor, in_place, set_id)
    return _register(native, _as_tuple)


def grouped_allreduce_async(tensors, average=None, name=None, op=None,
                            prescale_factor=1.0, postscale_factor=1.0,
                            process_set=global_process_set):
    """Starts an all-or-nothing allreduce of a list of tensors (fused when
    they fit). synchronize() returns a tuple of new tensors."""
    op = _op(op, average)
    return _grouped_allreduce_async(tensors, name, op, prescale_factor,
                                    postscale_factor, False, process_set)


def grouped_allreduce_async_(tensors, average=None, name=None, op=None,
                             prescale_factor=1.0, postscale_factor=1.0,
                             process_set=global_process_set):
    """grouped_allreduce_async() in place."""
    op = _op(op, average)
    return _grouped_allreduce_async(tensors, name, op, prescale_factor,
                                    postscale_factor, True, process_set)


class _GroupedAllreduce(torch.autograd.Function):
    @staticmethod
    def forward(ctx, name, op, prescale_factor, postscale_factor, process_set,
                *tensors):
        ctx.op = op
        ctx.scale = (prescale_factor, postscale_factor)
        ctx.process_set = process_set
        return synchronize(_grouped_allreduce_async(
            tensors, name, op, prescale_factor, postscale_factor, False,
            process_set))

    @staticmethod
    def backward(ctx, *grad_outputs):
        _check_differentiable(ctx.op)
        grads = grouped_allreduce(list(grad_outputs), op=ctx.op,
                                  prescale_factor=ctx.scale[0],
                                  postscale_factor=ctx.scale[1],
                                  process_set=ctx.process_set)
        return (None, None, None, None, None, *grads)


def grouped_allreduce(tensors, average=None, name=None,
                      compression=Compression.none, op=None,
                      prescale_factor=1.0, postscale_factor=1.0,
                      process_set=global_process_set):
    """Reduces a list of tensors, all or nothing; returns a list of new
    tensors. Differentiable as allreduce()."""
    op = _op(op, average)
    compressed, ctxs = zip(*[compression.compress(t) for t in tensors])
    reduced = _GroupedAllreduce.apply(name, op, prescale_factor,
                                      postscale_factor, process_set,
                                      *compressed)
    return [compression.decompress(t, c) for t, c in zip(reduced, ctxs)]


def grouped_allreduce_(tensors, average=None, name=None, op=None,
                       prescale_factor=1.0, postscale_factor=1.0,
                       process_set=global_process_set):
    """grouped_allreduce() in place; returns the tensors as a tuple."""
    return synchronize(grouped_allreduce_async_(
        tensors, average, name, op, prescale_factor, postscale_factor,
        process_set))


def sparse_allreduce_async(tensor, name, op, process_set=global_process_set):
    """Reduces a sparse COO tensor by allgathering its indices and values
    (op Average or Sum). Returns a function that waits and returns the
    reduced sparse tensor."""
    if op not in (Sum, Average):
        raise ValueError("sparse allreduce supports op Average and Sum")
    # Allgather concatenates along dimension 0: indices go as [nnz, ndim].
    indices = allgather_async(tensor._indices().t().contiguous(),
                              name=f"{name}.indices", process_set=process_set)
    values = allgather_async(tensor._values(), name=f"{name}.values",
                             process_set=process_set)

    def wait():
        gathered_values = synchronize(values)
        gathered_indices = synchronize(indices)
        if op == Average:
            gathered_values = gathered_values / process_set.size()
        return torch.sparse_coo_tensor(gathered_indices.t(), gathered_values,
                                       tensor.size())
    return wait


# ---------------------------------------------------------------------------
# Allgather.

def allgather_async(tensor, name=None, process_set=global_process_set):
    """Starts concatenating every member's tensor along dimension 0 (which
    may differ between ranks). Returns a handle."""
    set_id = _set_id(process_set)
    native = _submit(_lib.allgather_async, tensor,
                     _name("allgather", name, set_id), set_id)
    return _register(native, _first)


class _Allgather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor, name, process_set):
        ctx.rows = tensor.shape[0]
        ctx.process_set = process_set
        return synchronize(allgather_async(tensor, name, process_set))

    @staticmethod
    def backward(ctx, grad_output):
        # As Horovod: the average over the members of the output's gradient,
        # this rank's rows of it.
        reduced = allreduce(grad_output, op=Average,
                            process_set=ctx.process_set)
        rows = allgather(torch.tensor([ctx.rows], dtype=torch.int64),
                         process_set=ctx.process_set)
        offset = int(rows[:ctx.process_set.rank()].sum())
        return reduced.narrow(0, offset, ctx.rows), None, None


def allgather(tensor, name=None, process_set=global_process_set):
    """Concatenates every member's tensor along dimension 0, in (global)
    rank order. Differentiable (see _Allgather.backward)."""
    return _Allgather.apply(tensor, name, process_set)


def grouped_allgather_async(tensors, name=None,
                            process_set=global_process_set):
    """Starts an all-or-nothing allgather of a list of tensors (named
    <name>.<i>; fused when they fit); synchronize() returns a list."""
    set_id = _set_id(process_set)
    native = _submit(_lib.grouped_allgather_async, list(tensors),
                     _name("grouped_allgather", name, set_id), set_id)
    return _register(native, lambda results, native: list(results))


def grouped_allgather(tensors, name=None, process_set=global_process_set):
    return synchronize(grouped_allgather_async(tensors, name, process_set))


# ---------------------------------------------------------------------------
# Broadcast.

def _broadcast_async(tensor, root_rank, name, in_place, process_set):
    set_id = _set_id(process_set)
    native = _submit(_lib.broadcast_async, tensor, root_rank,
                     _name("broadcast", name, set_id), in_place, set_id)
    return _register(native, _first)


def broadcast_async(tensor, root_rank, name=None,
                    process_set=global_process_set):
    """Starts copying root_rank's tensor to every member of process_set,
    into a new tensor. root_rank is a global rank, a member of the set."""
    return _broadcast_async(tensor, root_rank, name, False, process_set)


def broadcast_async_(tensor, root_rank, name=None,
                     process_set=global_process_set):
    """broadcast_async() into `tensor`."""
    return _broadcast_async(tensor, root_rank, name, True, process_set)


class _Broadcast(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor, root_rank, name, process_set):
        ctx.root_rank = root_rank
        ctx.process_set = process_set
        return synchronize(broadcast_async(tensor, root_rank, name,
                                           process_set))

    @staticmethod
    def backward(ctx, grad_output):
        # As Horovod: the average of the output's gradient on the root,
        # zero elsewhere.
        reduced = allreduce(grad_output, op=Average,
                            process_set=ctx.process_set)
        if rank() != ctx.root_rank:
            reduced = torch.zeros_like(reduced)
        return reduced, None, None, None


def broadcast(tensor, root_rank, name=None, process_set=global_process_set):
    """root_rank's tensor, as a new tensor on every member. Differentiable."""
    return _Broadcast.apply(tensor, root_rank, name, process_set)


def broadcast_(tensor, root_rank, name=None, process_set=global_process_set):
    """broadcast() into `tensor`; returns it."""
    return synchronize(broadcast_async_(tensor, root_rank, name,
                                        process_set))


# ---------------------------------------------------------------------------
# Alltoall.

def _splits_list(splits):
    if splits is None:
        return []
    if isinstance(splits, torch.Tensor):
        return [int(s) for s in splits.tolist()]
    return [int(s) for s in splits]


def alltoall_async(tensor, splits=None, name=None,
                   process_set=global_process_set):
    """Starts sending splits[j] rows (dimension 0) of `tensor` to the j-th
    member of process_set (equal parts without splits). synchronize()
    returns (output, received_splits), received_splits an int32 tensor."""
    set_id = _set_id(process_set)
    native = _submit(_lib.alltoall_async, tensor,
                     _name("alltoall", name, set_id), _splits_list(splits),
                     set_id)

    def finish(results, native):
        received = torch.tensor(native.received_splits(), dtype=torch.int32)
        return results[0], received
    return _register(native, finish)


class _Alltoall(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor, splits, name, process_set):
        output, received = synchronize(alltoall_async(tensor, splits, name,
                                                      process_set))
        ctx.received = received
        ctx.process_set = process_set
        ctx.mark_non_differentiable(received)
        return output, received

    @staticmethod
    def backward(ctx, grad_output, grad_received):
        # The rows go back where they came from.
        grad, _ = synchronize(alltoall_async(grad_output, ctx.received,
                                             process_set=ctx.process_set))
        return grad, None, None, None


def alltoall(tensor, splits=None, name=None, process_set=global_process_set):
    """Sends splits[j] rows of `tensor` to the j-th member and returns the
    rows received, in member order; with `splits`, also the rows received
    from each member (an int32 tensor). Differentiable."""
    output, received = _Alltoall.apply(tensor, splits, name, process_set)
    return output if splits is None else (output, received)


# ---------------------------------------------------------------------------
# Reducescatter.

def _check_reducescatter_op(op):
    if op not in (Sum, Average):
        raise ValueError("reducescatter supports op Average and Sum")
    return op


def reducescatter_async(tensor, name=None, op=Average,
                        process_set=global_process_set, prescale_factor=1.0,
                        postscale_factor=1.0):
    """Starts reducing every member's tensor and scattering dimension 0: the
    k-th member gets rows [k * n / size, ...): n // size rows, the first
    n % size members one more."""
    _check_reducescatter_op(op)
    set_id = _set_id(process_set)
    if prescale_factor != 1.0:
        tensor = tensor * prescale_factor
    native = _submit(_lib.reducescatter_async, tensor,
                     _name("reducescatter", name, set_id), op, set_id)
    if postscale_factor == 1.0:
        return _register(native, _first)
    return _register(native,
                     lambda results, native: results[0] * postscale_factor)


class _Reducescatter(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor, name, op, process_set, prescale_factor,
                postscale_factor):
        ctx.op = op
        ctx.scale = prescale_factor * postscale_factor
        ctx.process_set = process_set
        return synchronize(reducescatter_async(tensor, name, op, process_set,
                                               prescale_factor,
                                               postscale_factor))

    @staticmethod
    def backward(ctx, grad_output):
        grad = allgather(grad_output, process_set=ctx.process_set) * ctx.scale
        if ctx.op == Average:
            grad = grad / ctx.process_set.size()
        return grad, None, None, None, None, None


def reducescatter(tensor, name=None, compression=Compression.none, op=Average,
                  process_set=global_process_set, prescale_factor=1.0,
                  postscale_factor=1.0):
    """Reduces every member's tensor and returns this rank's rows of the
    result (see reducescatter_async). Differentiable."""
    compressed, ctx = compression.compress(tensor)
    reduced = _Reducescatter.apply(compressed, name, op, process_set,
                                   prescale_factor, postscale_factor)
    return compression.decompress(reduced, ctx)


def grouped_reducescatter_async(tensors, name=None, op=Average,
                                process_set=global_process_set,
                                prescale_factor=1.0, postscale_factor=1.0):
    """Starts an all-or-nothing reducescatter of a list of tensors (named
    <name>.<i>; fused when they fit); synchronize() returns a list."""
    _check_reducescatter_op(op)
    set_id = _set_id(process_set)
    scaled = [t * prescale_factor if prescale_factor != 1.0 else t
              for t in tensors]
    native = _submit(_lib.grouped_reducescatter_async, scaled,
                     _name("grouped_reducescatter", name, set_id), op, set_id)
    return _register(native, lambda results, native: [
        r * postscale_factor if postscale_factor != 1.0 else r
        for r in results])


def grouped_reducescatter(tensors, name=None, compression=Compression.none,
                          op=Average, process_set=global_process_set,
                          prescale_factor=1.0, postscale_factor=1.0):
    compressed, ctxs = zip(*[compression.compress(t) for t in tensors])
    reduced = synchronize(grouped_reducescatter_async(
        compressed, name, op, process_set, prescale_factor,
        postscale_factor))
    return [compression.decompress(t, c) for t, c in zip(reduced, ctxs)]


# ---------------------------------------------------------------------------
# Join and barrier.

def join(device=-1, process_set=global_process_set):
    """This rank has run out of data: it takes part in the other members'
    allreduces with zeros until every member of process_set has joined.
    Blocks; returns the (global) rank that joined last. `device` is accepted
    for Horovod's signature."""
    return _submit(_lib.join, _set_id(process_set))


def barrier(process_set=global_process_set):
    """Blocks until every member of process_set has called barrier()."""
    _submit(_lib.barrier, _set_id(process_set))
