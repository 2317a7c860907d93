#!/usr/bin/env python3
"""Checks chexnet_train's --sample-log: every epoch saw every sample once.

Usage: check_sample_log.py PREFIX --samples N [--epochs E]

Reads every PREFIX.rank<r>.restart<n> file. Each line is
  restart=<n> epoch=<e> step=<global step> rank=<r> world=<W> indices=<i,j,...>
A relaunch resumes from the last checkpoint, so the steps a failed launch
took after it were lost and are taken again: the entries of a launch at or
after the first step that any later launch logged are dropped. Then, for
every epoch (0..E-1 with --epochs, else every epoch logged), each of the
samples 0..N-1 must appear exactly once, and every step must have one
entry per rank of its world. Exits 0 when all holds, else 1 with a line
naming the epoch and the sample (or step) at fault.
"""

import argparse
import collections
import glob
import re
import sys

LINE = re.compile(
    r"^restart=(\d+) epoch=(\d+) step=(\d+) rank=(\d+) world=(\d+) "
    r"indices=([0-9,]*)$")
NAME = re.compile(r"\.rank(\d+)\.restart(\d+)$")


def read_entries(prefix):
    entries = []
    files = glob.glob(glob.escape(prefix) + ".rank*.restart*")
    if not files:
        sys.exit(f"check_sample_log: no files {prefix}.rank*.restart*")
    for path in sorted(files):
        if not NAME.search(path):
            continue
        with open(path) as f:
            for number, line in enumerate(f, 1):
                match = LINE.match(line.rstrip("\n"))
                if not match:
                    sys.exit(f"check_sample_log: {path}:{number}: "
                             f"malformed line {line!r}")
                restart, epoch, step, rank, world = map(int, match.groups()[:5])
                indices = [int(i) for i in match.group(6).split(",") if i]
                entries.append((restart, epoch, step, rank, world, indices))
    return entries


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("prefix")
    parser.add_argument("--samples", type=int, required=True)
    parser.add_argument("--epochs", type=int)
    args = parser.parse_args()

    entries = read_entries(args.prefix)
    first_step = {}
    for restart, _, step, _, _, _ in entries:
        first_step[restart] = min(step, first_step.get(restart, step))
    # The steps a launch took at or after a later launch's first step were
    # lost with it (the later launch resumed from an earlier checkpoint).
    cutoff = {}
    for restart in first_step:
        later = [s for r, s in first_step.items() if r > restart]
        cutoff[restart] = min(later) if later else None
    kept = [e for e in entries
            if cutoff[e[0]] is None or e[2] < cutoff[e[0]]]

    ranks_by_step = collections.defaultdict(set)
    counts = collections.defaultdict(collections.Counter)
    for restart, epoch, step, rank, world, indices in kept:
        key = (epoch, step)
        if rank in {r for r, _ in ranks_by_step[key]}:
            sys.exit(f"check_sample_log: epoch {epoch}, step {step}: rank "
                     f"{rank} logged twice")
        ranks_by_step[key].add((rank, world))
        counts[epoch].update(indices)
    for (epoch, step), ranks in sorted(ranks_by_step.items()):
        worlds = {w for _, w in ranks}
        if len(worlds) != 1 or len(ranks) != next(iter(worlds)):
            sys.exit(f"check_sample_log: epoch {epoch}, step {step}: "
                     f"entries from ranks {sorted(r for r, _ in ranks)} of "
                     f"worlds {sorted(worlds)}")

    epochs = range(args.epochs) if args.epochs is not None else sorted(counts)
    for epoch in epochs:
        seen = counts.get(epoch, collections.Counter())
        for sample in range(args.samples):
            if seen[sample] != 1:
                sys.exit(f"check_sample_log: epoch {epoch}: sample {sample} "
                         f"trained {seen[sample]} times")
        extra = sorted(s for s in seen if not 0 <= s < args.samples)
        if extra:
            sys.exit(f"check_sample_log: epoch {epoch}: sample {extra[0]} is "
                     f"outside 0..{args.samples - 1}")
    steps = len(ranks_by_step)
    print(f"check_sample_log: {len(list(epochs))} epochs, {steps} steps: "
          f"every sample of 0..{args.samples - 1} once per epoch")


if __name__ == "__main__":
    main()
