#!/bin/sh
# kolo_bench --device cuda on NP ranks: every collective, small sizes, split
# into 3 tensors (fusion), 2 check iterations against the reference, NCCL's
# collectives as the baseline. kolo_bench exits non-zero on any wrong element
# or failed operation.
# Usage: bench_gpu_test.sh MPIEXEC KOLO_BENCH NP
# Exit 77 (skipped) where the machine cannot run it, after checking that
# kolo_bench said why in its own words.
mpiexec=$1 bench=$2 np=$3
flags="--oversubscribe --bind-to none"  # Hydra (MPI_UNDER_TEST=mpich) needs none
[ "${MPI_UNDER_TEST:-openmpi}" = mpich ] && flags=""
# shellcheck disable=SC2086
out=$("$mpiexec" -np "$np" $flags "$bench" \
  --device cuda -b 8 -e 1M -f 32 -n 3 -w 1 -c 2 --tensors 3 2>&1)
rc=$?
printf '%s\n' "$out"
if [ $rc -ne 0 ]; then
  if printf '%s\n' "$out" | grep -q -- "--device cuda: no CUDA device is visible"; then
    echo "SKIPPED: no CUDA device here (kolo_bench exited $rc with the message above)"
    exit 77
  fi
  if printf '%s\n' "$out" | grep -q -- "NCCL needs one GPU per rank"; then
    echo "SKIPPED: fewer GPUs than the $np ranks (kolo_bench exited $rc with the message above)"
    exit 77
  fi
fi
exit $rc
