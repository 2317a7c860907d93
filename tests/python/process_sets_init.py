"""hvd.init(process_sets=[...]): the sets are added as kolo starts (Horovod's
static process sets), a set of every rank stands for the global set, and a
later init() adds only the sets not added yet. Run on every rank under
mpirun (it needs a process of its own: pytest's conftest calls init());
exits non-zero unless everything holds."""

import os

import torch

import kolo.torch as hvd


def check_collectives(process_set):
    """A sum of the global ranks among the members, on the members."""
    if not process_set.included():
        return
    summed = hvd.allreduce(torch.tensor([float(hvd.rank())]), op=hvd.Sum,
                           process_set=process_set)
    assert summed.item() == sum(process_set.ranks), (process_set, summed)


def main():
    torch.set_num_threads(1)
    size = int(os.environ.get("OMPI_COMM_WORLD_SIZE",
                              os.environ.get("PMI_SIZE", "0")))
    assert size >= 3, "run at 3 ranks or more"

    try:
        hvd.init(process_sets=[[0]])
        raise AssertionError("init() took a list of lists")
    except ValueError as error:
        assert "ProcessSet" in str(error), error
    assert not hvd.is_initialized()

    first = hvd.ProcessSet([0])
    rest = hvd.ProcessSet(range(1, size))
    everyone = hvd.ProcessSet(range(size))
    hvd.init(process_sets=[first, rest, everyone])
    assert hvd.global_process_set.ranks == list(range(size))
    assert everyone.process_set_id == 0
    assert 0 not in (first.process_set_id, rest.process_set_id)
    assert first.process_set_id != rest.process_set_id
    ids = (first.process_set_id, rest.process_set_id)
    assert hvd.allgather_object(ids) == [ids] * size
    for process_set in (first, rest, everyone):
        check_collectives(process_set)

    # Again: kolo keeps running; only the new set is added.
    ends = hvd.ProcessSet([0, size - 1])
    hvd.init(process_sets="dynamic")
    hvd.init(process_sets=[first, ends])
    assert ids == (first.process_set_id, rest.process_set_id)
    assert ends.process_set_id not in (None, 0) + ids
    check_collectives(ends)

    for process_set in (first, rest, ends):
        assert hvd.remove_process_set(process_set)
    rank = hvd.rank()
    hvd.shutdown()
    print(f"process_sets_init: rank {rank} ok", flush=True)


if __name__ == "__main__":
    main()
