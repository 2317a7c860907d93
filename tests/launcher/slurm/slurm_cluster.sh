# A throw-away Slurm cluster for kolorun's tests; source it, then
#   slurm_cluster_start NODES CPUS    # 1 or 2 nodes of CPUS CPUs each
#   slurm_in_cluster COMMAND...       # run a client command (salloc, sbatch,
#                                     # squeue, ...) where it reaches the cluster
# and rely on the EXIT trap it installs to take everything down again.
#
# Every node is a network namespace of its own with its own host name
# (unshare --uts) and /tmp, running one slurmd; the first also runs
# slurmctld and munged, and is where client commands run. Two nodes are
# joined by a veth pair (10.78.0.1 and 10.78.0.2, addresses that exist only
# inside these namespaces; a single node holds both ends). munged, the
# daemons' state, logs, sockets and slurm.conf live in one temporary
# directory (the cluster's shared file system). The configuration is
# cgroup-free (proctrack/linuxproc, task/none; the daemons see an empty
# /sys/fs/cgroup), so it runs in containers and on CI machines without
# systemd, whatever cgroup hierarchies the machine mounts. Nodes claim more
# CPUs than a small machine has (config_overrides), so 4 ranks fit on one
# node; with task/none nothing is bound, and srun says that it ignores
# kolorun's --cpu-bind=none ("cluster configuration lacks support for cpu
# binding"). Nothing outside the namespaces and the directory is touched,
# and everything running inside the namespaces is killed on exit.
#
# Needs root (namespaces, slurmd) and Debian's munge, slurmctld, slurmd and
# slurm-client. Missing pieces make slurm_cluster_start exit 77 (skipped)
# with the reason.
#
# Names carry the tag "sl" and this shell's PID, so concurrent runs never
# collide. Variables set for the caller: SLURM_WORK (the directory),
# SLURM_CONF (exported), SLURM_NODE_NAMES (array), SLURM_NODE_NS (array).

SLURM_SKIP=77
SLURM_WORK=""
SLURM_NODE_NAMES=()
SLURM_NODE_NS=()
SLURM_VETH=()

slurm_skip() { echo "SKIP: $*" >&2; exit "$SLURM_SKIP"; }

slurm_cluster_stop() {
  # Jobs first, so that no slurmstepd is left waiting for a daemon; then
  # whatever still runs in our namespaces (all ours by construction).
  if [ -n "$SLURM_WORK" ] && [ -f "$SLURM_WORK/slurm.conf" ] && [ "${#SLURM_NODE_NS[@]}" -gt 0 ]; then
    timeout 10 ip netns exec "${SLURM_NODE_NS[0]}" scancel --full --quiet \
      --user=root >/dev/null 2>&1
  fi
  local ns pid
  for ns in "${SLURM_NODE_NS[@]}"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
  done
  for ns in "${SLURM_NODE_NS[@]}"; do ip netns del "$ns" 2>/dev/null; done
  if [ -n "$SLURM_WORK" ]; then
    if [ -n "${SLURM_KEEP_LOGS:-}" ]; then
      mkdir -p "$SLURM_KEEP_LOGS" && cp "$SLURM_WORK"/*.log "$SLURM_KEEP_LOGS"/ 2>/dev/null
    fi
    rm -rf "$SLURM_WORK"
  fi
}

# Prints the daemons' logs (for a failing test).
slurm_dump_logs() {
  local log
  for log in "$SLURM_WORK"/*.log; do
    [ -f "$log" ] || continue
    echo "---- $(basename "$log") (last 40 lines)" >&2
    tail -n 40 "$log" >&2
  done
}

# A free TCP port pair in the root namespace's view: the daemons run in our
# own namespaces, so a clash is impossible there, but fixed ports make two
# runs' logs confusing; pick at random.
slurm_random_port() { echo $(( 20000 + (RANDOM % 20000) )); }

# slurm_in_node INDEX COMMAND...: runs COMMAND on node INDEX (0-based),
# with that node's host name.
slurm_in_node() {
  local index=$1; shift
  ip netns exec "${SLURM_NODE_NS[$index]}" unshare --uts \
    sh -c 'hostname "$0"; exec "$@"' "${SLURM_NODE_NAMES[$index]}" "$@"
}

# slurm_daemon_on_node INDEX COMMAND...: like slurm_in_node, in a mount
# namespace of the node's own, inherited by everything the daemon starts:
# - a /tmp of the node's own: real nodes do not share /tmp, and Slurm's PMIx
#   plugin and Open MPI keep per-step directories there whose names would
#   collide between our nodes;
# - an empty /sys/fs/cgroup: slurmd always loads a cgroup plugin, even when
#   no other plugin uses cgroups; its autodetection fails on some container
#   layouts and Slurm 22.05's cgroup/v2 refuses hybrid hierarchies, while
#   cgroup/v1 over an empty tmpfs loads anywhere (nothing here creates
#   cgroups).
slurm_daemon_on_node() {
  local index=$1; shift
  local tmp="$SLURM_WORK/tmp/${SLURM_NODE_NAMES[$index]}"
  mkdir -p "$tmp" && chmod 1777 "$tmp"
  ip netns exec "${SLURM_NODE_NS[$index]}" unshare --uts --mount --propagation private \
    sh -c 'hostname "$0" && mount --bind "$1" /tmp &&
      mount -t tmpfs -o mode=0755 sl-cgroup /sys/fs/cgroup && shift && exec "$@"' \
    "${SLURM_NODE_NAMES[$index]}" "$tmp" "$@"
}

# Client commands run on the first node, where slurmctld listens and where
# srun's own ports are reachable from every slurmd.
slurm_in_cluster() { slurm_in_node 0 "$@"; }

slurm_cluster_start() {
  local nodes=$1 cpus=$2
  local p
  for p in munged slurmctld slurmd slurmstepd salloc sbatch srun scancel sinfo ip unshare; do
    command -v "$p" >/dev/null 2>&1 || [ -x "/usr/sbin/$p" ] ||
      slurm_skip "$p is not installed (apt-get install munge slurmctld slurmd slurm-client iproute2 util-linux)"
  done
  [ "$(id -u)" -eq 0 ] || slurm_skip "needs root (slurmd, network namespaces)"
  trap slurm_cluster_stop EXIT
  trap 'exit 1' INT TERM

  # Not under /tmp, which every node replaces with its own: this directory
  # plays the cluster's shared file system.
  SLURM_WORK=$(mktemp -d /var/tmp/sl-slurm.XXXXXX)
  chmod 0755 "$SLURM_WORK"
  local id=$$ i
  for ((i = 0; i < nodes; i++)); do
    SLURM_NODE_NAMES+=("sl-node$((i + 1))")
    SLURM_NODE_NS+=("sl-$id-n$((i + 1))")
  done
  for ((i = 0; i < nodes; i++)); do
    ip netns add "${SLURM_NODE_NS[$i]}" 2>"$SLURM_WORK/err" ||
      slurm_skip "cannot create network namespaces here: $(cat "$SLURM_WORK/err")"
    ip -n "${SLURM_NODE_NS[$i]}" link set lo up
  done
  # Each node's address lives on a veth end in its namespace: Slurm resolves
  # its listening address with AI_ADDRCONFIG, which finds nothing where
  # loopback is the only interface. One node keeps both ends.
  [ "$nodes" -eq 1 ] || [ "$nodes" -eq 2 ] || { echo "slurm_cluster_start: 1 or 2 nodes" >&2; exit 1; }
  local ends=("slv$id"a "slv$id"b) addresses=(10.78.0.1 10.78.0.2)
  ip link add "${ends[0]}" type veth peer name "${ends[1]}" 2>"$SLURM_WORK/err" ||
    slurm_skip "cannot create a veth pair: $(cat "$SLURM_WORK/err")"
  for i in 0 1; do
    local ns=${SLURM_NODE_NS[$((nodes == 1 ? 0 : i))]}
    ip link set "${ends[$i]}" netns "$ns"
    ip -n "$ns" addr add "${addresses[$i]}/24" dev "${ends[$i]}"
    ip -n "$ns" link set "${ends[$i]}" up
  done

  # munge: a fresh key and a socket of our own.
  dd if=/dev/urandom of="$SLURM_WORK/munge.key" bs=1024 count=1 status=none
  chmod 0400 "$SLURM_WORK/munge.key"
  # munged wants its socket's directory searchable by everyone.
  mkdir -m 0755 "$SLURM_WORK/munge"
  ip netns exec "${SLURM_NODE_NS[0]}" munged --force \
    --key-file="$SLURM_WORK/munge.key" --socket="$SLURM_WORK/munge/socket" \
    --pid-file="$SLURM_WORK/munge/pid" --log-file="$SLURM_WORK/munged.log" \
    --seed-file="$SLURM_WORK/munge/seed" 2>"$SLURM_WORK/err" ||
    { cat "$SLURM_WORK/err" >&2; echo "FAIL: munged did not start" >&2; exit 1; }

  local ctld_port slurmd_port
  ctld_port=$(slurm_random_port)
  slurmd_port=$((ctld_port + 1))
  mkdir -p "$SLURM_WORK/state"
  for ((i = 0; i < nodes; i++)); do mkdir -p "$SLURM_WORK/spool/${SLURM_NODE_NAMES[$i]}"; done
  SLURM_CONF="$SLURM_WORK/slurm.conf"
  export SLURM_CONF
  {
    echo "ClusterName=kolo-test"
    echo "SlurmctldHost=${SLURM_NODE_NAMES[0]}(${addresses[0]})"
    echo "SlurmctldPort=$ctld_port"
    echo "SlurmdPort=$slurmd_port"
    echo "SlurmUser=root"
    echo "SlurmdUser=root"
    echo "AuthType=auth/munge"
    echo "AuthInfo=socket=$SLURM_WORK/munge/socket"
    echo "CredType=cred/munge"
    echo "StateSaveLocation=$SLURM_WORK/state"
    echo "SlurmdSpoolDir=$SLURM_WORK/spool/%n"
    echo "SlurmctldPidFile=$SLURM_WORK/slurmctld.pid"
    echo "SlurmdPidFile=$SLURM_WORK/slurmd-%n.pid"
    echo "SlurmctldLogFile=$SLURM_WORK/slurmctld.log"
    echo "SlurmdLogFile=$SLURM_WORK/slurmd-%n.log"
    echo "ProctrackType=proctrack/linuxproc"
    echo "TaskPlugin=task/none"
    echo "JobAcctGatherType=jobacct_gather/none"
    echo "AccountingStorageType=accounting_storage/none"
    echo "SchedulerType=sched/builtin"
    # Batch jobs start at once (by default their scheduling may wait 3 s).
    echo "SchedulerParameters=batch_sched_delay=0"
    echo "SelectType=select/cons_tres"
    echo "SelectTypeParameters=CR_CPU"
    echo "MpiDefault=none"
    echo "ReturnToService=2"
    # The node may claim more CPUs than the machine has (ranks
    # oversubscribe small CI machines, as kolo's other tests do).
    echo "SlurmdParameters=config_overrides"
    # Short waits: a cancelled job's ranks get SIGKILL 2 s after SIGTERM.
    echo "KillWait=2"
    echo "MessageTimeout=10"
    echo "InactiveLimit=0"
    echo "SlurmdTimeout=60"
    for ((i = 0; i < nodes; i++)); do
      echo "NodeName=${SLURM_NODE_NAMES[$i]} NodeAddr=${addresses[$i]} CPUs=$cpus State=UNKNOWN"
    done
    echo "PartitionName=kolo Nodes=ALL Default=YES MaxTime=INFINITE State=UP"
  } >"$SLURM_CONF"
  # See slurm_daemon_on_node.
  echo "CgroupPlugin=cgroup/v1" >"$SLURM_WORK/cgroup.conf"

  slurm_daemon_on_node 0 slurmctld -f "$SLURM_CONF" -i 2>"$SLURM_WORK/err" ||
    { cat "$SLURM_WORK/err" >&2; slurm_dump_logs; echo "FAIL: slurmctld did not start" >&2; exit 1; }
  for ((i = 0; i < nodes; i++)); do
    slurm_daemon_on_node "$i" slurmd -f "$SLURM_CONF" -N "${SLURM_NODE_NAMES[$i]}" 2>"$SLURM_WORK/err" ||
      { cat "$SLURM_WORK/err" >&2; slurm_dump_logs; echo "FAIL: slurmd ${SLURM_NODE_NAMES[$i]} did not start" >&2; exit 1; }
  done

  # Ready when every node is idle (registered and not drained).
  local idle=0
  for _ in $(seq 150); do
    idle=$(slurm_in_cluster sinfo -h -N -t idle -o '%N' 2>/dev/null | sort -u | wc -l)
    [ "$idle" -eq "$nodes" ] && break
    sleep 0.2
  done
  if [ "$idle" -ne "$nodes" ]; then
    slurm_in_cluster sinfo -N -l >&2
    slurm_dump_logs
    echo "FAIL: only $idle of $nodes Slurm nodes became idle within 30 s" >&2
    exit 1
  fi
}
