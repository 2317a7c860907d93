#!/usr/bin/python3
"""ddp_baseline.py: PyTorch DDP's training throughput for bench/train_bench.

The baseline of kolo's train_bench: torchvision's densenet121(num_classes=14)
trained with DistributedDataParallel over the Gloo backend (DDP's defaults:
25 MiB gradient buckets allreduced during backward, buffers broadcast from
rank 0 before every forward), on the same synthetic input, optimizer, sizes
and threads per rank as train_bench, with the same timed window (a barrier
before the first and after the last timed step) and the same report: rank 0
prints it, --json writes it.

Start one process per rank yourself (Debian's torchrun is broken here):
  MASTER_ADDR=127.0.0.1 MASTER_PORT=29500 WORLD_SIZE=2 RANK=r \
    /usr/bin/python3 bench/ddp_baseline.py --image-size 64 ...
bench/run_train_bench.sh does that.
"""

import argparse
import json
import os
import socket
import statistics
import sys
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
import torchvision

NUM_FINDINGS = 14


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="densenet121",
                        choices=["densenet121", "vgg16"])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16,
                        help="images per rank per step")
    parser.add_argument("--warmup-steps", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads per rank")
    parser.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"])
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", default="")
    parser.add_argument("--fp16-hook", action="store_true",
                        help="allreduce float16 copies of the gradients "
                        "(DDP's fp16_compress_hook)")
    return parser.parse_args(argv)


def timed_steps(args, one_step, barrier):
    """Runs args.warmup_steps + args.steps steps, timing the last args.steps
    between two barriers. one_step() runs one step and returns its phase
    times (forward+backward, gradient sync wait or None, optimizer).
    Returns (window seconds, per-step lists, process CPU s, main thread CPU
    s)."""
    step_s, forward_backward_s, sync_s, optimizer_s = [], [], [], []
    window_start = process_cpu_start = thread_cpu_start = 0.0
    for step in range(args.warmup_steps + args.steps):
        if step == args.warmup_steps:
            barrier()
            window_start = time.perf_counter()
            process_cpu_start = time.process_time()
            thread_cpu_start = time.thread_time()
        t0 = time.perf_counter()
        forward_backward, sync, optimizer = one_step()
        if step >= args.warmup_steps:
            step_s.append(time.perf_counter() - t0)
            forward_backward_s.append(forward_backward)
            sync_s.append(sync)
            optimizer_s.append(optimizer)
    process_cpu = time.process_time() - process_cpu_start
    thread_cpu = time.thread_time() - thread_cpu_start
    barrier()
    window = time.perf_counter() - window_start
    return (window, (step_s, forward_backward_s, sync_s, optimizer_s),
            process_cpu, thread_cpu)


def phase_row(args, phases, process_cpu, thread_cpu):
    """This rank's phase means and CPU seconds per step, as train_bench
    gathers them (gradient sync -1 when it happens inside backward)."""
    step_s, forward_backward_s, sync_s, optimizer_s = phases
    sync = -1.0 if sync_s[0] is None else statistics.fmean(sync_s)
    return torch.tensor([[statistics.fmean(step_s),
                          statistics.fmean(forward_backward_s), sync,
                          statistics.fmean(optimizer_s),
                          process_cpu / args.steps, thread_cpu / args.steps]],
                        dtype=torch.float64)


def report(args, impl, description, window, phases, gathered, extra):
    """Rank 0's printout and --json report, in train_bench's format."""
    step_s = phases[0]
    size = len(gathered)
    images_per_s = args.steps * args.batch_size * size / window
    load = os.getloadavg()[0]
    print(f"# train_bench {impl} | {args.arch} | {args.image_size} px | "
          f"batch {args.batch_size} per rank, {args.batch_size * size} "
          f"global | {size} rank{'' if size == 1 else 's'} x "
          f"{args.threads} thread{'' if args.threads == 1 else 's'} "
          f"(torch.get_num_threads() = {torch.get_num_threads()}) | "
          f"{args.optimizer} lr {args.lr:g} | {description} | torch "
          f"{torch.__version__} | host {socket.gethostname()}")
    print(f"# steps: {args.warmup_steps} warm-up + {args.steps} timed; "
          f"load average {load:.2f}")
    print(f"step time (s): median {statistics.median(step_s):.4f}  "
          f"mean {statistics.fmean(step_s):.4f}  min {min(step_s):.4f}  "
          f"max {max(step_s):.4f}")
    print("rank | step (s) | forward+backward (s) | gradient sync wait (s)"
          " | optimizer (s) | CPU s/step: process | main thread")
    for r, row in enumerate(gathered):
        s, fb, sync, opt, pcpu, tcpu = row.tolist()
        sync_text = "(in backward)" if sync < 0 else f"{sync:.4f}"
        print(f"{r:4d} | {s:8.4f} | {fb:20.4f} | {sync_text:>22} | "
              f"{opt:13.4f} | {pcpu:19.4f} | {tcpu:11.4f}")
    print(f"images/s: {images_per_s:.2f}")
    sys.stdout.flush()
    if not args.json:
        return
    result = {
        "impl": impl,
        "arch": args.arch,
        "np": size,
        "threads": args.threads,
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "global_batch": args.batch_size * size,
        "optimizer": args.optimizer,
        "lr": args.lr,
        "overlap": True,
        "warmup_steps": args.warmup_steps,
        "steps": args.steps,
        "window_s": window,
        "images_per_s": images_per_s,
        "step_s": {"median": statistics.median(step_s),
                   "mean": statistics.fmean(step_s),
                   "min": min(step_s), "max": max(step_s)},
        "step_times_rank0_s": step_s,
        "ranks": [{"rank": r,
                   "step_s": row[0].item(),
                   "forward_backward_s": row[1].item(),
                   "gradient_sync_s": None if row[2] < 0 else row[2].item(),
                   "optimizer_s": row[3].item(),
                   "process_cpu_s": row[4].item(),
                   "main_thread_cpu_s": row[5].item()}
                  for r, row in enumerate(gathered)],
        "torch_version": torch.__version__,
        "load_average": load,
        "host": socket.gethostname(),
        **extra,
    }
    with open(args.json, "w") as out:
        json.dump(result, out, indent=2)
        out.write("\n")


def make_model_and_batch(args, rank):
    """torchvision's model and this rank's synthetic batch, as train_bench
    makes them."""
    torch.manual_seed(args.seed)
    model = getattr(torchvision.models, args.arch)(num_classes=NUM_FINDINGS)
    model.train()
    torch.manual_seed(args.seed + 1000 + rank)
    images = torch.randn(args.batch_size, 3, args.image_size, args.image_size)
    labels = torch.randint(0, 2, (args.batch_size, NUM_FINDINGS)).float()
    return model, images, labels


def make_optimizer(args, parameters):
    if args.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=args.lr)
    return torch.optim.SGD(parameters, lr=args.lr, momentum=0.9)


def main(argv):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    dist.init_process_group("gloo")  # MASTER_ADDR/PORT, RANK, WORLD_SIZE
    rank = dist.get_rank()
    size = dist.get_world_size()

    model, images, labels = make_model_and_batch(args, rank)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    if args.fp16_hook:
        from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
        ddp.register_comm_hook(None, default_hooks.fp16_compress_hook)
    optimizer = make_optimizer(args, ddp.parameters())

    def one_step():
        t0 = time.perf_counter()
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(ddp(images), labels)
        loss.backward()  # returns once every gradient bucket is allreduced
        t1 = time.perf_counter()
        optimizer.step()
        return t1 - t0, None, time.perf_counter() - t1

    window, phases, process_cpu, thread_cpu = timed_steps(
        args, one_step, dist.barrier)
    mine = phase_row(args, phases, process_cpu, thread_cpu)
    gathered = [torch.zeros_like(mine) for _ in range(size)]
    dist.all_gather(gathered, mine)
    if rank == 0:
        report(args, "ddp", "gloo, DDP defaults (bucket 25 MiB, overlap in "
               "backward)" + (", fp16_compress_hook" if args.fp16_hook
                              else ""),
               window, phases, [g[0] for g in gathered],
               {"backend": "gloo",
                "compression": "fp16" if args.fp16_hook else "none"})
    # Every rank is done (rank 0 has written its report) before any leaves.
    # Then leave without Gloo's teardown: across the emulated cluster's
    # shaped links destroy_process_group (or the interpreter's exit after
    # it) now and then never returned on one rank.
    dist.barrier()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
