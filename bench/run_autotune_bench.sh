#!/usr/bin/env bash
# Defaults against KOLO_AUTOTUNE=1 on two many-small-tensors workloads, in
# one run, alternating the two settings (rounds x) so that a change in the
# machine's load hits both alike:
#   cnn:  160 gradients of 64..1M floats, log-uniform (most are small, a few
#         large dominate the bytes), all ready at once, 2 ranks on one host;
#   tiny: 64 gradients of 256 floats, 20 us of compute between them.
# Writes the full output to out/bench/autotune.txt and prints a summary.
# usage: bench/run_autotune_bench.sh [--rounds N] [BUILD_DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rounds=2
if [[ ${1:-} == --rounds ]]; then
  rounds=$2
  shift 2
fi
build=${1:-$root/build}
out=$root/out/bench
mkdir -p "$out"
log=$out/autotune.txt
bin=$build/bench/autotune_bench
[[ -x $bin ]] || { echo "run_autotune_bench: $bin not built" >&2; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

declare -A workload=(
  [cnn]="--tensors 160 --min-elements 64 --elements 1048576 --gap-us 0"
  [tiny]="--tensors 64 --elements 256 --gap-us 20"
)

# Prints steps/s of one run; fails if autotune did not finish in the warm-up.
run() {
  local name=$1 autotune=$2 output level=warning
  # The search logs every candidate's score at info level.
  [[ $autotune == 1 ]] && level=info
  # shellcheck disable=SC2086
  output=$(mpirun --oversubscribe --bind-to none --mca mpi_yield_when_idle 1 \
    -np 2 -x KOLO_AUTOTUNE="$autotune" -x KOLO_LOG_LEVEL="$level" "$bin" \
    ${workload[$name]} 2>&1)
  echo "== $name KOLO_AUTOTUNE=$autotune" >>"$log"
  echo "$output" >>"$log"
  if [[ $autotune == 1 ]]; then
    local chose warm
    chose=$(echo "$output" | grep -n 'autotune chose' | head -1 | cut -d: -f1)
    warm=$(echo "$output" | grep -n 'warm-up done' | head -1 | cut -d: -f1)
    if [[ -z $chose || -z $warm || $chose -gt $warm ]]; then
      echo "run_autotune_bench: the search did not finish within the warm-up" >&2
      exit 1
    fi
  fi
  echo "$output" | grep -E '^autotune_bench: ranks' |
    sed -E 's/.*: ([0-9.]+) steps\/s.*/\1/'
}

: >"$log"
printf '%-6s %-6s %10s %10s %7s\n' workload round default autotune ratio
for name in cnn tiny; do
  defaults=()
  tuned=()
  for ((r = 1; r <= rounds; ++r)); do
    d=$(run "$name" 0)
    t=$(run "$name" 1)
    defaults+=("$d")
    tuned+=("$t")
    printf '%-6s %-6s %10s %10s %6.2fx\n' "$name" "$r" "$d" "$t" \
      "$(awk -v a="$t" -v b="$d" 'BEGIN { print a / b }')"
  done
  printf '%-6s %-6s %10.1f %10.1f %6.2fx\n' "$name" mean \
    "$(printf '%s\n' "${defaults[@]}" | awk '{ s += $1 } END { print s / NR }')" \
    "$(printf '%s\n' "${tuned[@]}" | awk '{ s += $1 } END { print s / NR }')" \
    "$(paste <(printf '%s\n' "${tuned[@]}") <(printf '%s\n' "${defaults[@]}") |
      awk '{ s += $1; d += $2 } END { print s / d }')"
  grep -A0 'autotune chose' "$log" | tail -1 | sed 's/^/  last choice: /'
done
