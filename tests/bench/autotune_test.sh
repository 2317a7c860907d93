#!/usr/bin/env bash
# KOLO_AUTOTUNE=1 while every gradient is checked: two ranks run
# autotune_bench --verify (CNN-like sizes) until the search has finished.
# Passes when every average was right under every parameter setting the
# search tried, the search measured every fusion candidate, and it announced
# its choice before the warm-up ended.
# usage: autotune_test.sh MPIEXEC AUTOTUNE_BENCH
set -uo pipefail
mpiexec=$1
bench=$2
flags=(--oversubscribe --bind-to none)  # Hydra (MPI_UNDER_TEST=mpich) needs none
[ "${MPI_UNDER_TEST:-openmpi}" = mpich ] && flags=()
output=$(KOLO_AUTOTUNE=1 KOLO_LOG_LEVEL=info "$mpiexec" -np 2 "${flags[@]}" \
  "$bench" --verify \
  --tensors 64 --min-elements 16 --elements 65536 --gap-us 0 \
  --warmup-seconds 25 --seconds 1 2>&1)
rc=$?
printf '%s\n' "$output"
fail() { echo "autotune_test: FAIL: $*" >&2; exit 1; }
[[ $rc -eq 0 ]] || fail "autotune_bench exited with $rc"
scored=$(printf '%s\n' "$output" | grep -c 'autotune: fusion threshold [0-9]* bytes, cycle time')
# 7 fusion thresholds and 6 cycle times (the incumbent counts in both).
[[ $scored -ge 13 ]] || fail "the search scored $scored settings, expected at least 13"
chose=$(printf '%s\n' "$output" | grep -n 'autotune chose' | head -1 | cut -d: -f1)
warm=$(printf '%s\n' "$output" | grep -n 'warm-up done' | head -1 | cut -d: -f1)
[[ -n $chose ]] || fail "no 'autotune chose' line"
[[ -n $warm && $chose -lt $warm ]] || fail "the search did not finish within the warm-up"
echo "autotune_test: PASS ($scored settings scored, every gradient verified)"
