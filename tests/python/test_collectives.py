"""kolo.torch's collectives against references computed on every rank from
every rank's (reproducible) inputs: allreduce in all its forms, grouped
allreduce, allgather, broadcast, alltoall, reducescatter, join, barrier,
poll/synchronize, errors, autograd and the timeline."""

import json
import os
import shutil
import tempfile
import time

import pytest
import torch

import kolo.torch as hvd

DTYPES = [torch.uint8, torch.int8, torch.int32, torch.int64, torch.float16,
          torch.bfloat16, torch.float32, torch.float64, torch.bool]
FLOATS = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
OPS = {"sum": hvd.Sum, "average": hvd.Average, "min": hvd.Min,
       "max": hvd.Max, "product": hvd.Product}


def rank_input(r, dtype, shape=(3, 5), seed=0):
    """Rank r's input: small values, so that sums and products stay exact
    in every dtype."""
    g = torch.Generator().manual_seed(1000 * seed + r)
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=g).bool()
    low = 0 if dtype == torch.uint8 else -3
    return torch.randint(low, 4, shape, generator=g).to(dtype)


def reference(op, dtype, shape=(3, 5), seed=0):
    inputs = [rank_input(r, dtype, shape, seed) for r in range(hvd.size())]
    if dtype == torch.bool:
        stacked = torch.stack(inputs)
        return stacked.any(0) if op in ("sum", "max") else stacked.all(0)
    wide = torch.stack([t.double() for t in inputs])
    result = {"sum": wide.sum(0), "average": wide.sum(0) / hvd.size(),
              "min": wide.min(0).values, "max": wide.max(0).values,
              "product": wide.prod(0)}[op]
    if not dtype.is_floating_point and op == "average":
        result = torch.trunc(result)
    if not dtype.is_floating_point:
        # Wrap-around of the narrow integer types, as the C types do.
        return result.long().to(dtype)
    return result.to(dtype)


def assert_matches(actual, expected, what):
    assert actual.dtype == expected.dtype, what
    assert actual.shape == expected.shape, what
    if expected.dtype in (torch.float16, torch.bfloat16):
        # Reduced in float32, rounded once to the 16-bit type.
        torch.testing.assert_close(actual.float(), expected.float(),
                                   rtol=1e-2, atol=1e-2, msg=what)
    elif expected.dtype.is_floating_point:
        torch.testing.assert_close(actual, expected, rtol=1e-6, atol=1e-6,
                                   msg=what)
    else:
        assert torch.equal(actual, expected), f"{what}: {actual} != {expected}"


def test_topology():
    assert hvd.is_initialized()
    assert hvd.size() == int(os.environ["OMPI_COMM_WORLD_SIZE"])
    assert hvd.rank() == int(os.environ["OMPI_COMM_WORLD_RANK"])
    assert hvd.local_rank() == int(os.environ["OMPI_COMM_WORLD_LOCAL_RANK"])
    assert hvd.local_size() == int(os.environ["OMPI_COMM_WORLD_LOCAL_SIZE"])
    # One host: each local rank is alone across hosts.
    assert hvd.cross_size() == 1 and hvd.cross_rank() == 0
    assert hvd.mpi_built() and hvd.mpi_enabled() and hvd.mpi_threads_supported()
    assert not hvd.gloo_built() and not hvd.gloo_enabled()
    assert hvd.cuda_built() == hvd.nccl_built()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("op", OPS)
def test_allreduce_every_dtype_and_op(dtype, op):
    tensor = rank_input(hvd.rank(), dtype)
    if dtype == torch.bool and op == "average":
        with pytest.raises(ValueError, match="bool"):
            hvd.allreduce(tensor, op=OPS[op], name="bool.average")
        return
    expected = reference(op, dtype)
    before = tensor.clone()
    result = hvd.allreduce(tensor, op=OPS[op], name=f"ar.{op}.{dtype}")
    assert_matches(result, expected, f"allreduce {op} {dtype}")
    assert torch.equal(tensor, before), "allreduce changed its input"

    # In place, and asynchronously (unnamed, in place).
    inplace = rank_input(hvd.rank(), dtype)
    assert hvd.allreduce_(inplace, op=OPS[op]) is inplace
    assert_matches(inplace, expected, f"allreduce_ {op} {dtype}")
    handle = hvd.allreduce_async(rank_input(hvd.rank(), dtype), op=OPS[op])
    assert_matches(hvd.synchronize(handle), expected,
                   f"allreduce_async {op} {dtype}")
    inplace = rank_input(hvd.rank(), dtype)
    handle = hvd.allreduce_async_(inplace, op=OPS[op])
    while not hvd.poll(handle):
        time.sleep(0.001)
    assert hvd.synchronize(handle) is inplace
    assert_matches(inplace, expected, f"allreduce_async_ {op} {dtype}")


def adasum_reference(vectors):
    """The paper's rule up the rank tree, in double."""
    if len(vectors) == 1:
        return vectors[0]
    half = len(vectors) // 2
    a = adasum_reference(vectors[:half])
    b = adasum_reference(vectors[half:])
    dot = float(a @ b)
    aa = float(a @ a)
    bb = float(b @ b)
    if aa == 0:
        return b
    if bb == 0:
        return a
    return (1 - dot / (2 * aa)) * a + (1 - dot / (2 * bb)) * b


def test_allreduce_adasum_follows_the_formula():
    if hvd.size() & (hvd.size() - 1):
        pytest.skip("adasum needs a power-of-two number of ranks")
    inputs = [torch.arange(6, dtype=torch.float64) * (r + 1) - 2 * r
              for r in range(hvd.size())]
    result = hvd.allreduce(inputs[hvd.rank()], op=hvd.Adasum, name="adasum")
    assert torch.allclose(result, adasum_reference(inputs), rtol=1e-12,
                          atol=1e-12)


def test_allreduce_default_is_average_and_average_flag():
    tensor = rank_input(hvd.rank(), torch.float64)
    assert_matches(hvd.allreduce(tensor), reference("average", torch.float64),
                   "default op")
    with pytest.warns(DeprecationWarning):
        summed = hvd.allreduce(tensor, average=False)
    assert_matches(summed, reference("sum", torch.float64), "average=False")
    with pytest.raises(ValueError, match="supersedes"):
        hvd.allreduce(tensor, average=True, op=hvd.Sum)


def test_allreduce_scale_factors_and_noncontiguous():
    tensor = rank_input(hvd.rank(), torch.float32, (4, 6)).t()
    assert not tensor.is_contiguous()
    result = hvd.allreduce(tensor, op=hvd.Sum, prescale_factor=0.5,
                           postscale_factor=3.0)
    expected = reference("sum", torch.float32, (4, 6)).t() * 1.5
    assert_matches(result, expected, "scaled")
    hvd.allreduce_(tensor, op=hvd.Sum)
    assert_matches(tensor, reference("sum", torch.float32, (4, 6)).t(),
                   "non-contiguous in place")


def test_allreduce_fp16_compression():
    tensor = rank_input(hvd.rank(), torch.float32) / 7
    result = hvd.allreduce(tensor, name="compressed",
                           compression=hvd.Compression.fp16)
    assert result.dtype == torch.float32
    expected = reference("average", torch.float64).float() / 7
    torch.testing.assert_close(result, expected, rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("in_place", [False, True])
def test_grouped_allreduce(in_place):
    dtypes = [torch.float32, torch.int32, torch.float64]
    tensors = [rank_input(hvd.rank(), d, (2 + i, 3), seed=i)
               for i, d in enumerate(dtypes)]
    expected = [reference("sum", d, (2 + i, 3), seed=i)
                for i, d in enumerate(dtypes)]
    if in_place:
        results = hvd.grouped_allreduce_(tensors, op=hvd.Sum, name="group")
        assert isinstance(results, tuple)
        assert all(r is t for r, t in zip(results, tensors))
    else:
        results = hvd.grouped_allreduce(tensors, op=hvd.Sum, name="group")
        assert isinstance(results, list)
    for i, (r, e) in enumerate(zip(results, expected)):
        assert_matches(r, e, f"grouped tensor {i}")
    handle = hvd.grouped_allreduce_async(tensors, op=hvd.Max)
    assert len(hvd.synchronize(handle)) == 3


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_allgather_rows_differ_per_rank(dtype):
    tensor = rank_input(hvd.rank(), dtype, (hvd.rank() + 1, 2, 3))
    expected = torch.cat([rank_input(r, dtype, (r + 1, 2, 3))
                          for r in range(hvd.size())])
    assert torch.equal(hvd.allgather(tensor, name=f"ag.{dtype}"), expected)
    handle = hvd.allgather_async(tensor)
    assert torch.equal(hvd.synchronize(handle), expected)
    grouped = hvd.grouped_allgather([tensor, tensor[:, 0]])
    assert torch.equal(grouped[0], expected)
    assert torch.equal(grouped[1], expected[:, 0])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_broadcast_from_every_root(dtype):
    for root in range(hvd.size()):
        expected = rank_input(root, dtype)
        tensor = rank_input(hvd.rank(), dtype)
        before = tensor.clone()
        result = hvd.broadcast(tensor, root, name=f"bc.{dtype}.{root}")
        assert torch.equal(result, expected)
        assert torch.equal(tensor, before)
        assert hvd.broadcast_(tensor, root_rank=root) is tensor
        assert torch.equal(tensor, expected)
        handle = hvd.broadcast_async_(rank_input(hvd.rank(), dtype), root)
        assert torch.equal(hvd.synchronize(handle), expected)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_alltoall_every_dtype(dtype):
    n = hvd.size()
    # Rank r sends j + r + 1 rows to rank j: rows [offset_j, offset_j + s_j)
    # of its input.
    splits = [j + hvd.rank() + 1 for j in range(n)]
    rows = rank_input(hvd.rank(), dtype, (sum(splits), 2))
    output, received = hvd.alltoall(rows, splits=splits, name=f"a2a.{dtype}")
    expected_received = [hvd.rank() + r + 1 for r in range(n)]
    assert received.dtype == torch.int32
    assert received.tolist() == expected_received
    pieces = []
    for r in range(n):
        theirs = [j + r + 1 for j in range(n)]  # rank r's splits
        offset = sum(theirs[:hvd.rank()])
        sent = rank_input(r, dtype, (sum(theirs), 2))
        pieces.append(sent[offset:offset + theirs[hvd.rank()]])
    assert torch.equal(output, torch.cat(pieces))


def test_alltoall_equal_parts_and_splits_as_a_tensor():
    n = hvd.size()
    equal = torch.arange(2 * n, dtype=torch.float32) + 100 * hvd.rank()
    out = hvd.alltoall(equal)
    assert torch.equal(out, torch.tensor(
        [100 * r + 2 * hvd.rank() + k for r in range(n) for k in range(2)],
        dtype=torch.float32))
    out, received = hvd.alltoall(equal, splits=torch.tensor([2] * n))
    assert received.tolist() == [2] * n


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("op", ["sum", "average"])
def test_reducescatter_uneven_rows(op, dtype):
    if dtype == torch.bool and op == "average":
        return  # bool has no average (see test_allreduce_every_dtype_and_op)
    n = hvd.size()
    rows = 2 * n + 1  # the first rank gets one more row
    tensor = rank_input(hvd.rank(), dtype, (rows, 4))
    full = reference(op, dtype, (rows, 4))
    counts = [rows // n + (1 if r < rows % n else 0) for r in range(n)]
    start = sum(counts[:hvd.rank()])
    expected = full[start:start + counts[hvd.rank()]]
    result = hvd.reducescatter(tensor, name=f"rs.{op}.{dtype}", op=OPS[op])
    assert_matches(result, expected, f"reducescatter {op} {dtype}")
    grouped = hvd.grouped_reducescatter([tensor, tensor[:, :2]], op=OPS[op])
    assert_matches(grouped[1], expected[:, :2], "grouped reducescatter")


def test_reducescatter_scale_factors_and_ops():
    rows = 2 * hvd.size()
    tensor = rank_input(hvd.rank(), torch.float64, (rows, 3))
    expected = reference("sum", torch.float64, (rows, 3))[
        2 * hvd.rank():2 * hvd.rank() + 2]
    scaled = hvd.reducescatter(tensor, op=hvd.Sum, prescale_factor=2.0,
                               postscale_factor=0.25)
    assert_matches(scaled, expected * 0.5, "scaled reducescatter")
    handle = hvd.reducescatter_async(tensor, op=hvd.Sum)
    assert_matches(hvd.synchronize(handle), expected, "reducescatter_async")
    with pytest.raises(ValueError, match="Average and Sum"):
        hvd.reducescatter(tensor, op=hvd.Max)


def test_join_counts_only_ranks_that_have_not_joined():
    # Rank r runs r + 1 allreduces, then joins: allreduce i has the ranks
    # r >= i.
    for i in range(hvd.rank() + 1):
        summed = hvd.allreduce(torch.ones(3), op=hvd.Sum, name=f"join.{i}")
        assert torch.equal(summed, torch.full((3,), float(hvd.size() - i)))
        averaged = hvd.allreduce(torch.ones(3), name=f"join.avg.{i}")
        assert torch.equal(averaged, torch.ones(3))
    assert hvd.join() == hvd.size() - 1
    hvd.barrier()


def test_errors():
    # A cross-rank shape mismatch fails on every rank, naming the tensor.
    tensor = torch.zeros(2 + hvd.rank())
    with pytest.raises(hvd.HorovodInternalError, match="mismatch.shape"):
        hvd.allreduce(tensor, name="mismatch.shape")
    dtype = torch.float32 if hvd.rank() == 0 else torch.float64
    with pytest.raises(hvd.HorovodInternalError, match="mismatch.dtype"):
        hvd.allreduce(torch.zeros(2, dtype=dtype), name="mismatch.dtype")
    # Bad input on this rank: ValueError, before anything is sent.
    with pytest.raises(ValueError, match="dtype"):
        hvd.allreduce(torch.zeros(2, dtype=torch.int16), name="int16")
    with pytest.raises(ValueError):
        hvd.broadcast(torch.zeros(2), root_rank=hvd.size(), name="bad.root")
    pending = hvd.allreduce_async(torch.zeros(2), name="duplicate")
    with pytest.raises(ValueError, match="duplicate"):
        hvd.allreduce_async(torch.zeros(2), name="duplicate")
    hvd.synchronize(pending)
    with pytest.raises(ValueError, match="Handle"):
        hvd.poll(123456789)
    assert hvd.synchronize(123456789) is None
    if hvd.size() & (hvd.size() - 1):
        with pytest.raises(ValueError, match="power-of-two"):
            hvd.allreduce(torch.zeros(2), op=hvd.Adasum)
    with pytest.raises(ValueError, match="adasum"):
        hvd.allreduce(torch.zeros(2, dtype=torch.int32), op=hvd.Adasum)
    with pytest.raises(NotImplementedError):
        hvd.init(comm=[0])
    # The runtime still works afterwards.
    assert torch.equal(hvd.allreduce(torch.ones(2), op=hvd.Sum),
                       torch.full((2,), float(hvd.size())))


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_allreduce_gradient(dtype):
    for op, factor in ((hvd.Sum, hvd.size()), (hvd.Average, 1)):
        tensor = rank_input(hvd.rank(), dtype).requires_grad_()
        hvd.allreduce(tensor, op=op).backward(torch.ones(3, 5, dtype=dtype))
        assert torch.equal(tensor.grad, torch.full((3, 5), float(factor),
                                                   dtype=dtype))
    tensor = torch.ones(2, requires_grad=True)
    with pytest.raises(NotImplementedError, match="Min"):
        hvd.allreduce(tensor, op=hvd.Min).sum().backward()


def test_grouped_allreduce_gradient():
    a = torch.ones(2, requires_grad=True)
    b = torch.ones(3, dtype=torch.float64, requires_grad=True)
    ra, rb = hvd.grouped_allreduce([a, b], op=hvd.Sum)
    (ra.sum() + 2 * rb.sum()).backward()
    assert torch.equal(a.grad, torch.full((2,), float(hvd.size())))
    assert torch.equal(b.grad, torch.full((3,), 2.0 * hvd.size(),
                                          dtype=torch.float64))


def test_allgather_gradient():
    # As Horovod's test: the same output gradient on every rank comes back
    # as this rank's rows.
    tensor = torch.zeros(hvd.rank() + 1, 4, requires_grad=True)
    gathered = hvd.allgather(tensor)
    grad = torch.cat([torch.full((r + 1, 4), float(r))
                      for r in range(hvd.size())])
    gathered.backward(grad)
    assert torch.equal(tensor.grad, torch.full((hvd.rank() + 1, 4),
                                               float(hvd.rank())))


def test_broadcast_gradient():
    root = hvd.size() - 1
    tensor = torch.ones(3, 2, requires_grad=True)
    hvd.broadcast(tensor, root).backward(torch.ones(3, 2))
    assert torch.equal(tensor.grad, torch.full(
        (3, 2), 1.0 if hvd.rank() == root else 0.0))


def test_alltoall_gradient():
    splits = [j + 1 for j in range(hvd.size())]
    tensor = torch.arange(float(sum(splits)), requires_grad=True)
    output, received = hvd.alltoall(tensor, splits=splits)
    # Each received row's gradient is its sender's rank + 1.
    weights = torch.cat([torch.full((c,), float(r + 1))
                         for r, c in enumerate(received.tolist())])
    (output * weights).sum().backward()
    # This rank's rows went to every rank j, whose weight for them is this
    # rank + 1.
    assert torch.equal(tensor.grad, torch.full((sum(splits),),
                                               float(hvd.rank() + 1)))


def test_reducescatter_gradient():
    rows = 2 * hvd.size()
    for op, factor in ((hvd.Sum, 1.0), (hvd.Average, 1.0 / hvd.size())):
        tensor = torch.ones(rows, 3, requires_grad=True)
        hvd.reducescatter(tensor, op=op).sum().backward()
        assert torch.allclose(tensor.grad, torch.full((rows, 3), factor))


def test_timeline():
    # Rank 0 writes the timeline, into its own temporary directory.
    directory = hvd.broadcast_object(
        tempfile.mkdtemp() if hvd.rank() == 0 else None, 0,
        name="timeline.dir")
    path = os.path.join(directory, "timeline.json")
    hvd.start_timeline(path)
    hvd.allreduce(torch.ones(4), name="timeline.tensor")
    hvd.stop_timeline()
    if hvd.rank() == 0:
        with open(path) as f:
            text = f.read()
        shutil.rmtree(directory)
        assert "timeline.tensor" in text
        json.loads(text)
