#!/usr/bin/env bash
# Runs peer_failure_test on NP ranks, kills rank VICTIM mid-run (or stops
# it with SIGSTOP: WHEN=stop) and checks that every survivor reported an
# Aborted failure within 10 s and that the survivors exited non-zero, all
# within the time limit.
# usage: peer_failure_test.sh MPIEXEC BINARY NP VICTIM [WHEN [pid-namespaces]]
#   WHEN: between-steps (default), mid-collective, mid-broadcast or stop
#   pid-namespaces: every rank runs in a PID namespace of its own (sharing
#   /dev/shm), where its peers' PIDs mean nothing.
# EXPECT_OUTPUT (environment), when set: a fixed string the job's output
# must contain.
set -u
mpiexec=$1 binary=$2 np=$3 victim=$4 when=${5:-between-steps} isolation=${6:-}
output=$(mktemp)
pidfile=$(mktemp)
rm -f "$pidfile"
trap 'rm -f "$output" "$pidfile"' EXIT
export KOLO_TEST_STOP_PID_FILE=$pidfile
wrap=()
if [ "$isolation" = pid-namespaces ]; then
  if ! unshare --pid --fork true 2>/dev/null; then
    echo "SKIP: cannot create PID namespaces here"; exit 0
  fi
  # sh is the namespace's init; the rank runs as its child (an init cannot
  # SIGKILL itself).
  wrap=(unshare --pid --fork)
fi
start=$(date +%s)
# The launcher must not kill the survivors itself, so that the test sees
# what kolo does: Open MPI's --enable-recovery, Hydra's -disable-auto-cleanup.
# Hydra then tells the survivors of a death with SIGUSR1, which MPICH's ch4
# device does not catch (they would die of it), so the ranks ignore it here.
# MPI_UNDER_TEST (set by ctest) names the MPI.
case "${MPI_UNDER_TEST:-openmpi}" in
  mpich) flags=(-disable-auto-cleanup) ignore="trap '' USR1;" ;;
  *) flags=(--oversubscribe --bind-to none --enable-recovery) ignore="" ;;
esac
timeout 90 "$mpiexec" "${flags[@]}" -np "$np" "${wrap[@]}" sh -c \
  "$ignore"'"$0" "$1" "$2"; echo "exit-status rank ${OMPI_COMM_WORLD_RANK:-$PMI_RANK} $?"' \
  "$binary" "$victim" "$when" >"$output" 2>&1 &
job=$!
if [ "$when" = stop ]; then
  # The stopped rank never exits by itself: once the survivors have spoken
  # (or a minute has passed), kill it so that mpirun can finish.
  for _ in $(seq 1 600); do
    [ "$(grep -c '^exit-status rank' "$output")" -ge $((np - 1)) ] && break
    sleep 0.1
  done
  [ -s "$pidfile" ] && kill -KILL "$(cat "$pidfile")" 2>/dev/null
fi
wait "$job"
code=$?
elapsed=$(( $(date +%s) - start ))
cat "$output"
survivors=$(grep -c '^peer-failure-ok rank' "$output")
failed_exits=$(grep -E '^exit-status rank [0-9]+ [1-9]' "$output" | grep -vc "rank $victim ")
echo "mpirun exit code $code after ${elapsed}s; $survivors of $((np - 1)) survivors reported Aborted in time; $failed_exits exited non-zero"
if [ "$code" -eq 124 ]; then
  echo "FAIL: the job hung"; exit 1
fi
if [ "$failed_exits" -ne $((np - 1)) ]; then
  echo "FAIL: every survivor must exit non-zero"; exit 1
fi
if [ "$survivors" -ne $((np - 1)) ]; then
  echo "FAIL: every survivor must see Aborted within 10 s"; exit 1
fi
if [ -n "${EXPECT_OUTPUT:-}" ] && ! grep -qF -- "$EXPECT_OUTPUT" "$output"; then
  echo "FAIL: the output lacks: $EXPECT_OUTPUT"; exit 1
fi
echo "PASS"
