#!/bin/bash
# kolorun under a real Slurm (Debian's slurmctld, slurmd and munge, started
# here by slurm_cluster.sh): the way users run it inside salloc and sbatch.
#   slurm_test.sh KOLORUN ALLREDUCE_CHECK NODES
# NODES=1: one node of 4 CPUs, and these cases, each a job of a few seconds:
#   salloc   kolorun -np 4 inside salloc: srun places the ranks with the PMI
#            plugin of kolo's MPI, KOLO_* variables, flags and -x exports
#            reach every rank, kolo's allreduce is right, shm is chosen
#   sbatch   kolorun inside an sbatch script; the job completes
#   failure  a rank exits 3: the sbatch job fails with exit code 3 within
#            seconds, kolorun's summary names the rank, no rank lives on
#   max-restarts  kolorun --max-restarts relaunches a job whose rank failed
#   scancel  scancel of a running job stops every rank
#   ctrl-c   SIGINT to srun (what Ctrl-C delivers) stops every rank at once,
#            and so does SIGINT sent to kolorun
# NODES=2: two nodes of 2 CPUs (network namespaces joined by a veth pair):
#   salloc -N 2 -n 4: ranks 0-1 on one node and 2-3 on the other, exports on
#   both, kolo's hierarchical plane chosen (kolo_backend_name()).
#   elastic  (with ELASTIC_WORKER, the 4th argument) kolorun's elastic mode
#            inside salloc -N 2, hosts from a discovery script: sl-node2's
#            rank is SIGKILLed and the node leaves the list -> srun relaunches
#            on sl-node1 alone; it comes back -> the job stops on request
#            and grows to both nodes; a listed host outside the allocation
#            is left out; every step committed exactly once.
# MPI_UNDER_TEST (openmpi or mpich) names kolo's MPI. Exits 77 (skipped)
# where the cluster cannot be made (not root, packages missing).
set -u
KOLORUN=$1
CHECK=$2
NODES=$3
ELASTIC_WORKER=${4:-}
MPI=${MPI_UNDER_TEST:-openmpi}
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=slurm_cluster.sh
source "$HERE/slurm_cluster.sh"

CASE=setup
fail() {
  echo "FAIL [$CASE]: $*" >&2
  slurm_dump_logs
  exit 1
}
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
expect_in() {  # expect_in TEXT NEEDLE
  case "$1" in *"$2"*) ;; *) fail "expected to find '$2' in: $1";; esac
}
# Every node gets a /tmp of its own (slurm_cluster.sh), so programs under
# /tmp are not there for the nodes.
case "$KOLORUN" in
  /tmp/*) echo "SKIP: the build is under /tmp, which each Slurm node of this test replaces with its own; build elsewhere"; exit 77 ;;
esac
if [ "$MPI" = mpich ]; then
  PLUGIN=pmi2 MPI_NAME=MPICH
else
  PLUGIN=pmix MPI_NAME="Open MPI"
fi

start=$(now_ms)
slurm_cluster_start "$NODES" $((NODES == 1 ? 4 : 2))
echo "cluster of $NODES node(s) up in $(( $(now_ms) - start )) ms"
W=$SLURM_WORK
# Long-running ranks run this uniquely named copy of sleep, so they can be
# counted without touching anything else on the machine.
SLEEP="$W/sleep-$$"
ln -s "$(command -v sleep)" "$SLEEP"
count_sleepers() { pgrep -fc "^$SLEEP $1" || true; }
wait_for_sleepers() {  # wait_for_sleepers ARG N: until N ranks sleep
  for _ in $(seq 150); do
    [ "$(count_sleepers "$1")" -eq "$2" ] && return 0
    sleep 0.1
  done
  fail "expected $2 ranks running '$SLEEP $1', found $(count_sleepers "$1")"
}
wait_for_no_sleepers() {  # within 15 s
  for _ in $(seq 150); do
    [ "$(count_sleepers "$1")" -eq 0 ] && return 0
    sleep 0.1
  done
  fail "$(count_sleepers "$1") ranks still run '$SLEEP $1' 15 s later"
}
job_state() {  # job_state JOBID: e.g. COMPLETED, FAILED, CANCELLED
  slurm_in_cluster scontrol show job "$1" 2>/dev/null |
    sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p'
}
wait_for_job_end() {  # wait_for_job_end JOBID: prints the final state
  local state=""
  for _ in $(seq 600); do
    state=$(job_state "$1")
    case "$state" in PENDING|RUNNING|CONFIGURING|COMPLETING|"") sleep 0.1;; *) echo "$state"; return;; esac
  done
  echo "$state"
}

job_exit_code() {  # job_exit_code JOBID: the batch script's exit status
  slurm_in_cluster scontrol show job "$1" 2>/dev/null |
    sed -n 's/.* ExitCode=\([0-9]*\):.*/\1/p'
}
# submit SCRIPT: runs an sbatch script to its end (polling more often than
# sbatch --wait does); sets JOB, STATE and CODE.
submit() {
  JOB=$(slurm_in_cluster sbatch --parsable "$1" 2>&1) || fail "sbatch $1: $JOB"
  STATE=$(wait_for_job_end "$JOB")
  CODE=$(job_exit_code "$JOB")
}

# Every rank reports its environment, then runs kolo's allreduce check.
REPORT='echo "env rank=$SLURM_PROCID x=$KOLO_TEST_X log=$KOLO_LOG_LEVEL fusion=$KOLO_FUSION_THRESHOLD cache=$KOLO_CACHE_CAPACITY"; exec "$0"'

# shellcheck source=../wait_for.sh
source "$HERE/../wait_for.sh"

elastic_case() {
  CASE=elastic
  local t state=$W/elastic log=$W/elastic.log hosts=$W/elastic.hosts
  t=$(now_ms)
  mkdir -p "$state"
  printf 'sl-node1:1\nsl-node2:1\nnot-in-the-allocation:1\n' >"$hosts"
  printf '#!/bin/sh\ncat %s\n' "$hosts" >"$W/discover"
  chmod +x "$W/discover"
  slurm_in_cluster timeout 150 salloc -N 2 -n 2 "$KOLORUN" --verbose \
    --host-discovery-script "$W/discover" --discovery-interval 0.2 \
    --min-np 1 --max-np 2 --max-restarts 3 --host-cooldown 1 \
    "$ELASTIC_WORKER" "$state" 60 60 >"$log" 2>&1 &
  local salloc_pid=$!
  wait_for 60 "$state/steps.log" "step=10 size=2" ||
    { cat "$log"; fail "the 2-rank job did not reach step 10"; }
  # sl-node2's rank: the elastic_worker process in that node's namespace.
  local pid victim=""
  for pid in $(ip netns pids "${SLURM_NODE_NS[1]}"); do
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = elastic_worker ] && victim=$pid
  done
  [ -n "$victim" ] || { cat "$log"; fail "no elastic_worker runs on sl-node2"; }
  kill -9 "$victim"
  printf 'sl-node1:1\nnot-in-the-allocation:1\n' >"$hosts"
  wait_for 60 "$state/steps.log" "restart=1 step=[0-9]+ size=1" ||
    { cat "$log"; fail "the job did not go on with 1 rank after sl-node2 failed"; }
  sleep 1
  printf 'sl-node1:1\nsl-node2:1\nnot-in-the-allocation:1\n' >"$hosts"
  wait "$salloc_pid"
  local rc=$?
  cat "$log"
  [ "$rc" -eq 0 ] || fail "salloc kolorun (elastic) exited $rc"
  local got
  got=$(sed -E 's/.* step=([0-9]+) .*/\1/' "$state/steps.log" | tr '\n' ' ')
  [ "$got" = "$(seq -s ' ' 1 60) " ] ||
    fail "steps committed out of order or twice: $got"
  local out
  out=$(cat "$log")
  expect_in "$out" "srun runs each launch on the discovered nodes"
  expect_in "$out" "host not-in-the-allocation is not a node of Slurm allocation"
  expect_in "$out" "launch 1: 2 ranks on sl-node1:1,sl-node2:1 (KOLO_ELASTIC_RESTART=0)"
  expect_in "$out" "--nodelist=sl-node1,sl-node2 --distribution=arbitrary"
  expect_in "$out" "was killed by signal 9"
  expect_in "$out" "host sl-node2 at fault"
  expect_in "$out" "launch 2: 1 rank on sl-node1:1 (KOLO_ELASTIC_RESTART=1)"
  expect_in "$out" "--nodelist=sl-node1 --distribution=arbitrary"
  expect_in "$out" "the job stopped on request"
  expect_in "$out" "launch 3: 2 ranks on sl-node1:1,sl-node2:1 (KOLO_ELASTIC_RESTART=2)"
  expect_in "$out" "job finished after 3 launches (1 restart after failures)"
  grep -q "restart=2 step=60 size=2" "$state/steps.log" ||
    fail "the last steps did not run on both nodes again"
  echo "PASS [$CASE] in $(( $(now_ms) - t )) ms"
}

if [ "$NODES" -eq 2 ]; then
  CASE=two-nodes
  t=$(now_ms)
  OUT=$(KOLO_CACHE_CAPACITY=7 slurm_in_cluster timeout 90 salloc -N 2 -n 4 \
    "$KOLORUN" -np 4 --verbose -x KOLO_TEST_X=from-x --fusion-threshold-mb 2 \
    sh -c "$REPORT" "$CHECK" 2>&1)
  rc=$?
  echo "$OUT"
  [ "$rc" -eq 0 ] || fail "salloc kolorun exited $rc"
  expect_in "$OUT" "--mpi=$PLUGIN"
  for rank in 0 1 2 3; do
    node=sl-node$((rank / 2 + 1))
    expect_in "$OUT" "$rank: env rank=$rank x=from-x log= fusion=2097152 cache=7"
    expect_in "$OUT" "$rank: host=$node rank=$rank size=4 local_rank=$((rank % 2)) local_size=2 cross_rank=$((rank / 2)) cross_size=2 cpu_operations=unset result=ok"
    expect_in "$OUT" "$rank: kolo rank=$rank backend=hierarchical mpi=$MPI_NAME"
  done
  echo "PASS [$CASE] in $(( $(now_ms) - t )) ms"
  if [ -n "$ELASTIC_WORKER" ]; then elastic_case; fi
  echo "PASS: kolorun under Slurm, 2 nodes x 2 ranks ($MPI_NAME, srun --mpi=$PLUGIN)"
  exit 0
fi

CASE=salloc
t=$(now_ms)
OUT=$(KOLO_CACHE_CAPACITY=7 slurm_in_cluster timeout 90 salloc -n 4 \
  "$KOLORUN" -np 4 --verbose --log-level info -x KOLO_TEST_X=from-x \
  --fusion-threshold-mb 2 sh -c "$REPORT" "$CHECK" 2>&1)
rc=$?
echo "$OUT"
[ "$rc" -eq 0 ] || fail "salloc kolorun exited $rc"
expect_in "$OUT" "kolorun: launcher: Slurm"
expect_in "$OUT" "kolorun: ranks use $MPI_NAME: srun --mpi=$PLUGIN"
for rank in 0 1 2 3; do
  expect_in "$OUT" "$rank: env rank=$rank x=from-x log=info fusion=2097152 cache=7"
  expect_in "$OUT" "$rank: host=sl-node1 rank=$rank size=4 local_rank=$rank local_size=4 cross_rank=0 cross_size=1 cpu_operations=unset result=ok"
  expect_in "$OUT" "$rank: kolo rank=$rank backend=shm mpi=$MPI_NAME"
done
echo "PASS [$CASE] in $(( $(now_ms) - t )) ms"

CASE=sbatch
t=$(now_ms)
cat >"$W/job.sh" <<SCRIPT
#!/bin/sh
#SBATCH --ntasks=3
#SBATCH --output=$W/job.out
exec "$KOLORUN" -np 3 "$CHECK"
SCRIPT
submit "$W/job.sh"
OUT=$(cat "$W/job.out" 2>/dev/null)
echo "$OUT"
[ "$STATE" = COMPLETED ] && [ "$CODE" = 0 ] ||
  fail "job $JOB ended $STATE with exit code $CODE"
for rank in 0 1 2; do
  expect_in "$OUT" "$rank: host=sl-node1 rank=$rank size=3 local_rank=$rank local_size=3 cross_rank=0 cross_size=1 cpu_operations=unset result=ok"
done
echo "PASS [$CASE] in $(( $(now_ms) - t )) ms"

CASE=failure
t=$(now_ms)
cat >"$W/fail.sh" <<SCRIPT
#!/bin/sh
#SBATCH --ntasks=3
#SBATCH --output=$W/fail.out
exec "$KOLORUN" -np 3 sh -c 'if [ "\$SLURM_PROCID" = 1 ]; then exit 3; fi; exec "$SLEEP" 240'
SCRIPT
submit "$W/fail.sh"
elapsed=$(( $(now_ms) - t ))
OUT=$(cat "$W/fail.out" 2>/dev/null)
echo "$OUT"
[ "$STATE" = FAILED ] && [ "$CODE" = 3 ] ||
  fail "job $JOB ended $STATE with exit code $CODE, expected FAILED with 3"
expect_in "$OUT" "kolorun: job failed with exit status 3; first failure: rank 1 on host sl-node1 exited with status 3"
[ "$elapsed" -lt 20000 ] || fail "the job took $elapsed ms to fail (limit 20000)"
wait_for_no_sleepers 240
echo "PASS [$CASE] in $elapsed ms"

CASE=max-restarts
t=$(now_ms)
# kolorun's relaunch after a failure (elastic.h) through srun: rank 1 fails
# the first launch; the second, with KOLO_ELASTIC_RESTART=1, finishes.
OUT=$(slurm_in_cluster timeout 90 salloc -n 2 "$KOLORUN" -np 2 --max-restarts 1 \
  sh -c 'echo "restart=$KOLO_ELASTIC_RESTART rank=$SLURM_PROCID";
         [ "$KOLO_ELASTIC_RESTART$SLURM_PROCID" = 01 ] && exit 5; exit 0' 2>&1)
rc=$?
echo "$OUT"
[ "$rc" -eq 0 ] || fail "salloc kolorun --max-restarts 1 exited $rc"
expect_in "$OUT" "1: restart=0 rank=1"
expect_in "$OUT" "1: restart=1 rank=1"
expect_in "$OUT" "rank 1 on host sl-node1 exited with status 5"
expect_in "$OUT" "elastic: restart 1 of 1"
expect_in "$OUT" "elastic: job finished after 2 launches (1 restart after failures)"
echo "PASS [$CASE] in $(( $(now_ms) - t )) ms"

CASE=scancel
t=$(now_ms)
cat >"$W/long.sh" <<SCRIPT
#!/bin/sh
#SBATCH --ntasks=2
#SBATCH --output=$W/long.out
exec "$KOLORUN" -np 2 "$SLEEP" 241
SCRIPT
job=$(slurm_in_cluster sbatch --parsable "$W/long.sh") || fail "sbatch failed: $job"
wait_for_sleepers 241 2
slurm_in_cluster scancel "$job"
wait_for_no_sleepers 241
state=$(wait_for_job_end "$job")
[ "$state" = CANCELLED ] || fail "job $job ended $state, expected CANCELLED"
echo "PASS [$CASE] in $(( $(now_ms) - t )) ms"

CASE=ctrl-c
for target in srun kolorun; do
  t=$(now_ms)
  slurm_in_cluster timeout 60 salloc -n 2 "$KOLORUN" -np 2 "$SLEEP" 242 \
    >"$W/int.out" 2>&1 &
  salloc_pid=$!
  wait_for_sleepers 242 2
  # A terminal's Ctrl-C reaches srun itself (kolorun passes on only signals
  # sent by processes); one must be enough.
  pid=$(pgrep -f "^$KOLORUN -np 2 $SLEEP 242")
  [ "$target" = kolorun ] || pid=$(pgrep -P "$pid" srun)
  [ -n "$pid" ] || fail "no $target process found"
  kill -INT "$pid"
  wait_for_no_sleepers 242
  wait "$salloc_pid"
  rc=$?
  [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] ||
    fail "after SIGINT to $target, salloc kolorun exited $rc: $(cat "$W/int.out"; ps -ef | grep -v grep | grep -E "salloc|srun|kolorun")"
  echo "PASS [$CASE: SIGINT to $target, exit status $rc] in $(( $(now_ms) - t )) ms"
done

echo "PASS: kolorun under Slurm, 1 node ($MPI_NAME, srun --mpi=$PLUGIN)"
