#!/usr/bin/env bash
# kolo against the MPIs a user already has, every collective, np 2 on one
# host (issue 13's table): kolo_bench measures kolo (its automatic plane)
# beside Open MPI's own collectives with their default algorithm choice and
# Gloo's allreduce; the same kolo_bench built against MPICH
# (KOLO_MPI=mpich, a build tree of its own) measures MPICH's collectives;
# and a search runs Open MPI's tuned component with each of its algorithms
# forced (coll_tuned_<collective>_algorithm), so that the "Open MPI tuned"
# column is the best algorithm at each size. Allreduce is measured from
# 4 KiB to 256 MiB, the other collectives from 64 KiB to 64 MiB, under
# `--bind-to none` and Open MPI's default core binding; the kolo, Open MPI
# default and MPICH runs alternate over --rounds rounds (the order reversed
# every other round), the tuned search runs once per binding after them.
# Results: out/bench/mpi_comparison/{*.json,log.txt,table.md}; the table is
# written by bench/mpi_comparison_report.py (medians over rounds, spread
# min–max, every figure a median iteration; #wrong must be 0 everywhere).
#
#   bench/run_mpi_comparison.sh [--rounds N] [--bindings "none core"]
#                               [--iters N] [--warmup N] [--no-tuned]
#                               [--no-mpich]
#
# --no-tuned and --no-mpich skip those baselines and keep their results from
# an earlier run in the output directory (the report then mixes runs: say so
# where the table is quoted).
#
# Environment: KOLO_BUILD_DIR (default build), KOLO_MPICH_BUILD_DIR (default
# build-mpich; configured with KOLO_MPI=mpich and built when missing),
# KOLO_BENCH_OUT (default out/bench/mpi_comparison).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rounds=3 bindings="none core" iters=10 warmup=5 tuned=1 mpich=1
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --bindings) bindings=$2; shift 2 ;;
    --iters) iters=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --no-tuned) tuned=0; shift ;;
    --no-mpich) mpich=0; shift ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "run_mpi_comparison: unknown argument $1" >&2; exit 2 ;;
  esac
done
case $rounds in ''|*[!0-9]*|0) echo "run_mpi_comparison: --rounds must be a positive integer, not '$rounds'" >&2; exit 2 ;; esac
case $iters in ''|*[!0-9]*|0) echo "run_mpi_comparison: --iters must be a positive integer, not '$iters'" >&2; exit 2 ;; esac
case $warmup in ''|*[!0-9]*) echo "run_mpi_comparison: --warmup must be a non-negative integer, not '$warmup'" >&2; exit 2 ;; esac
for b in $bindings; do
  case $b in none|core) ;; *) echo "run_mpi_comparison: binding '$b' is neither none nor core" >&2; exit 2 ;; esac
done

build=${KOLO_BUILD_DIR:-$repo/build}
mpich_build=${KOLO_MPICH_BUILD_DIR:-$repo/build-mpich}
out=${KOLO_BENCH_OUT:-$repo/out/bench/mpi_comparison}
bench=$build/bench/kolo_bench
mpich_bench=$mpich_build/bench/kolo_bench
if [ ! -x "$bench" ]; then
  cmake -S "$repo" -B "$build" -DKOLO_BUILD_BENCH=ON
  cmake --build "$build" --target kolo_bench -j1
fi
if [ "$mpich" = 1 ] && [ ! -x "$mpich_bench" ]; then
  cmake -S "$repo" -B "$mpich_build" -DKOLO_MPI=mpich -DKOLO_WITH_TORCH=OFF -DKOLO_BUILD_BENCH=ON
  cmake --build "$mpich_build" --target kolo_bench -j1
fi
mkdir -p "$out"
# --no-tuned / --no-mpich keep those results of an earlier run in $out (they
# do not depend on kolo), so that kolo's side can be measured again alone.
rm -f "$out"/ompi-*.json
[ "$tuned" = 0 ] || rm -f "$out"/tuned-*.json
[ "$mpich" = 0 ] || rm -f "$out"/mpich-*.json
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# The same measuring flags for every implementation.
# Five untimed iterations first: a tensor kolo has not seen is negotiated
# through rank 0, the second time it is a cache hit that gets a fast id, and
# from then on it runs in the fast lane (as every step of a training job).
common=(-n "$iters" -w "$warmup" -c 1 -d float32 -o sum)
allreduce_sizes=(--collective allreduce -b 4K -e 256M -f 4)
other_sizes=(--collective allgather,broadcast,reducescatter,alltoall -b 64K -e 64M -f 4)

# run NAME TIMEOUT COMMAND...: one benchmark, its tables into the log; a
# failed or hung run fails the whole comparison (no silent gaps).
run() {
  local name=$1 limit=$2
  shift 2
  echo "# $(date -u +%T) $name: $*"
  if ! timeout "$limit" "$@" --json "$out/$name.json"; then
    echo "run_mpi_comparison: $name failed (see above)" >&2
    exit 1
  fi
}

ompi() {  # ompi BINDING NAME [mpirun args] -- kolo_bench args
  local bind=$1 name=$2
  shift 2
  local mpirun_args=()
  while [ "$1" != -- ]; do mpirun_args+=("$1"); shift; done
  shift
  run "$name" 900 mpirun -np 2 --bind-to "$bind" "${mpirun_args[@]}" "$bench" "$@"
}

mpich_run() {  # mpich_run BINDING NAME kolo_bench args
  local bind=$1 name=$2
  shift 2
  run "$name" 900 mpiexec.mpich -n 2 -bind-to "$bind" "$mpich_bench" "$@"
}

{
  echo "# $(date -u +%FT%TZ) $(uname -n): $(nproc) CPUs," \
       "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')," \
       "git $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)," \
       "load $(cut -d' ' -f1-3 /proc/loadavg)"
  for round in $(seq "$rounds"); do
    order=(ompi mpich)
    if [ $((round % 2)) = 0 ]; then order=(mpich ompi); fi
    for bind in $bindings; do
      for lib in "${order[@]}"; do
        if [ "$lib" = ompi ]; then
          ompi "$bind" "ompi-$bind-r$round-allreduce" -- "${common[@]}" \
            "${allreduce_sizes[@]}" --baselines mpi,gloo
          ompi "$bind" "ompi-$bind-r$round-others" -- "${common[@]}" \
            "${other_sizes[@]}" --baselines mpi
        elif [ "$mpich" = 1 ]; then
          mpich_run "$bind" "mpich-$bind-r$round-allreduce" "${common[@]}" \
            "${allreduce_sizes[@]}" --no-kolo --baselines mpi
          mpich_run "$bind" "mpich-$bind-r$round-others" "${common[@]}" \
            "${other_sizes[@]}" --no-kolo --baselines mpi
        fi
      done
    done
  done
  if [ "$tuned" = 1 ]; then
    # Open MPI 4.1's algorithm numbers (ompi_info --param coll tuned --level 9).
    declare -A algorithms=([allreduce]="1 2 3 4 5 6" [allgather]="1 2 3 4 5 6"
      [broadcast]="1 2 3 4 5 6 7 8 9" [reducescatter]="1 2 3 4" [alltoall]="1 2 3 4 5")
    declare -A mca=([allreduce]=allreduce [allgather]=allgather [broadcast]=bcast
      [reducescatter]=reduce_scatter_block [alltoall]=alltoall)
    for bind in $bindings; do
      for collective in allreduce allgather broadcast reducescatter alltoall; do
        if [ "$collective" = allreduce ]; then
          sizes=(-b 4K -e 256M -f 4)
        else
          sizes=(-b 64K -e 64M -f 4)
        fi
        for algorithm in ${algorithms[$collective]}; do
          ompi "$bind" "tuned-$bind-$collective-$algorithm" \
            --mca coll_tuned_use_dynamic_rules 1 \
            --mca "coll_tuned_${mca[$collective]}_algorithm" "$algorithm" -- \
            "${common[@]}" --collective "$collective" "${sizes[@]}" \
            --no-kolo --baselines mpi
        done
      done
    done
  fi
} 2>&1 | tee "$out/log.txt"
python3 "$repo/bench/mpi_comparison_report.py" "$out" | tee "$out/table.md"
