# Pretend hosts on one machine, for kolorun's multi-host tests (sourced).
#
#   . netns_hosts.sh
#   netns_hosts_setup 2        # hosts 1..2: namespaces $(netns_name 1) ...
#   ... "$KOLORUN" --mpi-args "$NETNS_MPI_ARGS" -H "$(netns_addr 1):2,..."
#
# Every host is a network namespace with its own host name (unshare --uts)
# and address 10.77.0.K on a bridge in a namespace of its own, so a host can
# be unplugged (netns_unplug K) or killed (netns_kill K) while the others
# run on. The launcher's ssh is replaced by an agent script that enters the
# host's namespace (Open MPI calls it as `AGENT HOST orted ...`, Hydra as
# `AGENT -x HOST "hydra_pmi_proxy" ...`); an address without a namespace
# fails like an unreachable host. mpirun itself runs in host 1
# (netns_run 1 SECONDS CMD...). Names carry the caller's PID, so concurrent runs
# never collide. Exits 77 (skipped) where namespaces cannot be created.
# Sets NETNS_WORK (a scratch directory, removed with everything else on
# exit) and NETNS_MPI_ARGS.

NETNS_ID=$$
NETNS_SUBNET=10.77.0.0/24
NETNS_WORK=$(mktemp -d /tmp/kolo-netns.XXXXXX)
NETNS_COUNT=0

netns_name() { echo "kolo-h$1-$NETNS_ID"; }
netns_addr() { echo "10.77.0.$1"; }

netns_cleanup() {
  local k ns pid
  for k in $(seq 0 "$NETNS_COUNT"); do
    ns=$(netns_name "$k")
    # Only processes inside our own namespaces: ours by construction.
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  done
  rm -rf "$NETNS_WORK"
}

netns_skip() { echo "SKIP: $*" >&2; exit 77; }

# netns_hosts_setup COUNT: hosts 1..COUNT, joined by a bridge in namespace 0.
netns_hosts_setup() {
  local count=$1 k ns sw
  trap netns_cleanup EXIT
  trap 'exit 1' INT TERM
  command -v ip >/dev/null || netns_skip "the ip command (iproute2) is not installed"
  command -v unshare >/dev/null || netns_skip "unshare (util-linux) is not installed"
  sw=$(netns_name 0)
  ip netns add "$sw" 2>"$NETNS_WORK/err" ||
    netns_skip "cannot create network namespaces here ($(cat "$NETNS_WORK/err")); needs root or CAP_SYS_ADMIN"
  ip netns exec "$sw" unshare --uts true 2>"$NETNS_WORK/err" ||
    netns_skip "cannot create UTS namespaces here: $(cat "$NETNS_WORK/err")"
  ip -n "$sw" link add br0 type bridge 2>"$NETNS_WORK/err" ||
    netns_skip "cannot create a bridge: $(cat "$NETNS_WORK/err")"
  ip -n "$sw" link set br0 up
  NETNS_COUNT=$count
  for k in $(seq 1 "$count"); do
    ns=$(netns_name "$k")
    ip netns add "$ns" || return 1
    ip link add "kh$k-$NETNS_ID" type veth peer name "ks$k-$NETNS_ID" 2>"$NETNS_WORK/err" ||
      netns_skip "cannot create a veth pair: $(cat "$NETNS_WORK/err")"
    ip link set "kh$k-$NETNS_ID" netns "$ns"
    ip link set "ks$k-$NETNS_ID" netns "$sw"
    ip -n "$ns" link set "kh$k-$NETNS_ID" name eth0
    ip -n "$ns" addr add "$(netns_addr "$k")/24" dev eth0
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
    ip -n "$sw" link set "ks$k-$NETNS_ID" master br0
    ip -n "$sw" link set "ks$k-$NETNS_ID" up
  done
  local agent="$NETNS_WORK/agent"
  {
    echo '#!/bin/sh'
    echo '[ "$1" = -x ] && shift'
    echo 'host=$1; shift'
    echo 'case "$host" in'
    for k in $(seq 1 "$count"); do
      echo "  $(netns_addr "$k")) ns=$(netns_name "$k");;"
    done
    echo '  *) echo "agent: cannot reach host $host" >&2; exit 255;;'
    echo 'esac'
    echo 'exec ip netns exec "$ns" unshare --uts sh -c "hostname $ns; $*"'
  } >"$agent"
  chmod +x "$agent"
  if [ "${MPI_UNDER_TEST:-openmpi}" = mpich ]; then
    # Hydra tells the proxies to call back its host name, which only this
    # machine's real name resolves to; -localhost gives them the address.
    NETNS_MPI_ARGS="-launcher ssh -launcher-exec $agent -localhost $(netns_addr 1)"
  else
    NETNS_MPI_ARGS="--mca plm_rsh_agent $agent --mca btl_tcp_if_include $NETNS_SUBNET --mca oob_tcp_if_include $NETNS_SUBNET"
  fi
}

# netns_run K SECONDS CMD...: runs CMD in host K under its host name, for at
# most SECONDS (then status 124, as timeout(1)).
netns_run() {
  local ns=$(netns_name "$1") limit=$2
  shift 2
  timeout -k 5 "$limit" ip netns exec "$ns" unshare --uts \
    sh -c "hostname $ns; exec \"\$0\" \"\$@\"" "$@"
}

# netns_kill K [NAME]: SIGKILL host K's processes (only those whose
# executable is called NAME, when given: the ranks, not their monitors).
netns_kill() {
  local pid ns
  ns=$(netns_name "$1")
  for pid in $(ip netns pids "$ns" 2>/dev/null); do
    if [ -z "${2:-}" ] || [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ]; then
      kill -9 "$pid" 2>/dev/null
    fi
  done
}
