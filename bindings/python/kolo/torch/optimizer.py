"""Horovod's DistributedOptimizer on kolo.

DistributedOptimizer(optimizer, ...) returns an object of a new subclass of
the optimizer's class that shares the optimizer's parameter groups, defaults
and state (so isinstance(), state_dict(), load_state_dict(), LR schedulers
and the original object all keep working), with hooks that start each
gradient's allreduce as soon as backward has accumulated it. With a
process set, gradients are reduced among its members only.
"""

import contextlib

import torch

from kolo.torch import collectives as _c
from kolo.torch.collectives import global_process_set
from kolo.torch.compression import Compression


class _DistributedOptimizer:
    """The methods mixed into the optimizer's class (see DistributedOptimizer)."""

    def _kolo_setup(self, named_parameters, compression,
                    backward_passes_per_step, op, gradient_predivide_factor,
                    groups, sparse_as_dense, process_set, set_size):
        self._compression = compression
        self.process_set = process_set
        self.backward_passes_per_step = backward_passes_per_step
        self.op = op
        self.gradient_predivide_factor = gradient_predivide_factor
        self.sparse_as_dense = sparse_as_dense
        params = [p for group in self.param_groups for p in group["params"]]
        if named_parameters is not None:
            named_parameters = list(named_parameters)
            if any(not isinstance(p, tuple) for p in named_parameters):
                raise ValueError(
                    "named_parameters should be a sequence of tuples (name, "
                    "parameter), usually produced by model.named_parameters().")
            names = [name for name, _ in named_parameters]
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise ValueError("Parameter names in named_parameters must be "
                                 "unique. Found duplicates: "
                                 + ", ".join(duplicates))
            named_ids = {id(p) for _, p in named_parameters}
            unnamed = [id(p) for p in params if id(p) not in named_ids]
            if unnamed:
                raise ValueError(
                    "named_parameters was specified, but one or more model "
                    "parameters were not named. Python object ids: "
                    + ", ".join(str(i) for i in unnamed))
        else:
            named_parameters = [
                (f"noname.{g}.{i}", p)
                for g, group in enumerate(self.param_groups)
                for i, p in enumerate(group["params"])]
        self._parameter_names = {p: name for name, p in named_parameters}
        # One process has nothing to reduce: the optimizer behaves as if
        # unwrapped (as Horovod's).
        self._requires_update = ([p for p in params if p.requires_grad]
                                 if set_size > 1 else [])
        # Parameters reduced together with grouped_allreduce.
        self._group_of = {}
        if groups is not None:
            if isinstance(groups, int):
                # At least 1: nothing to reduce (one rank) makes no groups.
                chunk = max(1, -(-len(self._requires_update)
                                 // max(groups, 1)))
                groups = [self._requires_update[i:i + chunk]
                          for i in range(0, len(self._requires_update), chunk)]
            for index, group in enumerate(groups):
                members = tuple(group)
                for p in members:
                    if p in self._group_of:
                        raise ValueError("a parameter is in more than one "
                                         "group")
                    self._group_of[p] = (index, members)
        self._passes = {p: 0 for p in self._requires_update}
        # Parameter (or group of parameters) -> (handle, ctx) in flight.
        self._handles = {}
        self._ready_in_group = {}
        self._synchronized = False
        self._should_synchronize = True
        self._grad_accumulators = []
        self._register_hooks()

    # -- hooks ---------------------------------------------------------------

    def _register_hooks(self):
        for p in self._requires_update:
            # The parameter's AccumulateGrad node, reached through a view;
            # held, since autograd keeps it only while a graph uses it.
            accumulator = p.expand_as(p).grad_fn.next_functions[0][0]
            accumulator.register_hook(self._make_hook(p))
            self._grad_accumulators.append(accumulator)

    def _make_hook(self, p):
        def hook(*unused):
            if self._pending(p):
                raise AssertionError(
                    "Gradients were computed more than "
                    "backward_passes_per_step times before call to step(). "
                    "Increase backward_passes_per_step to accumulate "
                    "gradients locally.")
            assert not p.grad.requires_grad
            self._synchronized = False
            self._passes[p] += 1
            if self._passes[p] == self.backward_passes_per_step:
                self._enqueue(p)
        return hook

    def _pending(self, p):
        if p in self._group_of:
            index, members = self._group_of[p]
            return members in self._handles or p in self._ready_in_group.get(
                index, ())
        return p in self._handles

    def _enqueue(self, p):
        if p not in self._group_of:
            self._handles[p] = self._allreduce_grad_async(p)
            return
        index, members = self._group_of[p]
        ready = self._ready_in_group.setdefault(index, set())
        ready.add(p)
        if len(ready) == len(members):
            del self._ready_in_group[index]
            self._handles[members] = self._grouped_allreduce_grad_async(
                members)

    def _scale_factors(self):
        if self.op == _c.Average:
            # kolo divides by size after the sum: (f / size) * sum(g / f).
            return (1.0 / self.gradient_predivide_factor,
                    self.gradient_predivide_factor)
        return 1.0, 1.0

    def _dense_gradient(self, p):
        if p.grad is None:
            # Not computed on this rank (e.g. an unused branch): other ranks
            # may have it, so zeros take part under the same name.
            p.grad = torch.zeros_like(p)
        elif p.grad.is_sparse and self.sparse_as_dense:
            p.grad = p.grad.to_dense()
        return p.grad

    def _allreduce_grad_async(self, p):
        name = self._parameter_names.get(p)
        grad = self._dense_gradient(p)
        if grad.is_sparse:
            return _c.sparse_allreduce_async(
                grad, f"sparse.{name}", self.op,
                process_set=self.process_set), "sparse"
        compressed, ctx = self._compression.compress(grad)
        prescale, postscale = self._scale_factors()
        handle = _c.allreduce_async_(compressed, name=name, op=self.op,
                                     prescale_factor=prescale,
                                     postscale_factor=postscale,
                                     process_set=self.process_set)
        return handle, (compressed, ctx)

    def _grouped_allreduce_grad_async(self, members):
        grads = [self._dense_gradient(p) for p in members]
        if any(g.is_sparse for g in grads):
            raise ValueError("sparse gradients cannot be grouped; pass "
                             "sparse_as_dense=True")
        compressed, ctxs = zip(*[self._compression.compress(g)
                                 for g in grads])
        prescale, postscale = self._scale_factors()
        name = f"group.{self._group_of[members[0]][0]}"
        handle = _c.grouped_allreduce_async_(
            list(compressed), name=name, op=self.op,
            prescale_factor=prescale, postscale_factor=postscale,
            process_set=self.process_set)
        return handle, (compressed, ctxs)

    # -- the optimizer's interface --------------------------------------------

    def synchronize(self):
        """Reduces the gradients not yet reduced in this step (a parameter
        whose gradient was not computed on this rank takes part with zeros),
        waits for every allreduce and writes the results into p.grad. Does
        nothing when called again before the next backward pass."""
        if self._synchronized:
            return
        for p in self._requires_update:
            if self._pending(p):
                continue
            if p in self._group_of:
                index, members = self._group_of[p]
                self._ready_in_group.pop(index, None)
                self._handles[members] = self._grouped_allreduce_grad_async(
                    members)
            else:
                self._handles[p] = self._allreduce_grad_async(p)
        handles, self._handles = self._handles, {}
        self._passes = dict.fromkeys(self._passes, 0)
        error = None
        for key, (handle, ctx) in handles.items():
            # Wait for every handle, even after a failure.
            try:
                self._finish(key, handle, ctx)
            except _c.HorovodInternalError as e:
                error = error or e
        if error is not None:
            raise error
        self._synchronized = True

    def _finish(self, key, handle, ctx):
        if ctx == "sparse":
            key.grad = handle()
            return
        results = _c.synchronize(handle)
        if isinstance(key, tuple):
            compressed, ctxs = ctx
            for p, result, c in zip(key, results, ctxs):
                self._write_grad(p, result, c)
        else:
            self._write_grad(key, results, ctx[1])

    def _write_grad(self, p, reduced, ctx):
        reduced = self._compression.decompress(reduced, ctx)
        if reduced is not p.grad:
            with torch.no_grad():
                p.grad.copy_(reduced)

    @contextlib.contextmanager
    def skip_synchronize(self):
        """Inside this context step() does not synchronize(): for code that
        called synchronize() itself (e.g. to clip the reduced gradients)."""
        self._should_synchronize = False
        try:
            yield
        finally:
            self._should_synchronize = True

    def step(self, closure=None):
        if closure is not None:
            # Evaluated before the reduction, so its backward's gradients
            # are reduced (the wrapped step() gets no closure).
            with torch.enable_grad():
                loss = closure()
        else:
            loss = None
        if self._should_synchronize:
            self.synchronize()
        self._synchronized = False
        result = super().step()
        return loss if closure is not None else result

    def zero_grad(self, *args, **kwargs):
        if self._handles:
            raise AssertionError(
                "optimizer.zero_grad() was called after loss.backward() but "
                "before optimizer.step() or optimizer.synchronize(). This is "
                "prohibited as it can cause a race condition.")
        return super().zero_grad(*args, **kwargs)

    def set_backward_passes_per_step(self, passes):
        """Changes backward_passes_per_step between steps."""
        if passes < 1:
            raise ValueError("backward_passes_per_step must be at least 1")
        self.backward_passes_per_step = passes
        self._passes = dict.fromkeys(self._passes, 0)


def DistributedOptimizer(optimizer, named_parameters=None,
                         compression=Compression.none,
                         backward_passes_per_step=1, op=_c.Average,
                         gradient_predivide_factor=1.0, num_groups=0,
                         groups=None, sparse_as_dense=False,
                         process_set=global_process_set):
    """Wraps a torch.optim optimizer so that every gradient is reduced over
    all ranks, or the members of process_set (averaged by default), before
    step() applies it.

    Each parameter's allreduce starts from an autograd hook as soon as its
    gradient has been accumulated on the last of backward_passes_per_step
    backward passes; step() waits for all of them, then steps. A parameter
    whose gradient was not computed on this rank takes part with zeros.

    named_parameters: model.named_parameters(), names every rank agrees on
    (else parameters are numbered). compression: Compression.none or .fp16
    (or .bf16). op: Average, Sum or Adasum (gradients combined by adaptive
    summation, not averaged: set the learning rate as for one rank; float
    gradients and a power-of-two number of ranks in process_set).
    gradient_predivide_factor: with Average, gradients are multiplied by
    1/f before the sum and by f/size after it. num_groups or groups: reduce
    parameters together with grouped allreduces (groups: a list of lists of
    parameters). sparse_as_dense: reduce sparse gradients as dense tensors
    (otherwise they are allgathered). process_set: an added ProcessSet this
    rank is a member of (ValueError otherwise); every member wraps its
    optimizer with it.
    """
    set_size = _c._member_count(process_set, "DistributedOptimizer")
    if op == _c.Adasum and set_size & (set_size - 1):
        where = ("this job" if process_set.process_set_id == 0
                 else "its process set")
        raise ValueError("DistributedOptimizer with Adasum needs a "
                         f"power-of-two number of ranks; {where} has "
                         f"{set_size}")
    if gradient_predivide_factor != 1.0 and op != _c.Average:
        raise ValueError("gradient_predivide_factor not supported with "
                         "op != Average")
    if gradient_predivide_factor <= 0:
        raise ValueError("gradient_predivide_factor must be positive")
    if backward_passes_per_step < 1:
        raise ValueError("backward_passes_per_step must be at least 1")
    if isinstance(optimizer, torch.optim.LBFGS):
        raise ValueError("DistributedOptimizer does not support LBFGS: it "
                         "evaluates the loss inside step()")
    if groups is not None and num_groups:
        raise ValueError("pass num_groups or groups, not both")
    if groups is not None and not isinstance(groups, (list, tuple)):
        raise ValueError("groups must be a list of lists of parameters")
    base = type(optimizer)
    cls = type(base.__name__, (_DistributedOptimizer, base),
               {"__module__": __name__})
    distributed = cls.__new__(cls)
    # Share everything the optimizer holds: parameter groups, defaults,
    # state and hooks.
    distributed.__dict__.update(optimizer.__dict__)
    distributed._kolo_setup(named_parameters, compression,
                            backward_passes_per_step, op,
                            gradient_predivide_factor,
                            groups if groups is not None else
                            (num_groups or None), sparse_as_dense,
                            process_set, set_size)
    return distributed
