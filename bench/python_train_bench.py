#!/usr/bin/python3
"""python_train_bench.py: train_bench's Python twin, kolo.torch's
DistributedOptimizer.

torchvision's densenet121(num_classes=14) trained with Horovod's PyTorch API
on kolo (import kolo.torch as hvd; hvd.DistributedOptimizer: one allreduce
per gradient, started from an autograd hook during backward, fused by kolo),
on the same synthetic input, optimizer, sizes and threads per rank as
train_bench and ddp_baseline.py, with the same timed window and report
(bench/ddp_baseline.py's helpers). Phases as train_bench's: forward and
backward, the wait for the gradient allreduces (synchronize()), the update.

Launch it like any kolo program, with the build's Python package on the
path:
  PYTHONPATH=build/python kolorun -np 2 /usr/bin/python3 \\
    bench/python_train_bench.py --image-size 64 ...
bench/run_train_bench.sh does that.
"""

import sys
import time

import torch
import torch.nn.functional as F

import ddp_baseline
import kolo.torch as hvd


def main(argv):
    args = ddp_baseline.parse_args(argv)
    torch.set_num_threads(args.threads)
    hvd.init()
    model, images, labels = ddp_baseline.make_model_and_batch(args,
                                                              hvd.rank())
    optimizer = hvd.DistributedOptimizer(
        ddp_baseline.make_optimizer(args, model.parameters()),
        named_parameters=model.named_parameters())

    def one_step():
        t0 = time.perf_counter()
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(model(images), labels)
        loss.backward()  # each gradient's allreduce starts here
        t1 = time.perf_counter()
        optimizer.synchronize()
        t2 = time.perf_counter()
        with optimizer.skip_synchronize():
            optimizer.step()
        return t1 - t0, t2 - t1, time.perf_counter() - t2

    window, phases, process_cpu, thread_cpu = ddp_baseline.timed_steps(
        args, one_step, hvd.barrier)
    mine = ddp_baseline.phase_row(args, phases, process_cpu, thread_cpu)
    gathered = hvd.allgather(mine, name="python_train_bench.phases")
    if hvd.rank() == 0:
        ddp_baseline.report(
            args, "kolo-python",
            "kolo.torch DistributedOptimizer (allreduces start in backward)",
            window, phases, list(gathered), {"backend": "kolo"})
    hvd.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
