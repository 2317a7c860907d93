#!/usr/bin/env bash
# run_cluster_bench.sh: kolo against PyTorch DDP (Gloo) on an emulated
# cluster: N network namespaces ("hosts") on this machine, each joined to a
# switch namespace (a Linux bridge) by a veth pair whose two ends are shaped
# with tc's token bucket (tbf) to the profile's rate, so every byte between
# hosts crosses a rate-limited link in each direction. Same model, data,
# optimizer, allocator (tcmalloc on both sides), steps and threads for both:
# bench/train_bench through kolorun (kolo picks its plane across hosts:
# hierarchical or ring over TCP) and bench/ddp_baseline.py, one process per
# rank started inside its host's namespace.
#
# Configurations (each "name@profile/N" is run once per round; the rounds
# interleave every configuration, so background load hits all alike):
#   kolo, ddp                 1 rank per host, on the slow and fast profiles
#   kolo_fp16, ddp_fp16       1 rank per host, slow profile, gradients as
#                             float16 (DistributedOptimizer compression vs
#                             DDP's fp16_compress_hook)
#   kolo_2ph, ddp_2ph         2 ranks per host on N/2 hosts (kolo's
#                             hierarchical plane; DDP with the same placement)
#   kolo_uif, kolo_fp16_uif,  kolo, kolo_fp16 and kolo_2ph with
#   kolo_2ph_uif              DistributedOptimizer's update_in_forward
#                             (train_bench --update-in-forward): each layer's
#                             update waits for its gradients in the next
#                             forward pass, not in step(); against the same
#                             DDP rows
#   kolo_overlap_off,         kolo's DistributedOptimizer with overlap off and
#   kolo_overlap_auto         auto (the kolo rows use on; auto decides after
#                             step 13: give --warmup-steps 14 or more)
#   kolo_alone, ddp_alone     N independent 1-rank jobs at once, one per host:
#                             the compute ceiling of N ranks on this machine
#                             (no communication at all)
# The "communication share" of a step is 1 - (ceiling step / step), for
# kolo against kolo_alone and DDP against ddp_alone: the part of the step
# that N communicating ranks take beyond N ranks computing alone, measured
# the same way for both. Delay cannot be emulated here (this kernel has no
# netem); tbf adds queueing delay only when a link is saturated.
#
# Usage: bench/cluster/run_cluster_bench.sh [--build DIR] [--out DIR]
#          [--hosts "2 4"] [--slow RATE] [--fast RATE] [--steps N]
#          [--warmup-steps N] [--rounds N] [--image-size PX]
#          [--batch-size N] [--configs A,B,...] [--kolo-env "VAR=VALUE ..."]
# --kolo-env exports settings to kolo's ranks (e.g. KOLO_TIMELINE=/tmp/t.json
# to see where a step's time goes).
# RATE as tc takes it (250mbit, 10gbit). Needs root (namespaces), iproute2,
# jq, python3 with torch and torchvision, and a build with train_bench and
# kolorun. Results: OUT/results.md and OUT/summary.json; logs per run. The
# namespaces are removed on exit, also when interrupted.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
build="$repo/build"
out=""
hosts_list="2 4"
slow=250mbit
fast=10gbit
steps=8
warmup_steps=2
rounds=3
image_size=64
batch_size=16
only=""
kolo_env=()
python=/usr/bin/python3

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
while (($#)); do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --hosts) hosts_list=$2; shift 2 ;;
    --slow) slow=$2; shift 2 ;;
    --fast) fast=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --warmup-steps) warmup_steps=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --image-size) image_size=$2; shift 2 ;;
    --batch-size) batch_size=$2; shift 2 ;;
    --configs) only=$2; shift 2 ;;
    --kolo-env) for v in $2; do kolo_env+=(-x "$v"); done; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run_cluster_bench.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
build=$(cd "$build" && pwd)
train_bench="$build/bench/train_bench"
kolorun="$build/launcher/kolorun"
for f in "$train_bench" "$kolorun"; do
  [[ -x $f ]] || { echo "run_cluster_bench.sh: $f missing; build it:" \
    "cmake --build $build --target train_bench kolorun" >&2; exit 2; }
done
for tool in ip tc jq unshare; do
  command -v $tool >/dev/null ||
    { echo "run_cluster_bench.sh: $tool is not installed" >&2; exit 2; }
done
"$python" -c 'import torch, torchvision' 2>/dev/null ||
  { echo "run_cluster_bench.sh: $python lacks torch/torchvision" >&2; exit 2; }
tcmalloc=$(ls /usr/lib/*/libtcmalloc_minimal.so.4 2>/dev/null | head -1 || true)
[[ -n $tcmalloc ]] ||
  { echo "run_cluster_bench.sh: needs libtcmalloc-minimal4 (both sides run with it)" >&2; exit 2; }
max_hosts=0
for n in $hosts_list; do
  [[ $n =~ ^[0-9]+$ && $n -ge 2 && $n -le 16 ]] ||
    { echo "run_cluster_bench.sh: --hosts takes counts from 2 to 16" >&2; exit 2; }
  ((n > max_hosts)) && max_hosts=$n
done
[[ -n $out ]] || out="$repo/out/bench/cluster/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out"

# ---- the cluster ------------------------------------------------------------
id=$$
switch="kcl$id-sw"
ns_of() { echo "kcl$id-h$1"; }
addr_of() { echo "10.78.0.$(($1 + 1))"; }
subnet=10.78.0.0/24
agent="$out/agent.sh"

cleanup() {
  local i ns
  for ((i = 0; i < max_hosts; i++)); do
    ns=$(ns_of $i)
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  ip netns del "$switch" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$switch"
ip -n "$switch" link add br0 type bridge
ip -n "$switch" link set br0 up
for ((i = 0; i < max_hosts; i++)); do
  ns=$(ns_of $i)
  ip netns add "$ns"
  ip link add "kcl${id}h$i" type veth peer name "kcl${id}p$i"
  ip link set "kcl${id}h$i" netns "$ns"
  ip -n "$ns" link set "kcl${id}h$i" name eth0
  ip link set "kcl${id}p$i" netns "$switch"
  ip -n "$switch" link set "kcl${id}p$i" master br0
  ip -n "$switch" link set "kcl${id}p$i" up
  ip -n "$ns" addr add "$(addr_of $i)/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
done

# shape RATE: both ends of every host's link. The bucket holds at least a
# 64 KiB segment (veth passes GSO packets whole) and 4 ms at the rate.
shape() {
  local rate=$1 bits burst i
  bits=$(tc_rate_bits "$rate")
  burst=$((bits / 8 / 250))
  ((burst < 262144)) && burst=262144
  for ((i = 0; i < max_hosts; i++)); do
    ip netns exec "$(ns_of $i)" tc qdisc replace dev eth0 root tbf rate "$rate" burst "$burst" latency 50ms
    ip netns exec "$switch" tc qdisc replace dev "kcl${id}p$i" root tbf rate "$rate" burst "$burst" latency 50ms
  done
}
tc_rate_bits() {
  local v=${1,,}
  case $v in
    *gbit) echo $((${v%gbit} * 1000000000)) ;;
    *mbit) echo $((${v%mbit} * 1000000)) ;;
    *kbit) echo $((${v%kbit} * 1000)) ;;
    *) echo "run_cluster_bench.sh: rate '$1' must end in kbit, mbit or gbit" >&2; exit 2 ;;
  esac
}
tc_rate_bits "$slow" >/dev/null && tc_rate_bits "$fast" >/dev/null

# Open MPI calls the agent as `AGENT HOST orted ...` in place of ssh.
{
  echo '#!/bin/sh'
  echo 'host=$1; shift'
  echo 'case "$host" in'
  for ((i = 0; i < max_hosts; i++)); do echo "  $(addr_of $i)) ns=$(ns_of $i);;"; done
  echo '  *) echo "agent: unknown host $host" >&2; exit 1;;'
  echo 'esac'
  echo 'exec ip netns exec "$ns" unshare --uts sh -c "hostname $ns; $*"'
} >"$agent"
chmod +x "$agent"

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_mpi_yield_when_idle=1 OMP_NUM_THREADS=1
common=(--arch densenet121 --image-size "$image_size" --batch-size "$batch_size"
        --warmup-steps "$warmup_steps" --steps "$steps" --threads 1)

# in_host I CMD...: runs CMD in host I's namespace under its own host name.
in_host() {
  local ns; ns=$(ns_of "$1"); shift
  ip netns exec "$ns" unshare --uts sh -c "hostname $ns; exec \"\$0\" \"\$@\"" "$@"
}

# run_kolo NAME HOSTS PER_HOST [train_bench flags]: one kolorun job.
run_kolo() {
  local name=$1 hosts=$2 per_host=$3 list="" i; shift 3
  for ((i = 0; i < hosts; i++)); do list+="${list:+,}$(addr_of $i):$per_host"; done
  in_host 0 timeout -k 5 600 "$kolorun" -np $((hosts * per_host)) -H "$list" \
    --memory-allocator tcmalloc -x OMP_NUM_THREADS "${kolo_env[@]}" --start-timeout 120 \
    --mpi-args "--mca plm_rsh_agent $agent --mca btl_tcp_if_include $subnet --mca oob_tcp_if_include $subnet" \
    "$train_bench" "${common[@]}" "$@" --json "$dir/$name.json" >"$dir/$name.log" 2>&1
}

# run_ddp NAME HOSTS PER_HOST [ddp_baseline flags]: one process per rank in
# its host's namespace; rank 0's host is the rendezvous.
run_ddp() {
  local name=$1 hosts=$2 per_host=$3 pids=() rc=0 r size; shift 3
  size=$((hosts * per_host))
  for ((r = 0; r < size; r++)); do
    in_host $((r / per_host)) env MASTER_ADDR="$(addr_of 0)" MASTER_PORT=29511 \
      WORLD_SIZE=$size RANK=$r GLOO_SOCKET_IFNAME=eth0 LD_PRELOAD="$tcmalloc" \
      timeout -k 5 600 "$python" "$repo/bench/ddp_baseline.py" "${common[@]}" "$@" \
      --json "$dir/$name.json" >"$dir/$name.rank$r.log" 2>&1 &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
  cp "$dir/$name.rank0.log" "$dir/$name.log"
  return $rc
}

# run_alone NAME HOSTS IMPL: HOSTS independent 1-rank jobs at once, one per
# host; NAME.json gets their summed images/s and rank 0's timings.
run_alone() {
  local name=$1 hosts=$2 impl=$3 pids=() rc=0 i
  for ((i = 0; i < hosts; i++)); do
    if [[ $impl == kolo ]]; then
      in_host $i timeout -k 5 600 "$kolorun" -np 1 --memory-allocator tcmalloc \
        -x OMP_NUM_THREADS "$train_bench" "${common[@]}" \
        --json "$dir/$name.$i.json" >"$dir/$name.$i.log" 2>&1 &
    else
      in_host $i env MASTER_ADDR=127.0.0.1 MASTER_PORT=$((29600 + i)) WORLD_SIZE=1 RANK=0 \
        LD_PRELOAD="$tcmalloc" timeout -k 5 600 "$python" "$repo/bench/ddp_baseline.py" \
        "${common[@]}" --json "$dir/$name.$i.json" >"$dir/$name.$i.log" 2>&1 &
    fi
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
  cat "$dir/$name".*.log >"$dir/$name.log"
  ((rc == 0)) || return 1
  jq -s '.[0] + {np: length, images_per_s: (map(.images_per_s) | add),
                 step_s: {median: (map(.step_s.median) | max)}}' \
    "$dir/$name".[0-9]*.json >"$dir/$name.json"
}

# The runs: name, profile (or "none"), hosts, ranks per host.
# N = 1: one rank alone, the scaling baseline.
runs=("kolo_alone none 1 1" "ddp_alone none 1 1")
for n in $hosts_list; do
  runs+=("kolo_alone none $n 1" "ddp_alone none $n 1")
  runs+=("kolo slow $n 1" "ddp slow $n 1" "kolo fast $n 1" "ddp fast $n 1")
  runs+=("kolo_uif slow $n 1" "kolo_uif fast $n 1")
  runs+=("kolo_fp16 slow $n 1" "kolo_fp16_uif slow $n 1" "ddp_fp16 slow $n 1")
  ((n >= 4 && n % 2 == 0)) && runs+=("kolo_2ph slow $((n / 2)) 2" "kolo_2ph_uif slow $((n / 2)) 2" "ddp_2ph slow $((n / 2)) 2")
  runs+=("kolo_overlap_off slow $n 1" "kolo_overlap_auto slow $n 1")
done
if [[ -n $only ]]; then
  IFS=, read -r -a keep <<<"$only"
  selected=()
  for run in "${runs[@]}"; do
    for k in "${keep[@]}"; do [[ ${run%% *} == "$k" ]] && selected+=("$run"); done
  done
  ((${#selected[@]})) || { echo "run_cluster_bench.sh: --configs selects nothing" >&2; exit 2; }
  runs=("${selected[@]}")
fi

echo "run_cluster_bench: hosts {$hosts_list}, slow $slow, fast $fast," \
  "DenseNet-121 ${image_size} px, batch $batch_size per rank, 1 thread per rank," \
  "$warmup_steps warm-up + $steps timed steps, $rounds round(s); results in $out"
shaped=""
for ((round = 1; round <= rounds; round++)); do
  dir="$out/round$round"
  mkdir -p "$dir"
  for run in "${runs[@]}"; do
    read -r config profile hosts per_host <<<"$run"
    ranks=$((hosts * per_host))
    key="$config@$profile-$ranks"
    case $profile in
      slow) [[ $shaped == slow ]] || { shape "$slow"; shaped=slow; } ;;
      fast) [[ $shaped == fast ]] || { shape "$fast"; shaped=fast; } ;;
    esac
    start=$SECONDS
    case $config in
      kolo|kolo_2ph) run_kolo "$key" "$hosts" "$per_host" ;;
      kolo_fp16) run_kolo "$key" "$hosts" "$per_host" --compression fp16 ;;
      kolo_uif|kolo_2ph_uif) run_kolo "$key" "$hosts" "$per_host" --update-in-forward ;;
      kolo_fp16_uif) run_kolo "$key" "$hosts" "$per_host" --compression fp16 --update-in-forward ;;
      kolo_overlap_off) run_kolo "$key" "$hosts" "$per_host" --overlap off ;;
      kolo_overlap_auto) run_kolo "$key" "$hosts" "$per_host" --overlap auto ;;
      ddp|ddp_2ph) run_ddp "$key" "$hosts" "$per_host" ;;
      ddp_fp16) run_ddp "$key" "$hosts" "$per_host" --fp16-hook ;;
      kolo_alone) run_alone "$key" "$hosts" kolo ;;
      ddp_alone) run_alone "$key" "$hosts" ddp ;;
    esac || { echo "run_cluster_bench: $key failed; see $dir/$key*.log" >&2; tail -20 "$dir/$key.log" >&2; exit 1; }
    printf '  round %d %-22s %8s images/s  step %6ss  (%ds, load %s)\n' "$round" "$key" \
      "$(jq -r '.images_per_s | . * 100 | round / 100' "$dir/$key.json")" \
      "$(jq -r '.step_s.median | . * 1000 | round / 1000' "$dir/$key.json")" \
      $((SECONDS - start)) "$(cut -d' ' -f1 /proc/loadavg)"
  done
done

keys=()
for run in "${runs[@]}"; do
  read -r config profile hosts per_host <<<"$run"
  keys+=("$config@$profile-$((hosts * per_host))")
done
"$python" "$repo/bench/cluster/summarize.py" "$out" "$rounds" "$slow" "$fast" "${keys[@]}"
