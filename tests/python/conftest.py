"""pytest setup for kolo.torch's tests, run on every rank under mpirun: one
kolo.init() before the tests and one shutdown() after them. Every rank runs
the same tests in the same order, so their collectives meet."""

import torch

import kolo.torch as hvd


def pytest_configure(config):
    # Ranks share the machine's cores: one intra-op thread each.
    torch.set_num_threads(1)
    hvd.init()


def pytest_unconfigure(config):
    hvd.shutdown()
