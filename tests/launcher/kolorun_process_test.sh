#!/bin/bash
# kolorun end to end on this machine: real jobs through the launcher of the
# MPI kolo is built with (Open MPI's mpirun, or MPICH's Hydra when
# MPI_UNDER_TEST=mpich), failures, signals, timeouts, exported variables,
# and, in Open MPI builds, detection of MPICH/Hydra and Slurm through
# stand-in launchers. One case per ctest entry:
#   kolorun_process_test.sh KOLORUN CHECK_PROGRAM CASE
# CHECK_PROGRAM is mpi_topology_check (prints one "host=... result=ok" line
# and one "affinity ..." line per rank). Every wait is bounded; a failure
# prints what was expected.
set -u
KOLORUN=$1
CHECK=$2
CASE=$3

WORK=$(mktemp -d /tmp/kolorun-test.XXXXXX)
# Long-running rank commands are this uniquely named copy of sleep, so they
# can be found (and stopped) without touching anything else on the machine.
TAG="$$$(date +%N | cut -c1-4)"
SLEEP="$WORK/sleep-$TAG"
ln -s "$(command -v sleep)" "$SLEEP"
cleanup() {
  for pid in $(pgrep -f "$SLEEP" || true); do kill -9 "$pid" 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT

fail() { echo "FAIL [$CASE]: $*" >&2; exit 1; }

# What differs between the launchers kolorun drives: how output lines are
# tagged with their rank and which variable tells a rank its number.
MPI=${MPI_UNDER_TEST:-openmpi}
if [ "$MPI" = mpich ]; then
  tag() { echo "[$1] "; }          # Hydra's -prepend-rank
  RANK_VAR=PMI_RANK
else
  tag() { echo "[1,$1]<stdout>:"; }  # Open MPI's --tag-output
  RANK_VAR=OMPI_COMM_WORLD_RANK
fi
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# run_kolorun SECONDS ARGS...: kolorun under a hard timeout; sets RC, OUT,
# ERR (file contents) and ELAPSED_MS.
run_kolorun() {
  local limit=$1; shift
  local start; start=$(now_ms)
  timeout -k 5 "$limit" "$KOLORUN" "$@" >"$WORK/out" 2>"$WORK/err"
  RC=$?
  ELAPSED_MS=$(( $(now_ms) - start ))
  OUT=$(cat "$WORK/out"); ERR=$(cat "$WORK/err")
  [ "$RC" -ne 124 ] || fail "kolorun $* did not finish within ${limit}s; stderr: $ERR"
}

expect_rc() {
  [ "$RC" -eq "$1" ] || fail "expected exit status $1, got $RC; stdout: $OUT; stderr: $ERR"
}
expect_in() {  # expect_in TEXT NEEDLE
  case "$1" in *"$2"*) ;; *) fail "expected to find '$2' in: $1";; esac
}
expect_not_in() {
  case "$1" in *"$2"*) fail "did not expect '$2' in: $1";; *) ;; esac
}

# A stand-in launcher on PATH: answers --version with $2 and otherwise
# prints its arguments and exits with status $3.
fake_launcher() {
  local name=$1 version=$2 status=$3
  mkdir -p "$WORK/bin"
  cat >"$WORK/bin/$name" <<SCRIPT
#!/bin/sh
if [ "\$1" = --version ]; then printf '%s\n' "$version"; exit 0; fi
echo "fake $name: \$*"
exit $status
SCRIPT
  chmod +x "$WORK/bin/$name"
}

case "$CASE" in
  np[1-4])
    np=${CASE#np}
    run_kolorun 120 -np "$np" "$CHECK"
    expect_rc 0
    for ((r = 0; r < np; r++)); do
      expect_in "$OUT" "$(tag $r)host=$(hostname) rank=$r size=$np local_rank=$r local_size=$np cross_rank=0 cross_size=1"
      # Not bound: every rank may use every core.
      expect_in "$OUT" "$(tag $r)affinity rank=$r cpus=$(nproc --all) of $(nproc --all)"
    done
    [ "$(grep -c 'result=ok$' <<<"$OUT")" -eq "$np" ] || fail "expected $np ok lines: $OUT"
    ;;

  rank-exit)
    # Rank 2 fails at once; the others would sleep for minutes.
    run_kolorun 60 -np 4 sh -c \
      'if [ "$'$RANK_VAR'" = 2 ]; then exit 3; fi; exec '"$SLEEP"' 240'
    expect_rc 3
    [ "$ELAPSED_MS" -lt 15000 ] || fail "took ${ELAPSED_MS} ms to fail (limit 15000)"
    expect_in "$ERR" "kolorun: job failed with exit status 3; first failure: rank 2 on host $(hostname) exited with status 3"
    if [ "$MPI" = mpich ]; then
      # Hydra lets the others run on after a rank's error exit; kolorun stops it.
      expect_in "$ERR" "kolorun: mpiexec.hydra left the other ranks running after rank failure; stopping the job"
    fi
    sleep 1
    ! pgrep -f "^$SLEEP" >/dev/null || fail "ranks outlived the job"
    ;;

  rank-signal)
    run_kolorun 60 -np 2 sh -c \
      'if [ "$'$RANK_VAR'" = 1 ]; then kill -SEGV $$; fi; exec '"$SLEEP"' 240'
    [ "$RC" -ne 0 ] || fail "a rank killed by SIGSEGV left exit status 0"
    [ "$ELAPSED_MS" -lt 15000 ] || fail "took ${ELAPSED_MS} ms to fail (limit 15000)"
    expect_in "$ERR" "first failure: rank 1 on host $(hostname) was killed by signal 11"
    ;;

  recovery-exit)
    # mpirun --enable-recovery exits 0 although rank 1 failed: kolorun must
    # not.
    run_kolorun 60 --mpi-args "--enable-recovery" -np 2 sh -c \
      'if [ "$OMPI_COMM_WORLD_RANK" = 1 ]; then exit 3; fi; exit 0'
    expect_rc 1
    expect_in "$ERR" "kolorun: job failed: mpirun exited with status 0, but rank 1 on host $(hostname) exited with status 3"
    ;;

  exec-failure)
    run_kolorun 60 -np 2 /nonexistent/kolo-program
    expect_rc 127
    expect_in "$ERR" "on host $(hostname): cannot run '/nonexistent/kolo-program': No such file or directory"
    ;;

  sigterm)
    # SIGTERM to kolorun reaches mpirun, which stops every rank.
    timeout -k 5 60 "$KOLORUN" -np 2 "$SLEEP" 241 >"$WORK/out" 2>"$WORK/err" &
    pid=$!
    for _ in $(seq 100); do
      [ "$(pgrep -fc "^$SLEEP 241")" -eq 2 ] && break
      sleep 0.2
    done
    [ "$(pgrep -fc "^$SLEEP 241")" -eq 2 ] || fail "ranks did not start"
    kolorun_pid=$(pgrep -P "$pid" -f "$KOLORUN")
    sent=$(now_ms)
    kill -TERM "$kolorun_pid"
    wait "$pid"
    RC=$?
    [ "$RC" -ne 124 ] || fail "kolorun did not stop after SIGTERM"
    [ "$RC" -ne 0 ] || fail "kolorun exited 0 after SIGTERM"
    [ $(( $(now_ms) - sent )) -lt 15000 ] || fail "took too long to stop"
    sleep 1
    ! pgrep -f "^$SLEEP" >/dev/null || fail "ranks outlived kolorun"
    ;;

  sigint)
    # A Ctrl-C's SIGINT, passed on to the launcher, stops every rank, and
    # kolorun does not report the stopped job as a success (Hydra exits 0).
    timeout -k 5 60 "$KOLORUN" -np 2 "$SLEEP" 243 >"$WORK/out" 2>"$WORK/err" &
    pid=$!
    for _ in $(seq 100); do
      [ "$(pgrep -fc "^$SLEEP 243")" -eq 2 ] && break
      sleep 0.2
    done
    [ "$(pgrep -fc "^$SLEEP 243")" -eq 2 ] || fail "ranks did not start"
    kolorun_pid=$(pgrep -P "$pid" -f "$KOLORUN")
    sent=$(now_ms)
    kill -INT "$kolorun_pid"
    wait "$pid"
    RC=$?
    [ "$RC" -ne 124 ] || fail "kolorun did not stop after SIGINT"
    [ "$RC" -ne 0 ] || fail "kolorun exited 0 after SIGINT; stderr: $(cat "$WORK/err")"
    [ $(( $(now_ms) - sent )) -lt 15000 ] || fail "took too long to stop"
    sleep 1
    ! pgrep -f "^$SLEEP" >/dev/null || fail "ranks outlived kolorun"
    ;;

  start-timeout)
    # The second host's agent (in place of ssh) never starts its daemon.
    printf '#!/bin/sh\nexec %s 30\n' "$SLEEP" >"$WORK/hang-agent"
    chmod +x "$WORK/hang-agent"
    if [ "$MPI" = mpich ]; then
      agent="-launcher ssh -launcher-exec $WORK/hang-agent"
    else
      agent="--mca plm_rsh_agent $WORK/hang-agent"
    fi
    run_kolorun 60 -np 2 -H localhost:1,kolo-unreachable-host:1 --start-timeout 3 \
      --mpi-args "$agent" hostname
    expect_rc 1
    [ "$ELAPSED_MS" -lt 20000 ] || fail "took ${ELAPSED_MS} ms (limit 20000)"
    if [ "$MPI" = mpich ]; then
      # Hydra starts the local rank without waiting for the other host.
      expect_in "$ERR" "kolorun: only 1 of 2 ranks started within --start-timeout 3 s; not started: rank 1"
    else
      expect_in "$ERR" "kolorun: only 0 of 2 ranks started within --start-timeout 3 s; not started: ranks 0, 1"
    fi
    # Ranks that do start are counted, and their announcements stay hidden.
    run_kolorun 60 -np 3 --start-timeout 30 "$CHECK"
    expect_rc 0
    expect_not_in "$ERR$OUT" "kolorun-started"
    [ "$(grep -c 'result=ok$' <<<"$OUT")" -eq 3 ] || fail "expected 3 ok lines: $OUT"
    ;;

  output-filename)
    run_kolorun 60 -np 2 --output-filename "$WORK/logs" sh -c 'echo "out-$'$RANK_VAR'"'
    expect_rc 0
    for r in 0 1; do
      if [ "$MPI" = mpich ]; then
        # Hydra writes stdout alone to DIR/rank.R.stdout, tagged as shown.
        file="$WORK/logs/rank.$r.stdout" line="[$r] out-$r"
      else
        # Open MPI writes the files with the same rank tags as the terminal.
        file="$WORK/logs/1/rank.$r/stdout" line="[1,$r]<stdout>:out-$r"
      fi
      grep -qxF "$line" "$file" 2>/dev/null ||
        fail "$file lacks $line: $(ls -R "$WORK/logs" 2>&1)"
    done
    ;;

  exports)
    export KOLO_CACHE_CAPACITY=7 KOLO_HOSTNAME=pretend-host
    run_kolorun 60 -np 2 -x KOLO_TEST_X=from-x --log-level DEBUG --fusion-threshold-mb 2 \
      sh -c 'echo "x=$KOLO_TEST_X log=$KOLO_LOG_LEVEL fusion=$KOLO_FUSION_THRESHOLD cache=$KOLO_CACHE_CAPACITY"'
    expect_rc 0
    for r in 0 1; do
      expect_in "$OUT" "$(tag $r)x=from-x log=debug fusion=2097152 cache=7"
    done
    run_kolorun 60 -np 1 --dry-run sh
    expect_not_in "$OUT" "KOLO_HOSTNAME"
    if [ "$MPI" = mpich ]; then
      expect_in "$OUT" "-genvlist KOLO_CACHE_CAPACITY"
    else
      expect_in "$OUT" "-x KOLO_CACHE_CAPACITY"
    fi
    ;;

  memory-allocator)
    # What each rank's program runs with: the allocator library mapped into
    # the rank's own process (/proc/self/maps of the sh that prints) and the
    # glibc variables in its environment.
    probe='echo "maps=$(grep -q -E "libtcmalloc_minimal|libjemalloc" /proc/self/maps && echo 1 || echo 0)'\
' pre=${LD_PRELOAD:-none} mmap=${MALLOC_MMAP_THRESHOLD_:-unset}'\
' trim=${MALLOC_TRIM_THRESHOLD_:-unset} pad=${MALLOC_TOP_PAD_:-unset}"'
    tcmalloc=$(ls /usr/lib/*/libtcmalloc_minimal.so.4 2>/dev/null | head -1)
    jemalloc=$(ls /usr/lib/*/libjemalloc.so.2 2>/dev/null | head -1)
    [ -n "$tcmalloc" ] || fail "libtcmalloc-minimal4 is not installed (scripts/install-deps.sh installs it)"
    for monitor in "" --no-rank-monitor; do
      run_kolorun 60 -np 2 $monitor --memory-allocator tcmalloc sh -c "$probe"
      expect_rc 0
      for r in 0 1; do expect_in "$OUT" "$(tag $r)maps=1 pre=$tcmalloc mmap=unset"; done
      # auto: tcmalloc, since it is installed here.
      run_kolorun 60 -np 2 $monitor sh -c "$probe"
      expect_rc 0
      for r in 0 1; do expect_in "$OUT" "$(tag $r)maps=1 pre=$tcmalloc mmap=unset"; done
      run_kolorun 60 -np 2 $monitor --memory-allocator glibc sh -c "$probe"
      expect_rc 0
      for r in 0 1; do
        expect_in "$OUT" "$(tag $r)maps=0 pre=none mmap=33554432 trim=4294967296 pad=536870912"
      done
      run_kolorun 60 -np 2 $monitor --memory-allocator system sh -c "$probe"
      expect_rc 0
      for r in 0 1; do expect_in "$OUT" "$(tag $r)maps=0 pre=none mmap=unset trim=unset pad=unset"; done
      # The user's own glibc setting and preload are kept.
      MALLOC_TOP_PAD_=4096 run_kolorun 60 -np 2 $monitor -x MALLOC_TOP_PAD_ \
        --memory-allocator glibc sh -c "$probe"
      expect_rc 0
      for r in 0 1; do expect_in "$OUT" "$(tag $r)maps=0 pre=none mmap=unset trim=unset pad=4096"; done
      if [ -n "$jemalloc" ]; then
        run_kolorun 60 -np 2 $monitor --memory-allocator jemalloc sh -c "$probe"
        expect_rc 0
        for r in 0 1; do expect_in "$OUT" "$(tag $r)maps=1 pre=$jemalloc mmap=unset"; done
      fi
    done
    # A misspelt name is a usage error naming the flag (a library that is
    # not installed: launcher_test's MemoryAllocator.* cases).
    run_kolorun 10 -np 1 --memory-allocator tcmaloc sh -c true
    expect_rc 2
    expect_in "$ERR" "--memory-allocator"
    ;;

  usage-errors)
    run_kolorun 10 --help
    expect_rc 0
    expect_in "$OUT" "--start-timeout"
    run_kolorun 10 -np 2 --no-such-flag prog
    expect_rc 2; expect_in "$ERR" "unknown flag '--no-such-flag'"
    # An unknown flag before other flags is named too, and nothing runs (it
    # once started a program named "2").
    run_kolorun 10 --no-such-flag -np 2 -- true
    expect_rc 2; expect_in "$ERR" "unknown flag '--no-such-flag'"
    expect_not_in "$ERR" "did you mean"
    run_kolorun 10 --dryrun -np 2 hostname
    expect_rc 2; expect_in "$ERR" "unknown flag '--dryrun'; did you mean '--dry-run'?"
    expect_not_in "$OUT" "mpirun"
    run_kolorun 10 -np 2 -H a:2,b:two prog
    expect_rc 2; expect_in "$ERR" "-H entry 2 'b:two'"
    printf 'localhost slots=2\nnode2 slots=\n' >"$WORK/hosts"
    run_kolorun 10 -np 2 --hostfile "$WORK/hosts" prog
    expect_rc 2; expect_in "$ERR" "hostfile $WORK/hosts line 2"
    run_kolorun 10 -np 2 --hostfile "$WORK/missing" prog
    expect_rc 2; expect_in "$ERR" "cannot read hostfile $WORK/missing"
    run_kolorun 10 -np 5 -H localhost:2,kolo-remote:2 prog
    expect_rc 2; expect_in "$ERR" "-np 5 is more ranks than the 4 slots"
    run_kolorun 10 -np 2 --cycle-time-ms soon prog
    expect_rc 2; expect_in "$ERR" "--cycle-time-ms: 'soon'"
    run_kolorun 10 -np 2 -x UNSET_VARIABLE_$TAG prog
    expect_rc 2; expect_in "$ERR" "UNSET_VARIABLE_$TAG is not set"
    ;;

  missing-mpirun)
    RC=0
    ERR=$(env PATH="$WORK/empty" "$KOLORUN" -np 2 hostname 2>&1) || RC=$?
    expect_rc 2
    if [ "$MPI" = mpich ]; then
      expect_in "$ERR" "neither mpiexec.hydra, mpiexec.mpich nor mpirun found on PATH"
      expect_in "$ERR" "apt-get install mpich"
    else
      expect_in "$ERR" "mpirun not found on PATH"
      expect_in "$ERR" "openmpi-bin"
    fi
    fake_launcher mpirun "mpirun from some other MPI 1.0" 0
    RC=0
    ERR=$(env PATH="$WORK/bin" "$KOLORUN" -np 2 hostname 2>&1) || RC=$?
    expect_rc 2
    expect_in "$ERR" "'mpirun from some other MPI 1.0'"
    ;;

  hydra)
    fake_launcher mpirun "HYDRA build details:
    Version:                                 4.0.2" 5
    PATH="$WORK/bin:$PATH" run_kolorun 10 -np 2 -x A=1 --dry-run hostname
    expect_rc 0
    [ "$OUT" = "$WORK/bin/mpirun -prepend-rank -genv A 1 -n 2 $KOLORUN --rank-monitor -- hostname" ] ||
      fail "unexpected Hydra command: $OUT"
    # Run for real: the launcher's output passes through and its status is
    # kolorun's.
    PATH="$WORK/bin:$PATH" run_kolorun 10 -np 2 hostname
    expect_rc 5
    expect_in "$OUT" "fake mpirun: -prepend-rank -n 2 $KOLORUN --rank-monitor -- hostname"
    expect_in "$ERR" "kolorun: job failed with exit status 5"
    ;;

  slurm)
    fake_launcher srun "slurm 22.05" 0
    SLURM_JOB_ID=4242 PATH="$WORK/bin:$PATH" run_kolorun 10 -np 3 --dry-run hostname
    expect_rc 0
    # The stand-in names no MPI plugins, so kolorun asks for none.
    [ "$OUT" = "$WORK/bin/srun --ntasks 3 --kill-on-bad-exit=1 --cpu-bind=none --quit-on-interrupt --label $KOLORUN --rank-monitor -- hostname" ] ||
      fail "unexpected srun command: $OUT"
    # Named hosts mean mpirun, even inside an allocation.
    SLURM_JOB_ID=4242 PATH="$WORK/bin:$PATH" run_kolorun 10 -np 2 -H localhost:2 --dry-run hostname
    expect_rc 0
    expect_in "$OUT" "mpirun"
    expect_not_in "$OUT" "srun"
    ;;

  *)
    fail "unknown case"
    ;;
esac
echo "PASS [$CASE]"
