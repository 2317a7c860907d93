"""Horovod's state broadcasts on kolo: broadcast_parameters,
broadcast_optimizer_state, broadcast_object and allgather_object. Each takes
process_set= (every rank by default) and then runs among its members only;
root_rank is a global rank, a member of the set."""

import collections.abc
import io
import pickle

import torch

from kolo.torch import collectives as _c
from kolo.torch.collectives import global_process_set


def broadcast_parameters(params, root_rank, prefix=None,
                         process_set=global_process_set):
    """Copies root_rank's tensors into every member's, in place.

    params: a dict of tensors (model.state_dict(), which includes buffers
    such as BatchNorm statistics), or a list or iterator of (name, tensor)
    pairs (model.named_parameters()) or of tensors. Every tensor is submitted
    before any is waited on, so kolo fuses them."""
    if isinstance(params, dict):
        params = sorted(params.items())
    elif isinstance(params, collections.abc.Iterable) and not isinstance(
            params, torch.Tensor):
        params = [p if isinstance(p, tuple) else (None, p) for p in params]
    else:
        raise ValueError(f"invalid params of type: {type(params)}")
    prefix = "" if prefix is None else prefix
    handles = []
    for index, (name, tensor) in enumerate(params):
        if tensor is None:
            continue
        label = f"{prefix}{name}" if name is not None else f"{prefix}{index}"
        handles.append(_c.broadcast_async_(tensor, root_rank,
                                           name=f"parameters.{label}",
                                           process_set=process_set))
    for handle in handles:
        _c.synchronize(handle)


def broadcast_optimizer_state(optimizer, root_rank, prefix="Parameter.",
                              process_set=global_process_set):
    """Makes every member's optimizer equal to root_rank's: each parameter
    group's options (lr, momentum, ...) and the whole state (step counts,
    moments), as optimizer.state_dict() has them. Ranks load root_rank's
    state_dict, so a rank whose optimizer has not stepped yet gets the
    root's state, and state the root lacks is dropped."""
    if isinstance(optimizer, torch.optim.LBFGS):
        raise ValueError("cannot broadcast torch.optim.LBFGS state")
    state = broadcast_object(optimizer.state_dict(), root_rank,
                             name=f"{prefix}optimizer_state",
                             process_set=process_set)
    if _c.rank() != root_rank:
        optimizer.load_state_dict(state)


def _to_bytes(obj):
    buffer = io.BytesIO()
    # torch.save pickles tensors with their storage, whatever their device.
    torch.save(obj, buffer, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    return torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)


def _from_bytes(tensor):
    return torch.load(io.BytesIO(tensor.numpy().tobytes()))


def broadcast_object(obj, root_rank=0, name=None,
                     process_set=global_process_set):
    """Pickles obj on root_rank and returns it, unpickled, on every member
    of process_set. Other ranks' obj is ignored."""
    if name is None:
        name = type(obj).__name__
    if _c.rank() == root_rank:
        payload = _to_bytes(obj)
        length = torch.tensor([payload.numel()], dtype=torch.int64)
    else:
        length = torch.zeros(1, dtype=torch.int64)
    _c.broadcast_(length, root_rank, name=f"{name}.sz",
                  process_set=process_set)
    if _c.rank() != root_rank:
        payload = torch.empty(int(length.item()), dtype=torch.uint8)
    _c.broadcast_(payload, root_rank, name=f"{name}.t",
                  process_set=process_set)
    return obj if _c.rank() == root_rank else _from_bytes(payload)


def allgather_object(obj, name=None, process_set=global_process_set):
    """Pickles every member's obj and returns the list of all of them, in
    rank order, on every member."""
    if name is None:
        name = type(obj).__name__
    payload = _to_bytes(obj)
    lengths = _c.allgather(torch.tensor([payload.numel()], dtype=torch.int64),
                           name=f"{name}.sz", process_set=process_set)
    gathered = _c.allgather(payload, name=f"{name}.t",
                            process_set=process_set)
    objects, start = [], 0
    for length in lengths.tolist():
        objects.append(_from_bytes(gathered[start:start + length]))
        start += length
    return objects
