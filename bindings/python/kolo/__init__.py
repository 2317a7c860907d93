"""kolo: a collective-communication runtime for data-parallel training.

The Python package's one module so far is kolo.torch: Horovod's PyTorch API
on kolo's runtime (``import kolo.torch as hvd``). Launch scripts with kolorun
(or mpirun), as C++ programs are launched.
"""
