#!/bin/bash
# kolorun's elastic mode with real jobs (elastic_worker: an allreduce per
# step, the stop check, a checkpoint after every step; see its header):
#   elastic_test.sh KOLORUN WORKER CASE
# Cases on pretend hosts (netns_hosts.sh; skipped, 77, where namespaces
# cannot be created), each host with one slot, discovered from a file the
# test edits:
#   kill-and-grow  host 2's rank is SIGKILLed mid-run and host 2 leaves the
#                  list: the job goes on on host 1 alone; host 2 comes back:
#                  the job stops on request and grows to 2 ranks again
#   rank0          host 1 (rank 0, and the host kolorun runs on) loses its
#                  rank: the job goes on on host 2
#   all-gone       every rank killed, no host left: kolorun waits, then gives
#                  up after --elastic-timeout (exit 4)
#   unreachable    the list names a host nobody answers at: the launch fails,
#                  that host cools down, the next launch runs without it
# Cases on this machine alone:
#   min-np         --min-np never reached: exit 4 after --elastic-timeout
#   bad-script     a script that prints garbage, and one that fails: exit 2
#                  naming the line / the status
#   max-restarts   a program that always fails: exit 3 after K restarts
# Every case checks kolorun's log lines for the decisions it made.
set -u
KOLORUN=$1
WORKER=$2
CASE=$3

fail() { echo "FAIL: $*" >&2; exit 1; }
HERE=$(cd "$(dirname "$0")" && pwd)

# shellcheck source=wait_for.sh
source "$HERE/wait_for.sh"

now_ms() { date +%s%3N; }

# The discovery script: prints the list file.
make_discovery() {
  HOSTS="$WORK/hosts"
  : >"$HOSTS"
  printf '#!/bin/sh\ncat %s\n' "$HOSTS" >"$WORK/discover"
  chmod +x "$WORK/discover"
}

# start_elastic ARGS...: kolorun in host 1, in the background; its output
# goes to $WORK/log.
start_elastic() {
  netns_run 1 150 "$KOLORUN" --host-discovery-script "$WORK/discover" \
    --discovery-interval 0.2 --mpi-args "$NETNS_MPI_ARGS" "$@" \
    >"$WORK/log" 2>&1 &
  KOLORUN_PID=$!
}

finish() {
  wait "$KOLORUN_PID"
  RC=$?
  cat "$WORK/log"
}

expect_log() {
  grep -qE "$1" "$WORK/log" || fail "no line matching '$1' in kolorun's output"
}

# The steps rank 0 committed, in order, are exactly 1..N.
check_steps() {
  local n=$1 got
  got=$(sed -E 's/.* step=([0-9]+) .*/\1/' "$WORK/state/steps.log" | tr '\n' ' ')
  [ "$got" = "$(seq -s ' ' 1 "$n") " ] ||
    fail "steps committed out of order or twice: $got"
}

setup_hosts() {
  . "$HERE/netns_hosts.sh"
  netns_hosts_setup "$1"
  WORK=$NETNS_WORK
  mkdir -p "$WORK/state"
  make_discovery
  A=$(netns_addr 1)
  B=$(netns_addr 2)
}

case "$CASE" in
  kill-and-grow)
    setup_hosts 2
    printf '%s:1\n%s:1\n' "$A" "$B" >"$HOSTS"
    start_elastic --min-np 1 --max-np 2 --max-restarts 3 --host-cooldown 1 \
      "$WORKER" "$WORK/state" 60 60
    wait_for 60 "$WORK/state/steps.log" "step=10 size=2" ||
      { finish; fail "the 2-rank job did not reach step 10"; }
    # Killed first: a host that leaves the list while its ranks run is
    # asked to stop gracefully instead (also a path this test takes when
    # host 2 comes back).
    killed=$(now_ms)
    netns_kill 2 elastic_worker
    printf '%s:1\n' "$A" >"$HOSTS"
    wait_for 60 "$WORK/state/steps.log" "restart=1 step=[0-9]+ size=1" ||
      { finish; fail "the job did not go on with 1 rank after host 2 failed"; }
    resumed=$(now_ms)
    wait_for 60 "$WORK/state/steps.log" "restart=1 step=[0-9]+ size=1 .*" &&
      sleep 1
    printf '%s:1\n%s:1\n' "$A" "$B" >"$HOSTS"
    finish
    [ "$RC" -eq 0 ] || fail "kolorun exited with status $RC"
    check_steps 60
    expect_log "failure seen: launch 1 ended .*rank 1 on host .* was killed by signal 9.*host $B at fault"
    expect_log "host $B removed for 1 s"
    expect_log "launch 2: 1 rank on $A:1 \(KOLO_ELASTIC_RESTART=1\)"
    expect_log "2 slots are available .* the job runs 1 ranks: asking the job to stop"
    expect_log "the job stopped on request"
    expect_log "launch 3: 2 ranks on $A:1,$B:1 \(KOLO_ELASTIC_RESTART=2\)"
    expect_log "job finished after 3 launches \(1 restart after failures\)"
    grep -q "restart=2 step=60 size=2" "$WORK/state/steps.log" ||
      fail "the last steps did not run on 2 ranks again"
    echo "recovery: kill -> first step on 1 rank: $((resumed - killed)) ms"
    ;;
  rank0)
    setup_hosts 2
    printf '%s:1\n%s:1\n' "$A" "$B" >"$HOSTS"
    start_elastic --min-np 1 --max-np 2 --max-restarts 2 --host-cooldown 30 \
      "$WORKER" "$WORK/state" 30 60
    wait_for 60 "$WORK/state/steps.log" "step=5 size=2" ||
      { finish; fail "the 2-rank job did not reach step 5"; }
    netns_kill 1 elastic_worker
    printf '%s:1\n' "$B" >"$HOSTS"
    finish
    [ "$RC" -eq 0 ] || fail "kolorun exited with status $RC"
    check_steps 30
    expect_log "rank 0 on host .* was killed by signal 9.*host $A at fault"
    expect_log "launch 2: 1 rank on $B:1"
    grep -q "restart=1 step=30 size=1 host=$(netns_name 2)" "$WORK/state/steps.log" ||
      fail "the job did not finish on host 2"
    ;;
  all-gone)
    setup_hosts 2
    printf '%s:1\n%s:1\n' "$A" "$B" >"$HOSTS"
    start_elastic --min-np 1 --max-restarts 5 --elastic-timeout 1 \
      "$WORKER" "$WORK/state" 1000 50
    wait_for 60 "$WORK/state/steps.log" "step=2 size=2" ||
      { finish; fail "the job did not start"; }
    netns_kill 1 elastic_worker
    netns_kill 2 elastic_worker
    : >"$HOSTS"
    finish
    [ "$RC" -eq 4 ] || fail "kolorun exited with status $RC, expected 4"
    expect_log "waiting for 1 slot \(--min-np\): usable none"
    expect_log "giving up: fewer than 1 slot for 1 s \(--elastic-timeout\)"
    ;;
  unreachable)
    setup_hosts 1
    # 10.77.0.9 has no namespace: the agent cannot reach it.
    printf '%s:1\n10.77.0.9:1\n' "$A" >"$HOSTS"
    # Open MPI fails the launch at once; Hydra starts host 1's rank and
    # waits: --start-timeout ends that launch.
    start_elastic --min-np 1 --max-restarts 2 --host-cooldown 60 \
      --start-timeout 10 "$WORKER" "$WORK/state" 10 50
    finish
    [ "$RC" -eq 0 ] || fail "kolorun exited with status $RC"
    expect_log "failure seen: launch 1 .*host 10.77.0.9 at fault"
    expect_log "launch 2: 1 rank on $A:1"
    check_steps 10
    ;;
  min-np)
    WORK=$(mktemp -d /tmp/kolo-elastic.XXXXXX)
    trap 'rm -rf "$WORK"' EXIT
    make_discovery
    printf 'localhost:2\n' >"$HOSTS"
    timeout 60 "$KOLORUN" --host-discovery-script "$WORK/discover" --min-np 3 \
      --elastic-timeout 1 --discovery-interval 0.2 "$WORKER" "$WORK" 5 10 \
      >"$WORK/log" 2>&1
    RC=$?
    cat "$WORK/log"
    [ "$RC" -eq 4 ] || fail "kolorun exited with status $RC, expected 4"
    expect_log "waiting for 3 slots \(--min-np\): usable localhost:2"
    expect_log "giving up: fewer than 3 slots for 1 s"
    ;;
  bad-script)
    WORK=$(mktemp -d /tmp/kolo-elastic.XXXXXX)
    trap 'rm -rf "$WORK"' EXIT
    printf '#!/bin/sh\necho localhost:2\necho "not a host!"\n' >"$WORK/garbage"
    printf '#!/bin/sh\necho "no inventory" >&2\nexit 3\n' >"$WORK/failing"
    chmod +x "$WORK/garbage" "$WORK/failing"
    for script in garbage failing; do
      timeout 60 "$KOLORUN" --host-discovery-script "$WORK/$script" \
        "$WORKER" "$WORK" 5 10 >"$WORK/log" 2>&1
      RC=$?
      cat "$WORK/log"
      [ "$RC" -eq 2 ] || fail "$script: kolorun exited with status $RC, expected 2"
    done
    timeout 60 "$KOLORUN" --host-discovery-script "$WORK/garbage" "$WORKER" \
      "$WORK" 5 10 2>&1 | grep -q "line 2 'not a host!' is not HOST or HOST:SLOTS" ||
      fail "the garbage line is not named"
    timeout 60 "$KOLORUN" --host-discovery-script "$WORK/failing" "$WORKER" \
      "$WORK" 5 10 2>&1 | grep -q "failing' exited with status 3" ||
      fail "the failing script's status is not named"
    ;;
  max-restarts)
    WORK=$(mktemp -d /tmp/kolo-elastic.XXXXXX)
    trap 'rm -rf "$WORK"' EXIT
    timeout 120 "$KOLORUN" -np 1 --max-restarts 1 sh -c \
      'echo "launch $KOLO_ELASTIC_RESTART"; exit 7' >"$WORK/log" 2>&1
    RC=$?
    cat "$WORK/log"
    [ "$RC" -eq 3 ] || fail "kolorun exited with status $RC, expected 3"
    [ "$(grep -cE "elastic: launch [0-9]+:" "$WORK/log")" -eq 2 ] ||
      fail "expected 2 launches"
    expect_log "launch 1\$"  # the program's own line, with KOLO_ELASTIC_RESTART=1
    expect_log "restart 1 of 1"
    expect_log "giving up after 1 restart \(--max-restarts\); last status 7"
    ;;
  *)
    fail "unknown case $CASE"
    ;;
esac
echo "PASS: $CASE"
