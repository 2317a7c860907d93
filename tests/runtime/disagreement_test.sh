#!/usr/bin/env bash
# Ranks that disagree (tests/runtime/mpi/disagreement_test.cc):
#   settings   one rank started with a different KOLO_SHM_SLOT_BYTES or
#              KOLO_FUSION_THRESHOLD: init fails on every rank with
#              InvalidArgument naming the variable, both ranks and both
#              values; no rank dies of a signal, none computes anything.
#   allocator  one rank fails locally inside an allgather: with every data
#              plane, no rank reports success for it; shm and ring ranks
#              fail with Aborted naming rank 1, the Open MPI plane ends the
#              job through MPI_Abort.
#   names      reserved and oversized names fail on the submitting rank only.
# usage: disagreement_test.sh MPIEXEC BINARY CASE
# A rank that exits non-zero (or without MPI_Finalize, as an aborted kolo
# rank does) makes mpirun kill the others unless --enable-recovery is given.
set -u
mpiexec=$1 binary=$2 case=$3
out=$(mktemp)
err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT
recovery=""
run() {  # run TIMEOUT mpirun-arguments...
  local limit=$1; shift
  # The ranks' verdict lines go to stdout, logs to stderr: kept apart so
  # that no log line lands inside a verdict line.
  timeout "$limit" "$mpiexec" --oversubscribe --bind-to none $recovery \
    "$@" >"$out" 2>"$err"
  code=$?
  cat "$out" "$err"
  if [ "$code" -eq 124 ]; then echo "FAIL: the job hung"; exit 1; fi
  if grep -qiE 'bus error|signal 7|SIGBUS|Segmentation|core dumped' "$out" "$err"; then
    echo "FAIL: a rank died of a signal"; exit 1
  fi
}
expect() {  # expect COUNT PATTERN
  local n
  n=$(grep -cE "$2" "$out")
  if [ "$n" -ne "$1" ]; then
    echo "FAIL: expected $1 line(s) matching '$2', saw $n"; exit 1
  fi
}
case "$case" in
  settings)
    # A rank that exits non-zero must not make mpirun kill the others
    # before they print their verdict.
    recovery=--enable-recovery
    run 60 -np 1 -x KOLO_SHM_SLOT_BYTES=1048576 "$binary" init : -np 1 "$binary" init
    expect 2 '^init-failed 3 ranks disagree on KOLO_SHM_SLOT_BYTES: rank 0 has 1048576 but rank 1 has 524288'
    expect 0 '^values-'
    run 60 -np 2 "$binary" init : -np 1 -x KOLO_FUSION_THRESHOLD=65536 "$binary" init
    expect 3 '^init-failed 3 ranks disagree on KOLO_FUSION_THRESHOLD: rank 0 has 67108864 but rank 2 has 65536'
    expect 0 '^values-'
    # The same settings everywhere: the fused values are exact.
    run 60 -np 3 -x KOLO_FUSION_THRESHOLD=65536 "$binary" init
    expect 3 '^values-ok'
    ;;
  allocator)
    # Aborted ranks leave MPI alone at exit; mpirun must not kill the
    # others before they print.
    recovery=--enable-recovery
    for plane in shm ring; do
      run 60 -np 3 -x KOLO_CPU_OPERATIONS=$plane "$binary" allocator
      expect 0 '^allgather-status [0-9] 0 '
      expect 3 '^allgather-status [0-9] 10 '
      expect 1 '^allgather-status 1 10 rank 1 could not run allgather .gather.: the test.s allocator refuses'
    done
    # Pretend hosts: the hierarchical plane runs allgather through Open
    # MPI, which cannot be interrupted: the job ends through MPI_Abort
    # (which --enable-recovery would not let end the job).
    recovery=""
    for plane in mpi hierarchical; do
      run 60 -np 2 -x KOLO_HOSTNAME=a -x KOLO_CPU_OPERATIONS=$plane "$binary" allocator : \
             -np 2 -x KOLO_HOSTNAME=b -x KOLO_CPU_OPERATIONS=$plane "$binary" allocator
      expect 0 '^allgather-status [0-9] 0 '
      if ! grep -q 'ending the job with MPI_Abort' "$err"; then
        echo "FAIL: rank 1 did not end the job through MPI_Abort"; exit 1
      fi
      if [ "$code" -eq 0 ]; then echo "FAIL: mpirun exited 0"; exit 1; fi
    done
    ;;
  names)
    run 60 -np 3 "$binary" names
    expect 3 '^names-ok'
    ;;
  shmfull)
    # A container-sized /dev/shm (a 4 MiB tmpfs in a private mount
    # namespace) that cannot hold two 8 MiB segments: init fails on every
    # rank with a message saying what is needed, not SIGBUS later.
    if ! unshare -m true 2>/dev/null; then
      echo "SKIP: cannot create a mount namespace here"; exit 0
    fi
    timeout 60 unshare -m sh -c 'mount -t tmpfs -o size=4m tmpfs /dev/shm &&
      exec "$0" --oversubscribe --bind-to none --enable-recovery \
        -x OMPI_MCA_btl_vader_backing_directory=/tmp \
        -np 2 -x KOLO_SHM_SLOT_BYTES=4194304 "$1" init' \
      "$mpiexec" "$binary" >"$out" 2>"$err"
    code=$?
    cat "$out" "$err"
    if [ "$code" -eq 124 ]; then echo "FAIL: the job hung"; exit 1; fi
    if grep -qiE 'bus error|signal 7|SIGBUS' "$out" "$err"; then
      echo "FAIL: a rank died of SIGBUS"; exit 1
    fi
    expect 2 '^init-failed '
    if ! grep -q "init-failed 8 shared memory: /dev/shm cannot hold kolo's segment of 8392832 bytes" "$out"; then
      echo "FAIL: no rank named the size /dev/shm must hold"; exit 1
    fi
    ;;
  *) echo "unknown case $case"; exit 2 ;;
esac
echo PASS
