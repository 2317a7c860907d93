"""kolo.torch.DistributedOptimizer: training on each rank's shard of every
batch equals one process training on the whole batches (SGD, Adam, several
backward passes per step, groups, sparse gradients), sum and predivide,
compression, unused parameters, synchronize/skip_synchronize, closures,
the optimizer's own interface (isinstance, state_dict, schedulers), misuse."""

import warnings

import pytest
import torch

import kolo.torch as hvd

ROWS = 3  # rows per rank per batch


class Mlp(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(5, 8)
        self.fc2 = torch.nn.Linear(8, 2)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))


def make_mlp():
    torch.manual_seed(3)
    return Mlp()


def batch(index):
    """The global batch `index`, the same on every rank."""
    g = torch.Generator().manual_seed(500 + index)
    return (torch.randn(hvd.size() * ROWS, 5, generator=g),
            torch.randn(hvd.size() * ROWS, 2, generator=g))


def mine(tensor):
    return tensor[hvd.rank() * ROWS:(hvd.rank() + 1) * ROWS]


def flat(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def assert_identical_across_ranks(tensor):
    gathered = hvd.allgather(tensor.unsqueeze(0))
    for r in range(hvd.size()):
        assert torch.equal(gathered[r], tensor), f"rank {r} differs"


def train(factory, steps, passes=1, distributed=True, **options):
    model = make_mlp()
    optimizer = factory(model)
    if distributed:
        optimizer = hvd.DistributedOptimizer(
            optimizer, named_parameters=model.named_parameters(),
            backward_passes_per_step=passes, **options)
    for step in range(steps):
        optimizer.zero_grad()
        if distributed:
            for p in range(passes):
                x, y = batch(step * passes + p)
                (torch.nn.functional.mse_loss(model(mine(x)), mine(y))
                 / passes).backward()
        else:
            xs, ys = zip(*[batch(step * passes + p) for p in range(passes)])
            torch.nn.functional.mse_loss(model(torch.cat(xs)),
                                         torch.cat(ys)).backward()
        optimizer.step()
    return flat(model)


def sgd(model):
    return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)


def adam(model):
    return torch.optim.Adam(model.parameters(), lr=0.01)


@pytest.mark.parametrize("factory", [sgd, adam], ids=["sgd", "adam"])
@pytest.mark.parametrize("passes", [1, 2])
def test_equals_one_process_on_concatenated_batches(factory, passes):
    distributed = train(factory, 8, passes)
    assert_identical_across_ranks(distributed)
    reference = train(factory, 8, passes, distributed=False)
    torch.testing.assert_close(distributed, reference, rtol=1e-5, atol=1e-6)


def test_num_groups_equals_one_process():
    distributed = train(sgd, 5, num_groups=2)
    assert_identical_across_ranks(distributed)
    torch.testing.assert_close(distributed, train(sgd, 5, distributed=False),
                               rtol=1e-5, atol=1e-6)


def test_explicit_groups_equal_one_process():
    model = make_mlp()
    # fc2's bias is in no group: reduced on its own.
    optimizer = hvd.DistributedOptimizer(
        sgd(model), named_parameters=model.named_parameters(),
        groups=[list(model.fc1.parameters()), [model.fc2.weight]])
    for step in range(5):
        optimizer.zero_grad()
        x, y = batch(step)
        torch.nn.functional.mse_loss(model(mine(x)), mine(y)).backward()
        optimizer.step()
    assert_identical_across_ranks(flat(model))
    torch.testing.assert_close(flat(model), train(sgd, 5, distributed=False),
                               rtol=1e-5, atol=1e-6)


def one_backward(**options):
    """Reduced gradients of one backward on this rank's shard."""
    model = make_mlp()
    optimizer = hvd.DistributedOptimizer(
        torch.optim.SGD(model.parameters(), lr=0.0),
        named_parameters=model.named_parameters(), **options)
    x, y = batch(0)
    torch.nn.functional.mse_loss(model(mine(x)), mine(y)).backward()
    optimizer.synchronize()
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def shard_gradients():
    grads = []
    x, y = batch(0)
    for r in range(hvd.size()):
        model = make_mlp()
        rows = slice(r * ROWS, (r + 1) * ROWS)
        torch.nn.functional.mse_loss(model(x[rows]), y[rows]).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    return torch.stack(grads)


def test_sum_predivide_and_compression():
    shards = shard_gradients()
    torch.testing.assert_close(one_backward(op=hvd.Sum), shards.sum(0),
                               rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(one_backward(gradient_predivide_factor=4.0),
                               shards.mean(0), rtol=1e-5, atol=1e-7)
    compressed = one_backward(compression=hvd.Compression.fp16)
    assert compressed.dtype == torch.float32
    torch.testing.assert_close(compressed, shards.mean(0), rtol=2e-3,
                               atol=1e-3)
    assert not torch.equal(compressed, shards.mean(0))


class Branches(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.shared = torch.nn.Linear(5, 2)
        self.extra = torch.nn.Linear(5, 2)
        self.unused = torch.nn.Linear(5, 2)

    def forward(self, x, use_extra):
        return self.shared(x) + self.extra(x) if use_extra else self.shared(x)


def test_parameters_unused_on_some_ranks_take_part_as_zeros():
    torch.manual_seed(4)
    model = Branches()
    optimizer = hvd.DistributedOptimizer(
        torch.optim.SGD(model.parameters(), lr=0.1),
        named_parameters=model.named_parameters())
    x, y = batch(1)
    torch.manual_seed(4)
    copy = Branches()
    torch.nn.functional.mse_loss(copy(x[:ROWS], True), y[:ROWS]).backward()
    torch.nn.functional.mse_loss(model(mine(x), hvd.rank() == 0),
                                 mine(y)).backward()
    optimizer.step()
    assert torch.equal(model.unused.weight.grad,
                       torch.zeros_like(model.unused.weight))
    torch.testing.assert_close(model.extra.weight.grad,
                               copy.extra.weight.grad / hvd.size())
    assert_identical_across_ranks(flat(model))


def test_synchronize_clip_then_step_reduces_once():
    model = make_mlp()
    optimizer = hvd.DistributedOptimizer(
        torch.optim.SGD(model.parameters(), lr=0.0),
        named_parameters=model.named_parameters(), op=hvd.Sum)
    x, y = batch(2)
    torch.nn.functional.mse_loss(model(mine(x)), mine(y)).backward()
    # The hooks started every allreduce during backward.
    assert set(optimizer._handles) == set(model.parameters())
    optimizer.synchronize()
    reduced = model.fc1.weight.grad.clone()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1e9)
    with optimizer.skip_synchronize():
        optimizer.step()
    assert torch.equal(model.fc1.weight.grad, reduced)
    # Without skip_synchronize() it is not reduced twice either.
    torch.nn.functional.mse_loss(model(mine(x)), mine(y)).backward()
    optimizer.synchronize()
    reduced = model.fc1.weight.grad.clone()
    optimizer.step()
    assert torch.equal(model.fc1.weight.grad, reduced)


def test_step_with_a_closure_reduces_its_gradients():
    model = make_mlp()
    optimizer = hvd.DistributedOptimizer(
        sgd(model), named_parameters=model.named_parameters())
    reference = make_mlp()
    reference_optimizer = sgd(reference)
    for step in range(3):
        x, y = batch(step)

        def closure():
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(mine(x)), mine(y))
            loss.backward()
            return loss

        def reference_closure():
            reference_optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(reference(x), y)
            loss.backward()
            return loss

        loss = optimizer.step(closure)
        assert loss.shape == ()
        reference_optimizer.step(reference_closure)
    torch.testing.assert_close(flat(model), flat(reference), rtol=1e-5,
                               atol=1e-6)


def test_is_still_the_optimizer():
    model = make_mlp()
    base = sgd(model)
    optimizer = hvd.DistributedOptimizer(
        base, named_parameters=model.named_parameters())
    assert isinstance(optimizer, torch.optim.SGD)
    assert type(optimizer).__name__ == "SGD"
    assert optimizer.param_groups is base.param_groups
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1,
                                                gamma=0.5)
    for step in range(2):
        optimizer.zero_grad()
        x, y = batch(step)
        torch.nn.functional.mse_loss(model(mine(x)), mine(y)).backward()
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0125)
    state = optimizer.state_dict()
    assert len(state["state"]) == 4  # momentum of each parameter
    fresh = sgd(make_mlp())
    fresh.load_state_dict(state)
    assert fresh.param_groups[0]["lr"] == pytest.approx(0.0125)


def test_sparse_gradients():
    for sparse_as_dense in (False, True):
        torch.manual_seed(5)
        embedding = torch.nn.Embedding(10, 3, sparse=True)
        optimizer = hvd.DistributedOptimizer(
            torch.optim.SGD(embedding.parameters(), lr=0.5),
            named_parameters=embedding.named_parameters(),
            sparse_as_dense=sparse_as_dense)
        # Rank r looks up rows r and r + 1.
        embedding(torch.tensor([hvd.rank(), hvd.rank() + 1])).sum().backward()
        optimizer.synchronize()
        grad = embedding.weight.grad.to_dense()
        expected = torch.zeros(10, 3)
        for r in range(hvd.size()):
            expected[r] += 1.0 / hvd.size()
            expected[r + 1] += 1.0 / hvd.size()
        torch.testing.assert_close(grad, expected)


def test_misuse_and_bad_arguments():
    model = make_mlp()
    optimizer = hvd.DistributedOptimizer(
        sgd(model), named_parameters=model.named_parameters())
    x, y = batch(0)
    torch.nn.functional.mse_loss(model(mine(x)), mine(y)).backward()
    with pytest.raises(AssertionError, match="zero_grad"):
        optimizer.zero_grad()
    with pytest.raises(AssertionError, match="backward_passes_per_step"):
        torch.nn.functional.mse_loss(model(mine(x)), mine(y)).backward()
    optimizer.step()

    with pytest.raises(ValueError, match="tuples"):
        hvd.DistributedOptimizer(sgd(model),
                                 named_parameters=list(model.parameters()))
    named = list(model.named_parameters())
    with pytest.raises(ValueError, match="unique"):
        hvd.DistributedOptimizer(sgd(model),
                                 named_parameters=named[:1] + named[:1])
    with pytest.raises(ValueError, match="not named"):
        hvd.DistributedOptimizer(sgd(model), named_parameters=named[:1])
    with pytest.raises(ValueError, match="gradient_predivide_factor"):
        hvd.DistributedOptimizer(sgd(model), op=hvd.Sum,
                                 gradient_predivide_factor=2.0)
    with pytest.raises(ValueError, match="LBFGS"):
        hvd.DistributedOptimizer(torch.optim.LBFGS(model.parameters()))


def adasum_pair(a, b):
    dot, aa, bb = float(a @ b), float(a @ a), float(b @ b)
    if aa == 0:
        return b
    if bb == 0:
        return a
    return (1 - dot / (2 * aa)) * a + (1 - dot / (2 * bb)) * b


def test_adasum_combines_the_gradients_by_the_formula():
    model = torch.nn.Linear(4, 1, bias=False).double()
    if hvd.size() & (hvd.size() - 1):
        with pytest.raises(ValueError, match="power-of-two"):
            hvd.DistributedOptimizer(sgd(model), op=hvd.Adasum,
                                     named_parameters=model.named_parameters())
        return
    if hvd.size() != 2:
        pytest.skip("the two-rank formula")
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.5, -1.0, 2.0, 0.25]],
                                        dtype=torch.float64))
    start = model.weight.detach().flatten().clone()
    xs = [torch.tensor([[1.0, 2.0, 0.0, -1.0]], dtype=torch.float64),
          torch.tensor([[0.5, -1.0, 3.0, 2.0]], dtype=torch.float64)]
    # Each rank's gradient of (w . x)^2 is 2 (w . x) x.
    grads = [2 * float(start @ x.flatten()) * x.flatten() for x in xs]
    optimizer = hvd.DistributedOptimizer(
        torch.optim.SGD(model.parameters(), lr=0.1), op=hvd.Adasum,
        named_parameters=model.named_parameters())
    optimizer.zero_grad()
    model(xs[hvd.rank()]).pow(2).sum().backward()
    optimizer.step()
    expected = start - 0.1 * adasum_pair(grads[0], grads[1])
    assert torch.allclose(model.weight.detach().flatten(), expected,
                          rtol=1e-12, atol=1e-14)
    averaged = start - 0.1 * (grads[0] + grads[1]) / 2
    assert not torch.allclose(expected, averaged)


def test_unnamed_parameters_are_numbered():
    model = make_mlp()
    optimizer = hvd.DistributedOptimizer(sgd(model))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for step in range(2):
            optimizer.zero_grad()
            x, y = batch(step)
            torch.nn.functional.mse_loss(model(mine(x)), mine(y)).backward()
            optimizer.step()
    assert_identical_across_ranks(flat(model))
