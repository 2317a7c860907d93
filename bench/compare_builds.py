#!/usr/bin/env python3
"""Before/after figures for a change, from one run: alternates kolo_bench
configurations (builds of two commits, environment settings, Open MPI's own
collectives) over rounds, np 2 on this host, under each binding, and prints
a Markdown table of the median iteration (µs) per collective, size and form,
median over rounds (min–max). The order of the configurations is reversed
every other round. Every run checks its results (#wrong must be 0: a wrong
result stops the comparison).

  bench/compare_builds.py --rounds 8 --collectives broadcast,allgather \\
      --sizes 16K:1M --bindings none,core \\
      mpi=build/bench/kolo_bench:--mpi \\
      before=../before/build/bench/kolo_bench \\
      after=build/bench/kolo_bench \\
      single_copy=build/bench/kolo_bench:KOLO_SHM_SINGLE_COPY_BYTES=65536

A configuration is NAME=KOLO_BENCH[:VAR=VALUE...][:--mpi]: the binary (a
kolo_bench finds the libkolo of its own build tree), environment variables
for the ranks, and --mpi to time Open MPI's collectives instead of kolo's
(kolo_bench --no-kolo --baselines mpi).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile


def parse_config(text):
    name, _, rest = text.partition("=")
    if not name or not rest:
        raise argparse.ArgumentTypeError(
            f"configuration '{text}' is not NAME=KOLO_BENCH[:VAR=VALUE...][:--mpi]")
    parts = rest.split(":")
    binary, env, mpi = parts[0], [], False
    for part in parts[1:]:
        if part == "--mpi":
            mpi = True
        elif "=" in part:
            env.append(part)
        elif part:
            raise argparse.ArgumentTypeError(
                f"configuration '{name}': '{part}' is neither VAR=VALUE nor --mpi")
    if not os.access(binary, os.X_OK):
        raise argparse.ArgumentTypeError(
            f"configuration '{name}': {binary} is not an executable")
    return name, binary, env, mpi


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configs", nargs="+", type=parse_config)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--collectives", default="allreduce")
    parser.add_argument("--sizes", default="4K:1M",
                        help="MIN:MAX, kolo_bench's -b and -e (default 4K:1M)")
    parser.add_argument("--factor", default="4", help="kolo_bench's -f")
    parser.add_argument("--iters", default="200", help="kolo_bench's -n")
    parser.add_argument("--warmup", default="20", help="kolo_bench's -w")
    parser.add_argument("--bindings", default="none,core")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    low, _, high = args.sizes.partition(":")
    if not low or not high:
        parser.error(f"--sizes '{args.sizes}' is not MIN:MAX")
    bindings = args.bindings.split(",")
    for binding in bindings:
        if binding not in ("none", "core"):
            parser.error(f"binding '{binding}' is neither none nor core")
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1",
               OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        out = os.path.join(scratch, "rows.json")
        for r in range(args.rounds):
            order = args.configs if r % 2 == 0 else args.configs[::-1]
            for binding in bindings:
                for name, binary, variables, mpi in order:
                    command = ["mpirun", "-np", "2", "--bind-to", binding]
                    for variable in variables:
                        command += ["-x", variable]
                    command += [binary, "--collective", args.collectives,
                                "-b", low, "-e", high, "-f", args.factor,
                                "-n", args.iters, "-w", args.warmup, "-c", "1",
                                "--json", out]
                    command += (["--no-kolo", "--baselines", "mpi"] if mpi
                                else ["--baselines", "none"])
                    run = subprocess.run(command, env=env, capture_output=True,
                                         text=True)
                    if run.returncode != 0:
                        sys.exit(f"compare_builds: {name} (--bind-to {binding}) "
                                 f"failed with {run.returncode}:\n{run.stderr[-3000:]}")
                    data = json.load(open(out))
                    if data.get("wrong_total", 0) != 0:
                        sys.exit(f"compare_builds: {name} (--bind-to {binding}) "
                                 "produced wrong results")
                    for row in data["rows"]:
                        for form in ("out_of_place", "in_place"):
                            value = row.get(form)
                            if value:
                                key = (row["collective"], row["size_bytes"],
                                       form.replace("_", " "), binding, name)
                                results.setdefault(key, []).append(
                                    value["median_us"])
    names = [config[0] for config in args.configs]
    print(f"kolo_bench np 2, {args.rounds} alternating rounds, "
          f"-n {args.iters} -w {args.warmup}; median iteration (µs), "
          "median over rounds (min–max)\n")
    print("| collective | size | form | binding | " + " | ".join(names) + " |")
    print("|---|---:|---|---|" + "---:|" * len(names))
    for key in sorted({k[:4] for k in results}):
        cells = []
        for name in names:
            values = results.get(key + (name,), [])
            cells.append(f"{statistics.median(values):.1f} "
                         f"({min(values):.1f}–{max(values):.1f})"
                         if values else "–")
        print(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | "
              + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
