"""kolo.torch: Horovod's PyTorch API on kolo's runtime.

A training script written for Horovod runs after changing its import:

    import kolo.torch as hvd

    hvd.init()
    optimizer = hvd.DistributedOptimizer(
        optimizer, named_parameters=model.named_parameters())
    hvd.broadcast_parameters(model.state_dict(), root_rank=0)
    hvd.broadcast_optimizer_state(optimizer, root_rank=0)

and is launched like any kolo program: kolorun -np 4 python3 train.py.
Tensors live in CPU memory (CUDA tensors need a kolo built with NCCL) and
may have any dtype kolo supports: uint8, int8, int32, int64, float16,
bfloat16, float32, float64, bool.

Process sets, as Horovod's: collectives among some of the ranks.

    evens = hvd.add_process_set(range(0, hvd.size(), 2))  # on every rank
    if evens.included():
        hvd.allreduce(tensor, process_set=evens)

Every collective, broadcast function and DistributedOptimizer takes
process_set= (global_process_set, every rank, by default); sets can also be
given to hvd.init(process_sets=[...]) and are removed with
hvd.remove_process_set().

Not provided yet: SyncBatchNorm, elastic training (kolo.torch.elastic), and
is_homogeneous.
"""

from kolo.torch.collectives import (
    Adasum, Average, HorovodInternalError, Max, Min, ProcessSet, Product, Sum,
    add_process_set, allgather, allgather_async, allreduce, allreduce_,
    allreduce_async, allreduce_async_, alltoall, alltoall_async, barrier,
    broadcast, broadcast_, broadcast_async, broadcast_async_, ccl_built,
    cross_rank, cross_size, cuda_built, ddl_built, global_process_set,
    gloo_built, gloo_enabled, grouped_allgather, grouped_allgather_async,
    grouped_allreduce, grouped_allreduce_, grouped_allreduce_async,
    grouped_allreduce_async_, grouped_reducescatter,
    grouped_reducescatter_async, init, is_initialized, join, local_rank,
    local_size, mpi_built, mpi_enabled, mpi_threads_supported, nccl_built,
    poll, rank, reducescatter, reducescatter_async, remove_process_set,
    rocm_built, shutdown, size, sparse_allreduce_async, start_timeline,
    stop_timeline, synchronize)
from kolo.torch.compression import Compression
from kolo.torch.functions import (allgather_object, broadcast_object,
                                  broadcast_optimizer_state,
                                  broadcast_parameters)
from kolo.torch.optimizer import DistributedOptimizer
