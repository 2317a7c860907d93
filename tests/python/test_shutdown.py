"""Runs last (pytest orders files by name): after shutdown(), collectives
fail with HorovodInternalError, is_initialized() is False and the topology
calls raise ValueError, as in Horovod; shutdown() again is a no-op."""

import pytest
import torch

import kolo.torch as hvd


def test_shutdown():
    pending = hvd.allreduce_async(torch.ones(2), name="before.shutdown")
    hvd.synchronize(pending)
    hvd.shutdown()
    assert not hvd.is_initialized()
    with pytest.raises(ValueError, match="not been initialized"):
        hvd.rank()
    with pytest.raises(hvd.HorovodInternalError, match="shut down"):
        hvd.allreduce(torch.ones(2), name="after.shutdown")
    hvd.shutdown()
