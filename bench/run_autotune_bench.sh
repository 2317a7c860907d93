#!/usr/bin/env bash
# Many small tensors, default settings against KOLO_AUTOTUNE=1, in one run.
# Two pretend hosts of one rank each (KOLO_HOSTNAME), so negotiation crosses
# "hosts" as in a multi-machine job (no shared-memory doorbells), which is
# where the cycle time matters. Writes out/bench/autotune.txt.
# usage: bench/run_autotune_bench.sh [BUILD_DIR [autotune_bench flags...]]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
shift || true
out=$root/out/bench
mkdir -p "$out"
bin=$build/bench/autotune_bench
flags=("$@")
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
run() {
  mpirun --oversubscribe --bind-to none --mca mpi_yield_when_idle 1 \
    -np 1 -x KOLO_HOSTNAME=hostA -x KOLO_AUTOTUNE="$1" "$bin" "${flags[@]}" : \
    -np 1 -x KOLO_HOSTNAME=hostB -x KOLO_AUTOTUNE="$1" "$bin" "${flags[@]}" 2>&1 |
    tee -a "$out/autotune.txt" | grep -E '^autotune_bench|autotune chose'
}
: >"$out/autotune.txt"
default=$(run 0 | grep '^autotune_bench' | sed -E 's/.*: ([0-9.]+) steps\/s.*/\1/')
tuned_output=$(run 1)
echo "$tuned_output"
tuned=$(echo "$tuned_output" | grep '^autotune_bench' | sed -E 's/.*: ([0-9.]+) steps\/s.*/\1/')
ratio=$(awk -v a="$tuned" -v b="$default" 'BEGIN { printf "%.2f", a / b }')
echo "defaults: $default steps/s; autotune: $tuned steps/s; ratio ${ratio}x" |
  tee -a "$out/autotune.txt"
