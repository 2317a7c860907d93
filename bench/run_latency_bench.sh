#!/usr/bin/env bash
# The issue-13 small-operation figures in one run: latency_bench (np 2, one
# host) with the fast lane off and on, under `--bind-to none` and Open MPI's
# default core binding, configurations alternating over --rounds rounds; per
# configuration and size the median over rounds (each round's figure is
# itself a median of --reps repetitions) and the spread (min–max), for kolo
# and for the raw MPI_Allreduce measured beside it; and the idle runtime's
# CPU use. Results: out/bench/latency.{txt,md}.
#
#   bench/run_latency_bench.sh [--rounds N] [--reps N] [BUILD_DIR]
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rounds=3 reps=2000 build=$repo/build
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    -*) echo "run_latency_bench: unknown flag $1" >&2; exit 2 ;;
    *) build=$1; shift ;;
  esac
done
bench=$build/bench/latency_bench
[ -x "$bench" ] || cmake --build "$build" --target latency_bench -j1
out=$repo/out/bench
mkdir -p "$out"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
raw=$out/latency.jsonl
: >"$raw"
{
  echo "# $(date -u +%FT%TZ) $(nproc) CPUs, git $(git -C "$repo" rev-parse --short HEAD)," \
       "load $(cut -d' ' -f1-3 /proc/loadavg)"
  for round in $(seq "$rounds"); do
    configs=("0 none" "1 none" "0 core" "1 core")
    # Alternate the order from round to round so that drift hits both.
    if [ $((round % 2)) = 0 ]; then configs=("1 core" "0 core" "1 none" "0 none"); fi
    for config in "${configs[@]}"; do
      read -r lane bind <<<"$config"
      echo "# round $round: KOLO_FAST_LANE=$lane --bind-to $bind"
      KOLO_FAST_LANE=$lane timeout 300 mpirun -np 2 --bind-to "$bind" \
        "$bench" --reps "$reps" --idle-seconds 10 |
        while read -r line; do
          echo "$line"
          echo "{\"round\":$round,\"lane\":$lane,\"bind\":\"$bind\",\"m\":$line}" >>"$raw"
        done
    done
  done
} 2>&1 | tee "$out/latency.txt"
python3 - "$raw" <<'PY' | tee "$out/latency.md"
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def stats(values):
    return statistics.median(values), min(values), max(values)
print("| size | binding | raw MPI_Allreduce µs | kolo, fast lane off µs | kolo, fast lane on µs | on / off | kolo (on) / MPI speed |")
print("|---:|---|---:|---:|---:|---:|---:|")
sizes = sorted({r["m"]["size_bytes"] for r in rows if "size_bytes" in r["m"]})
for size in sizes:
    for bind in ("none", "core"):
        sel = [r for r in rows if r["bind"] == bind and r["m"].get("size_bytes") == size]
        mpi = stats([r["m"]["mpi_us"] for r in sel])
        off = stats([r["m"]["kolo_us"] for r in sel if r["lane"] == 0])
        on = stats([r["m"]["kolo_us"] for r in sel if r["lane"] == 1])
        fmt = lambda s: f"{s[0]:.1f} ({s[1]:.1f}–{s[2]:.1f})"
        print(f"| {size} B | {bind} | {fmt(mpi)} | {fmt(off)} | {fmt(on)} | "
              f"{on[0] / off[0]:.2f} | {mpi[0] / on[0]:.2f}x |")
print()
for lane in (0, 1):
    idle = stats([r["m"]["idle_cpu_percent"] for r in rows
                  if r["lane"] == lane and "idle_cpu_percent" in r["m"]])
    print(f"idle runtime, KOLO_FAST_LANE={lane}: {idle[0]:.2f} % of one core "
          f"(max of the ranks; {idle[1]:.2f}–{idle[2]:.2f} over rounds)")
PY
