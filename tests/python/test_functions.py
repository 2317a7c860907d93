"""kolo.torch's state broadcasts: broadcast_parameters (state_dict and
named_parameters), broadcast_optimizer_state (before and after the first
step, options included), broadcast_object and allgather_object. Each rank
rebuilds the root's state locally to know the expected values."""

import pytest
import torch

import kolo.torch as hvd


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(4, 6)
        self.bn = torch.nn.BatchNorm1d(6)
        self.fc2 = torch.nn.Linear(6, 2)

    def forward(self, x):
        return self.fc2(torch.relu(self.bn(self.fc1(x))))


def net_of(r):
    """Rank r's model: its own seed, r + 1 training passes of BatchNorm."""
    torch.manual_seed(100 + r)
    net = Net()
    for _ in range(r + 1):
        net(torch.randn(5, 4))
    return net


def test_broadcast_parameters_state_dict_with_buffers():
    root = hvd.size() - 1
    net = net_of(hvd.rank())
    hvd.broadcast_parameters(net.state_dict(), root_rank=root)
    expected = net_of(root).state_dict()
    for name, tensor in net.state_dict().items():
        assert torch.equal(tensor, expected[name]), name
    assert net.bn.num_batches_tracked.item() == root + 1
    assert net.fc1.weight.requires_grad


def test_broadcast_parameters_named_parameters_and_lists():
    net = net_of(hvd.rank())
    hvd.broadcast_parameters(net.named_parameters(), root_rank=0,
                             prefix="named.")
    for name, tensor in net_of(0).named_parameters():
        assert torch.equal(dict(net.named_parameters())[name], tensor), name
    tensors = [torch.full((2,), float(hvd.rank()))]
    hvd.broadcast_parameters(tensors, root_rank=hvd.size() - 1)
    assert torch.equal(tensors[0], torch.full((2,), hvd.size() - 1.0))
    with pytest.raises(ValueError, match="invalid params"):
        hvd.broadcast_parameters(torch.zeros(2), root_rank=0)


def optimizer_of(r, kind):
    """Rank r's optimizer: its own learning rate and r steps."""
    net = net_of(0)
    lr = 0.1 * (r + 1)
    optimizer = (torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
                 if kind == "sgd" else torch.optim.Adam(net.parameters(), lr=lr))
    torch.manual_seed(7 + r)
    for _ in range(r):
        optimizer.zero_grad()
        net(torch.randn(5, 4)).pow(2).sum().backward()
        optimizer.step()
    return optimizer


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_broadcast_optimizer_state(kind):
    for root in (0, hvd.size() - 1):
        optimizer = optimizer_of(hvd.rank(), kind)
        hvd.broadcast_optimizer_state(optimizer, root_rank=root)
        expected = optimizer_of(root, kind).state_dict()
        actual = optimizer.state_dict()
        assert actual["param_groups"] == expected["param_groups"]
        assert actual["state"].keys() == expected["state"].keys()
        for index, state in expected["state"].items():
            for key, value in state.items():
                mine = actual["state"][index][key]
                if isinstance(value, torch.Tensor):
                    assert torch.equal(mine, value), (index, key)
                else:
                    assert mine == value, (index, key)


def test_broadcast_optimizer_state_rejects_lbfgs():
    optimizer = torch.optim.LBFGS(Net().parameters())
    with pytest.raises(ValueError, match="LBFGS"):
        hvd.broadcast_optimizer_state(optimizer, root_rank=0)


def test_broadcast_object():
    obj = {"rank": hvd.rank(), "tensor": torch.arange(3) * hvd.rank(),
           "text": "x" * (10 * hvd.rank() + 1)}
    for root in range(hvd.size()):
        got = hvd.broadcast_object(obj, root_rank=root)
        assert got["rank"] == root
        assert torch.equal(got["tensor"], torch.arange(3) * root)
        assert got["text"] == "x" * (10 * root + 1)
    assert hvd.broadcast_object(None) is None


def test_allgather_object():
    obj = {"rank": hvd.rank(), "items": list(range(hvd.rank() * 5))}
    gathered = hvd.allgather_object(obj)
    assert gathered == [{"rank": r, "items": list(range(r * 5))}
                        for r in range(hvd.size())]
    assert hvd.allgather_object(hvd.rank(), name="ranks") == list(
        range(hvd.size()))
