#!/bin/bash
# Two hosts on one machine: kolorun starts a 2 hosts x 2 ranks job across
# two network namespaces joined by a veth pair, each with its own host name
# (unshare --uts), with the launcher's ssh replaced by an agent script that
# enters the right namespace. The launcher is that of the MPI kolo is built
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
SKIP=77

# Names carry our PID so that concurrent runs never collide. The subnet can
# stay fixed: its addresses exist only inside this run's namespaces.
ID=$$
NS_A="kolo-a-$ID"
NS_B="kolo-b-$ID"
VETH_A="kva$ID"
VETH_B="kvb$ID"
ADDR_A=10.77.0.1
ADDR_B=10.77.0.2
SUBNET=10.77.0.0/24
WORK=$(mktemp -d /tmp/kolorun-2hosts.XXXXXX)

cleanup() {
  for ns in "$NS_A" "$NS_B"; do
    # Only processes inside our own namespaces: ours by construction.
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

skip() { echo "SKIP: $*" >&2; exit "$SKIP"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

command -v ip >/dev/null || skip "the ip command (iproute2) is not installed"
command -v unshare >/dev/null || skip "unshare (util-linux) is not installed"
ip netns add "$NS_A" 2>"$WORK/err" ||
  skip "cannot create network namespaces here ($(cat "$WORK/err")); needs root or CAP_SYS_ADMIN"
ip netns add "$NS_B" 2>"$WORK/err" || skip "cannot create a second namespace: $(cat "$WORK/err")"
ip netns exec "$NS_A" unshare --uts true 2>"$WORK/err" ||
  skip "cannot create UTS namespaces here: $(cat "$WORK/err")"
ip link add "$VETH_A" type veth peer name "$VETH_B" 2>"$WORK/err" ||
  skip "cannot create a veth pair: $(cat "$WORK/err")"
set -e
ip link set "$VETH_A" netns "$NS_A"
ip link set "$VETH_B" netns "$NS_B"
ip -n "$NS_A" addr add "$ADDR_A/24" dev "$VETH_A"
ip -n "$NS_B" addr add "$ADDR_B/24" dev "$VETH_B"
for ns in "$NS_A" "$NS_B"; do ip -n "$ns" link set lo up; done
ip -n "$NS_A" link set "$VETH_A" up
ip -n "$NS_B" link set "$VETH_B" up
set +e

# Open MPI calls the agent as `AGENT HOST orted ...` in place of ssh, Hydra
# as `AGENT -x HOST "hydra_pmi_proxy" ...`.
AGENT="$WORK/agent"
cat >"$AGENT" <<SCRIPT
#!/bin/sh
[ "\$1" = -x ] && shift
host=\$1; shift
case "\$host" in
  $ADDR_A) ns=$NS_A;;
  $ADDR_B) ns=$NS_B;;
  *) echo "agent: unknown host \$host" >&2; exit 1;;
esac
exec ip netns exec "\$ns" unshare --uts sh -c "hostname \$ns; \$*"
SCRIPT
chmod +x "$AGENT"

if [ "${MPI_UNDER_TEST:-openmpi}" = mpich ]; then
  # Hydra tells the proxies to call back its host name, which only this
  # machine's real name resolves to; -localhost gives them the address.
  MPI_ARGS="-launcher ssh -launcher-exec $AGENT -localhost $ADDR_A"
  tag() { echo "[$1] "; }
else
  MPI_ARGS="--mca plm_rsh_agent $AGENT --mca btl_tcp_if_include $SUBNET --mca oob_tcp_if_include $SUBNET"
  tag() { echo "[1,$1]<stdout>:"; }
fi
# mpirun runs inside the first "host", so the second one's daemon can reach
# it over the veth link.
timeout -k 5 150 ip netns exec "$NS_A" unshare --uts sh -c \
  "hostname $NS_A; exec \"\$0\" \"\$@\"" "$KOLORUN" \
  -np 4 -H "$ADDR_A:2,$ADDR_B:2" --cpu-operations "$CPU_OPERATIONS" --start-timeout 60 \
  --mpi-args "$MPI_ARGS" "$PROGRAM" >"$WORK/out" 2>"$WORK/err"
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
