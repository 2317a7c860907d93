#!/bin/bash
# Two hosts on one machine: kolorun starts a 2 hosts x 2 ranks job across
# two network namespaces (netns_hosts.sh: each with its own host name, the
# launcher's ssh replaced by an agent script that enters the right
# namespace). The launcher is that of the MPI kolo is built
# with: Open MPI's mpirun, or MPICH's Hydra when MPI_UNDER_TEST=mpich.
#   two_hosts_test.sh KOLORUN PROGRAM [CPU_OPERATIONS]
# PROGRAM prints one "host=... rank=... result=ok" line per rank
# (mpi_topology_check or allreduce_check). CPU_OPERATIONS (default
# hierarchical: shm inside a host, ring across) is passed with
# --cpu-operations. Exits 77 (skipped) where namespaces cannot be created.
set -u
KOLORUN=$1
PROGRAM=$2
CPU_OPERATIONS=${3:-hierarchical}
fail() { echo "FAIL: $*" >&2; exit 1; }
. "$(dirname "$0")/netns_hosts.sh"
netns_hosts_setup 2
NS_A=$(netns_name 1)
NS_B=$(netns_name 2)
WORK=$NETNS_WORK
if [ "${MPI_UNDER_TEST:-openmpi}" = mpich ]; then
  tag() { echo "[$1] "; }
else
  tag() { echo "[1,$1]<stdout>:"; }
fi
# mpirun runs inside the first "host", so the second one's daemon can reach
# it over the link.
netns_run 1 150 "$KOLORUN" \
  -np 4 -H "$(netns_addr 1):2,$(netns_addr 2):2" --cpu-operations "$CPU_OPERATIONS" \
  --start-timeout 60 --mpi-args "$NETNS_MPI_ARGS" "$PROGRAM" >"$WORK/out" 2>"$WORK/err"
RC=$?
OUT=$(cat "$WORK/out")
echo "$OUT"
cat "$WORK/err" >&2
[ "$RC" -ne 124 ] || fail "the job did not finish within 150 s"
[ "$RC" -eq 0 ] || fail "kolorun exited with status $RC"

# Ranks 0-1 on host A, 2-3 on host B; KOLO_CPU_OPERATIONS set by a kolorun
# flag must reach the ranks on both hosts.
for rank in 0 1 2 3; do
  if [ "$rank" -lt 2 ]; then host=$NS_A; else host=$NS_B; fi
  want="$(tag $rank)host=$host rank=$rank size=4 local_rank=$((rank % 2)) local_size=2 cross_rank=$((rank / 2)) cross_size=2 cpu_operations=$CPU_OPERATIONS result=ok"
  grep -qxF "$want" <<<"$OUT" || fail "missing line: $want"
done
# allreduce_check also names the data plane kolo chose on every rank.
if grep -q "kolo rank=" <<<"$OUT"; then
  for rank in 0 1 2 3; do
    grep -qF "$(tag $rank)kolo rank=$rank backend=$CPU_OPERATIONS mpi=" <<<"$OUT" ||
      fail "rank $rank does not report backend=$CPU_OPERATIONS"
  done
fi
echo "PASS: 2 hosts x 2 ranks"
