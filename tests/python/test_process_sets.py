"""Process sets in kolo.torch (Horovod's API): the ProcessSet object, adding
and removing sets, every collective among a set's members against references
computed from the members' global ranks, gradients within a set, the state
broadcasts with a member root, DistributedOptimizer on a set against one
process training on the members' batches, and the errors.

The sets: the even and the odd global ranks ([0] and [1] at 2 ranks, [0, 2]
and [1] at 3). Every rank is in one of them ("mine") and not in the other,
and the two sets run their collectives at the same time."""

import pytest
import torch

import kolo.torch as hvd


def members(parity):
    return [r for r in range(hvd.size()) if r % 2 == parity]


def rank_input(r, shape=(4, 3), seed=0, dtype=torch.float32):
    """Global rank r's input: small integers, exact in every dtype."""
    g = torch.Generator().manual_seed(1000 * seed + r)
    return torch.randint(-3, 4, shape, generator=g).to(dtype)


def assert_equal(actual, expected, what=""):
    assert actual.dtype == expected.dtype, what
    assert torch.equal(actual, expected), f"{what}: {actual} != {expected}"


# ---------------------------------------------------------------------------
# Before the module's sets exist (see the `sets` fixture).

def test_process_set_object():
    unsorted = hvd.ProcessSet([2, 0])
    assert unsorted.ranks == [0, 2]
    assert unsorted.process_set_id is None
    assert unsorted.size() is None and unsorted.rank() is None
    assert str(unsorted) == ("ProcessSet(process_set_id=None, ranks=[0, 2], "
                             "mpi_comm=None)")
    assert hvd.ProcessSet(range(3)).ranks == [0, 1, 2]
    for bad in (3, None, ["0"], [0.5]):
        with pytest.raises(ValueError, match="global ranks"):
            hvd.ProcessSet(bad)
    everyone = hvd.global_process_set
    assert everyone.process_set_id == 0
    assert everyone.ranks == list(range(hvd.size()))
    assert everyone.size() == hvd.size() and everyone.rank() == hvd.rank()
    assert everyone.included()


def test_add_use_and_remove():
    first = hvd.ProcessSet([0])
    with pytest.raises(ValueError, match="not been added"):
        hvd.allreduce(torch.ones(2), process_set=first)
    with pytest.raises(ValueError, match="ProcessSet"):
        hvd.allreduce(torch.ones(2), process_set=[0])
    assert hvd.remove_process_set(first) is False

    assert hvd.add_process_set(first) is first
    set_id = first.process_set_id
    assert isinstance(set_id, int) and set_id > 0
    assert hvd.allgather_object(set_id, name="first.id") == \
        [set_id] * hvd.size()
    assert first.size() == 1
    assert first.rank() == (0 if hvd.rank() == 0 else -1)
    assert first.included() == (hvd.rank() == 0)
    if hvd.rank() == 0:
        assert_equal(hvd.allreduce(torch.ones(2), op=hvd.Sum,
                                   process_set=first), torch.ones(2))
    else:
        with pytest.raises(ValueError, match="not in process set"):
            hvd.allreduce(torch.ones(2), process_set=first)

    # Refused on every rank, which all stay in step.
    with pytest.raises(ValueError, match="added already"):
        hvd.add_process_set(first)
    with pytest.raises(ValueError, match="already has ranks"):
        hvd.add_process_set([0])
    with pytest.raises(ValueError, match="global set"):
        hvd.add_process_set(range(hvd.size()))
    with pytest.raises(ValueError, match="outside"):
        hvd.add_process_set([0, hvd.size()])
    with pytest.raises(ValueError, match="twice"):
        hvd.add_process_set([0, 0])
    with pytest.raises(ValueError, match="at least one rank"):
        hvd.add_process_set([])
    # Ranks that ask for different sets all fail.
    with pytest.raises(hvd.HorovodInternalError, match="rank"):
        hvd.add_process_set([hvd.rank()])

    assert hvd.remove_process_set(first) is True
    assert first.process_set_id is None and first.size() is None
    with pytest.raises(hvd.HorovodInternalError, match="removed"):
        hvd.allreduce(torch.ones(2), process_set=first)
    assert hvd.remove_process_set(first) is False
    assert hvd.remove_process_set(hvd.global_process_set) is False
    # A removed set can be added again, under a new id.
    hvd.add_process_set(first)
    assert first.process_set_id > set_id
    assert hvd.remove_process_set(first)


# ---------------------------------------------------------------------------
# Collectives among the members.

@pytest.fixture(scope="module")
def sets():
    evens = hvd.add_process_set(hvd.ProcessSet(members(0)))
    odds = hvd.add_process_set(members(1))
    yield evens, odds
    assert hvd.remove_process_set(evens)
    assert hvd.remove_process_set(odds)


@pytest.fixture
def mine(sets):
    return sets[hvd.rank() % 2]


@pytest.fixture
def other(sets):
    return sets[1 - hvd.rank() % 2]


def test_membership(sets, mine, other):
    evens, odds = sets
    assert evens.ranks == members(0) and odds.ranks == members(1)
    ids = (evens.process_set_id, odds.process_set_id)
    assert 0 not in ids and ids[0] != ids[1]
    assert hvd.allgather_object(ids, name="set.ids") == [ids] * hvd.size()
    assert mine.included() and not other.included()
    assert mine.rank() == mine.ranks.index(hvd.rank())
    assert other.rank() == -1
    assert mine.size() == len(mine.ranks)
    assert other.size() == len(other.ranks)


@pytest.mark.parametrize("dtype", [torch.int32, torch.float32,
                                   torch.float64], ids=str)
def test_allreduce(mine, dtype):
    wide = torch.stack([rank_input(r).double() for r in mine.ranks])
    average = wide.sum(0) / mine.size()
    if not dtype.is_floating_point:
        average = torch.trunc(average)
    expected = {hvd.Sum: wide.sum(0), hvd.Average: average,
                hvd.Min: wide.min(0).values, hvd.Max: wide.max(0).values,
                hvd.Product: wide.prod(0)}
    tensor = rank_input(hvd.rank(), dtype=dtype)
    for op, value in expected.items():
        value = value.to(dtype)
        assert_equal(hvd.allreduce(tensor, op=op, process_set=mine), value,
                     f"op {op}")
        handle = hvd.allreduce_async(tensor, op=op, process_set=mine)
        assert_equal(hvd.synchronize(handle), value, f"async op {op}")
        copy = tensor.clone()
        assert hvd.allreduce_(copy, op=op, process_set=mine) is copy
        assert_equal(copy, value, f"in place op {op}")
    summed = expected[hvd.Sum].to(dtype)
    grouped = hvd.grouped_allreduce([tensor, tensor[0]], op=hvd.Sum,
                                    process_set=mine)
    assert_equal(grouped[0], summed, "grouped")
    assert_equal(grouped[1], summed[0], "grouped")
    copies = [tensor.clone(), tensor[0].clone()]
    hvd.grouped_allreduce_(copies, op=hvd.Sum, process_set=mine)
    assert_equal(copies[0], summed, "grouped in place")
    if dtype.is_floating_point:
        scaled = hvd.allreduce(tensor, op=hvd.Sum, prescale_factor=2.0,
                               postscale_factor=0.25, process_set=mine)
        assert_equal(scaled, summed * 0.5, "scale factors")


def test_names_are_scoped_by_set(mine):
    in_set = hvd.allreduce_async(torch.ones(3), name="scoped", op=hvd.Sum,
                                 process_set=mine)
    everywhere = hvd.allreduce_async(torch.full((3,), 2.0), name="scoped",
                                     op=hvd.Sum)
    assert_equal(hvd.synchronize(everywhere),
                 torch.full((3,), 2.0 * hvd.size()))
    assert_equal(hvd.synchronize(in_set), torch.full((3,), float(mine.size())))


def test_unnamed_calls_are_numbered_per_set(mine):
    # The two sets make different numbers of unnamed allreduces; the
    # unnamed global allreduce after them still has the same name on every
    # rank.
    for _ in range(1 + hvd.rank() % 2):
        hvd.allreduce(torch.ones(2), process_set=mine)
    summed = hvd.allreduce(torch.full((2,), float(hvd.rank())), op=hvd.Sum)
    assert_equal(summed, torch.full((2,), float(sum(range(hvd.size())))))


def test_allgather(mine):
    # Members give different numbers of rows; global-rank order.
    tensor = rank_input(hvd.rank(), shape=(hvd.rank() + 1, 3))
    expected = torch.cat([rank_input(r, shape=(r + 1, 3))
                          for r in mine.ranks])
    assert_equal(hvd.allgather(tensor, process_set=mine), expected)
    handle = hvd.allgather_async(tensor, name="gather", process_set=mine)
    assert_equal(hvd.synchronize(handle), expected, "async")
    grouped = hvd.grouped_allgather([tensor, tensor[:, :1]],
                                    process_set=mine)
    assert_equal(grouped[0], expected, "grouped")
    assert_equal(grouped[1], expected[:, :1], "grouped")


def test_broadcast(mine, other):
    root = mine.ranks[-1]
    tensor = rank_input(hvd.rank())
    expected = rank_input(root)
    assert_equal(hvd.broadcast(tensor, root, process_set=mine), expected)
    assert_equal(tensor, rank_input(hvd.rank()), "broadcast's input")
    handle = hvd.broadcast_async(tensor, root, process_set=mine)
    assert_equal(hvd.synchronize(handle), expected, "async")
    assert hvd.broadcast_(tensor, root, process_set=mine) is tensor
    assert_equal(tensor, expected, "in place")
    with pytest.raises(ValueError, match="not in process set"):
        hvd.broadcast(tensor, other.ranks[0], process_set=mine)


def test_alltoall(mine):
    me, n = mine.rank(), mine.size()
    # Member k sends k + j + 1 rows to member j, each row holding
    # 100 * (sender's global rank) + j.
    splits = [me + j + 1 for j in range(n)]
    tensor = torch.cat([torch.full((count, 2), 100.0 * hvd.rank() + j)
                        for j, count in enumerate(splits)])
    output, received = hvd.alltoall(tensor, splits=splits, process_set=mine)
    expected = torch.cat([torch.full((k + me + 1, 2), 100.0 * r + me)
                          for k, r in enumerate(mine.ranks)])
    assert_equal(output, expected)
    assert received.tolist() == [k + me + 1 for k in range(n)]
    # Equal parts: two rows for each member.
    equal = torch.arange(2.0 * n) + 10 * hvd.rank()
    expected = torch.cat([torch.arange(2.0 * me, 2.0 * me + 2) + 10 * r
                          for r in mine.ranks])
    assert_equal(hvd.alltoall(equal, process_set=mine), expected, "equal")


def test_reducescatter(mine):
    me, n = mine.rank(), mine.size()
    rows = 2 * n + 1  # the first member gets one row more
    total = torch.stack([rank_input(r, shape=(rows, 3))
                         for r in mine.ranks]).sum(0)
    start = me * (rows // n) + min(me, rows % n)
    share = total[start:start + rows // n + (me < rows % n)]
    tensor = rank_input(hvd.rank(), shape=(rows, 3))
    assert_equal(hvd.reducescatter(tensor, op=hvd.Sum, process_set=mine),
                 share)
    torch.testing.assert_close(hvd.reducescatter(tensor, process_set=mine),
                               share / n)
    scaled = hvd.reducescatter(tensor, op=hvd.Sum, process_set=mine,
                               prescale_factor=2.0, postscale_factor=0.25)
    assert_equal(scaled, share * 0.5, "scale factors")
    handle = hvd.reducescatter_async(tensor, op=hvd.Sum, process_set=mine)
    assert_equal(hvd.synchronize(handle), share, "async")
    grouped = hvd.grouped_reducescatter([tensor, tensor[:, :1]], op=hvd.Sum,
                                        process_set=mine)
    assert_equal(grouped[0], share, "grouped")
    assert_equal(grouped[1], share[:, :1], "grouped")


def test_sparse_allreduce(mine):
    dense = torch.zeros(4, 2)
    dense[hvd.rank() % 4, 0] = hvd.rank() + 1.0
    wait = hvd.sparse_allreduce_async(dense.to_sparse(), "sparse.in.set",
                                      hvd.Average, process_set=mine)
    expected = torch.zeros(4, 2)
    for r in mine.ranks:
        expected[r % 4, 0] += (r + 1.0) / mine.size()
    assert_equal(wait().to_dense(), expected)


def test_join_and_barrier(mine):
    hvd.barrier(process_set=mine)
    # The first member joins at once: the others' allreduce adds its zeros.
    if mine.rank() > 0:
        summed = hvd.allreduce(torch.ones(3), op=hvd.Sum, name="before.join",
                               process_set=mine)
        assert_equal(summed, torch.full((3,), mine.size() - 1.0))
    last = hvd.join(process_set=mine)
    assert last in (mine.ranks[1:] if mine.size() > 1 else mine.ranks)
    hvd.barrier(process_set=mine)


# ---------------------------------------------------------------------------
# Gradients flow within the set.

def test_gradients(mine):
    n = mine.size()
    tensor = torch.ones(3, requires_grad=True)
    hvd.allreduce(tensor, op=hvd.Sum, process_set=mine).sum().backward()
    assert_equal(tensor.grad, torch.full((3,), float(n)), "allreduce")

    a = torch.ones(2, requires_grad=True)
    b = torch.ones(3, dtype=torch.float64, requires_grad=True)
    ra, rb = hvd.grouped_allreduce([a, b], op=hvd.Sum, process_set=mine)
    (ra.sum() + 2 * rb.sum()).backward()
    assert_equal(a.grad, torch.full((2,), float(n)), "grouped allreduce")
    assert_equal(b.grad, torch.full((3,), 2.0 * n, dtype=torch.float64),
                 "grouped allreduce")

    # The same output gradient on every member comes back as this rank's
    # rows (its position among the members gives the offset).
    tensor = torch.zeros(hvd.rank() + 1, 2, requires_grad=True)
    gathered = hvd.allgather(tensor, process_set=mine)
    gathered.backward(torch.cat([torch.full((r + 1, 2), float(r))
                                 for r in mine.ranks]))
    assert_equal(tensor.grad, torch.full((hvd.rank() + 1, 2),
                                         float(hvd.rank())), "allgather")

    root = mine.ranks[-1]
    tensor = torch.ones(2, requires_grad=True)
    hvd.broadcast(tensor, root, process_set=mine).sum().backward()
    assert_equal(tensor.grad, torch.full(
        (2,), 1.0 if hvd.rank() == root else 0.0), "broadcast")

    splits = [j + 1 for j in range(n)]
    tensor = torch.arange(float(sum(splits)), requires_grad=True)
    output, received = hvd.alltoall(tensor, splits=splits, process_set=mine)
    weights = torch.cat([torch.full((count,), r + 1.0)
                         for r, count in zip(mine.ranks, received.tolist())])
    (output * weights).sum().backward()
    assert_equal(tensor.grad, torch.full((sum(splits),), hvd.rank() + 1.0),
                 "alltoall")

    for op, factor in ((hvd.Sum, 1.0), (hvd.Average, 1.0 / n)):
        tensor = torch.ones(2 * n, 3, requires_grad=True)
        hvd.reducescatter(tensor, op=op, process_set=mine).sum().backward()
        torch.testing.assert_close(tensor.grad,
                                   torch.full((2 * n, 3), factor))


# ---------------------------------------------------------------------------
# State broadcasts and DistributedOptimizer.

def test_objects(mine):
    root = mine.ranks[-1]
    got = hvd.broadcast_object(
        {"rank": hvd.rank(), "values": torch.arange(hvd.rank() + 1)},
        root_rank=root, name="object.in.set", process_set=mine)
    assert got["rank"] == root
    assert_equal(got["values"], torch.arange(root + 1))
    gathered = hvd.allgather_object(("from", hvd.rank()), process_set=mine)
    assert gathered == [("from", r) for r in mine.ranks]


def stepped_model(seed):
    """A model and optimizer after one step, both depending on seed."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4),
                                torch.nn.BatchNorm1d(4),
                                torch.nn.Linear(4, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1 * (seed + 1),
                                momentum=0.9)
    model(rank_input(seed, shape=(5, 3))).sum().backward()
    optimizer.step()
    return model, optimizer


def test_broadcast_parameters_and_optimizer_state(mine):
    # The last member is the root: a rank other than 0 in at least one set.
    root = mine.ranks[-1]
    model, optimizer = stepped_model(hvd.rank())
    hvd.broadcast_parameters(model.state_dict(), root_rank=root,
                             process_set=mine)
    hvd.broadcast_optimizer_state(optimizer, root_rank=root,
                                  process_set=mine)
    # The root's state, rebuilt here from its seed.
    root_model, root_optimizer = stepped_model(root)
    expected = root_model.state_dict()
    for name, value in model.state_dict().items():
        assert_equal(value, expected[name], name)
    state = optimizer.state_dict()
    root_state = root_optimizer.state_dict()
    assert state["param_groups"] == root_state["param_groups"]
    for key, entry in root_state["state"].items():
        assert_equal(state["state"][key]["momentum_buffer"],
                     entry["momentum_buffer"], f"momentum {key}")


class Mlp(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(5)
        self.fc1 = torch.nn.Linear(5, 8)
        self.fc2 = torch.nn.Linear(8, 2)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))


def member_batch(r, step):
    """Global rank r's batch at `step`: three rows."""
    g = torch.Generator().manual_seed(700 + 10 * r + step)
    return torch.randn(3, 5, generator=g), torch.randn(3, 2, generator=g)


@pytest.mark.parametrize("options", [{}, {"num_groups": 1}], ids=str)
def test_distributed_optimizer(mine, options):
    model = Mlp()
    optimizer = hvd.DistributedOptimizer(
        torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.5),
        named_parameters=model.named_parameters(), process_set=mine,
        **options)
    assert optimizer.process_set is mine
    # One process training on the members' batches, concatenated.
    reference = Mlp()
    reference_optimizer = torch.optim.SGD(reference.parameters(), lr=0.1,
                                          momentum=0.5)
    loss = torch.nn.functional.mse_loss
    for step in range(3):
        x, y = member_batch(hvd.rank(), step)
        optimizer.zero_grad()
        loss(model(x), y).backward()
        optimizer.step()
        xs, ys = zip(*[member_batch(r, step) for r in mine.ranks])
        reference_optimizer.zero_grad()
        loss(reference(torch.cat(xs)), torch.cat(ys)).backward()
        reference_optimizer.step()
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)


def test_distributed_optimizer_checks_the_set(mine, other):
    def wrap(**options):
        model = torch.nn.Linear(2, 1)
        return hvd.DistributedOptimizer(
            torch.optim.SGD(model.parameters(), lr=0.1),
            named_parameters=model.named_parameters(), **options)
    # Adasum needs a power-of-two number of ranks: the set's.
    if mine.size() & (mine.size() - 1) == 0:
        wrap(op=hvd.Adasum, process_set=mine)
    if hvd.size() & (hvd.size() - 1):
        with pytest.raises(ValueError, match="power-of-two"):
            wrap(op=hvd.Adasum)
    with pytest.raises(ValueError, match="not a member"):
        wrap(process_set=other)
    with pytest.raises(ValueError, match="not been added"):
        wrap(process_set=hvd.ProcessSet([0]))


NON_MEMBER_CALLS = {
    "allreduce": lambda t, s: hvd.allreduce(t, process_set=s),
    "grouped_allreduce": lambda t, s: hvd.grouped_allreduce(
        [t], process_set=s),
    "allgather": lambda t, s: hvd.allgather(t, process_set=s),
    "broadcast": lambda t, s: hvd.broadcast(t, s.ranks[0], process_set=s),
    "alltoall": lambda t, s: hvd.alltoall(t, process_set=s),
    "reducescatter": lambda t, s: hvd.reducescatter(t, process_set=s),
    "barrier": lambda t, s: hvd.barrier(process_set=s),
    "join": lambda t, s: hvd.join(process_set=s),
    "broadcast_object": lambda t, s: hvd.broadcast_object(
        t, s.ranks[0], process_set=s),
    "broadcast_parameters": lambda t, s: hvd.broadcast_parameters(
        [t], s.ranks[0], process_set=s),
}


@pytest.mark.parametrize("call", NON_MEMBER_CALLS)
def test_non_members_are_refused(other, call):
    with pytest.raises(ValueError, match="not in process set"):
        NON_MEMBER_CALLS[call](torch.ones(2), other)
