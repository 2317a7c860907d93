#!/usr/bin/env bash
# Produces the README's collective-performance table: kolo_bench on 2 ranks
# of this host, float32 sum, 8 B .. 64 MiB, every collective, kolo once per
# backend (each one this build lacks is reported and skipped), then the
# MPI_Allreduce, Gloo and memory-bandwidth baselines and the issue-6
# targets, all in one run. Results: out/bench/collectives.txt (the tables)
# and out/bench/collectives.json.
#
# Environment (all optional):
#   KOLO_BUILD_DIR       build tree with bench/kolo_bench (default build-bench;
#                        configured and built with -j1 when missing)
#   KOLO_BENCH_OUT       output directory (default out/bench)
#   KOLO_BENCH_BACKENDS  kolo backends to run (default auto,shm,ring,hierarchical,mpi)
#   KOLO_BENCH_NP        ranks (default 2)
#   MPIRUN_ARGS          extra mpirun arguments (default: "--mca mpi_yield_when_idle 1"
#                        when this host has fewer than 2 cores per rank)
# Further arguments go to kolo_bench, e.g. -n 50 or --collective allreduce.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${KOLO_BUILD_DIR:-$repo/build-bench}
out=${KOLO_BENCH_OUT:-$repo/out/bench}
backends=${KOLO_BENCH_BACKENDS:-auto,shm,ring,hierarchical,mpi}
np=${KOLO_BENCH_NP:-2}
bench=$build/bench/kolo_bench

if [[ ! -x $bench ]]; then
  cmake -S "$repo" -B "$build" -DKOLO_WITH_TORCH=OFF -DKOLO_BUILD_BENCH=ON
  cmake --build "$build" --target kolo_bench -j1
fi
mkdir -p "$out"

# mpirun refuses root unless told; containers often run as root.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

# Each rank runs two busy threads (the benchmark's and kolo's background
# thread). With fewer cores than that, a rank spinning in MPI while its peer
# is descheduled costs a whole time slice per call (milliseconds instead of
# microseconds, at random): make idle MPI ranks yield instead.
if [[ -z ${MPIRUN_ARGS+x} && $(nproc) -lt $((2 * np)) ]]; then
  MPIRUN_ARGS="--mca mpi_yield_when_idle 1"
fi

{
  echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(uname -n): $(nproc) CPUs," \
       "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "# git $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)," \
       "load average $(cut -d' ' -f1-3 /proc/loadavg), mpirun ${MPIRUN_ARGS:-}"
  # shellcheck disable=SC2086 # MPIRUN_ARGS is a list of arguments.
  mpirun --oversubscribe --bind-to none ${MPIRUN_ARGS:-} -np "$np" \
    "$bench" -b 8 -e 64M -f 2 -n 20 -w 5 -c 1 -d float32 -o sum \
    --backends "$backends" --json "$out/collectives.json" "$@"
} 2>&1 | tee "$out/collectives.txt"
