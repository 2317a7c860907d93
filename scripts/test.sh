#!/usr/bin/env bash
# The README's test command: installs dependencies, builds kolo and runs the
# whole test suite (unit and multi-rank tests) with ctest; meanwhile, at idle
# priority, checks the runtime and the LibTorch adapter with clang's
# thread-safety analysis (scripts/thread_safety.sh) and builds kolo a second
# time against MPICH; then runs the multi-rank tests with MPICH.
#
#   scripts/test.sh                  everything
#   scripts/test.sh -R collectives   extra arguments go to the first ctest
#   THREAD_SAFETY=0 scripts/test.sh  skip the thread-safety build
#   MPICH_TESTS=0 scripts/test.sh    skip the MPICH part
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${KOLO_BUILD_DIR:-$root/build}
mpich_build=${KOLO_MPICH_BUILD_DIR:-$root/build-mpich}

begin=$SECONDS
"$root/scripts/install-deps.sh" mpich slurm
echo "test.sh: packages took $((SECONDS - begin)) s"
start=$SECONDS
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build "$build" -j "$(nproc)"
echo "test.sh: build took $((SECONDS - start)) s ($(nproc) cores)"
# The thread-safety build and the MPICH build are CPU-bound and the Open MPI
# tests mostly wait (ranks sleeping through peer timeouts and elastic waits,
# process start-up), so the two builds run beside the tests at idle
# priority (SCHED_IDLE, else nice 19): they get a core only when no test
# wants it. Their output goes to build logs, shown when they fail.
idle_priority() {  # this shell and what it starts from now on
  chrt --idle -p 0 "$BASHPID" 2>/dev/null || true
  renice -n 19 -p "$BASHPID" >/dev/null
}
mkdir -p "$mpich_build"
background_log=$mpich_build/background-builds.log
background_builds() {
  if [ "${THREAD_SAFETY:-1}" != 0 ]; then
    KOLO_JOBS=$(nproc) "$root/scripts/thread_safety.sh" || return 1
  fi
  [ "${MPICH_TESTS:-1}" = 0 ] && return 0
  # The same runtime, kolorun (real Hydra and Slurm jobs) and LibTorch adapter
  # tests with kolo built against MPICH (KOLO_MPI=mpich), and kolo_bench's
  # smoke runs, whose MPI baseline is then MPICH's MPI_Allreduce. Only what
  # those tests run is built (no CUDA, no CheXNet).
  local start=$SECONDS
  cmake -S "$root" -B "$mpich_build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DKOLO_MPI=mpich -DKOLO_WITH_NCCL=OFF -DKOLO_WITH_TORCH=OFF || return 1
  # Every program the runtime's multi-rank tests run (tests/runtime/; not the
  # single-process unit and plane tests, which run above), then kolorun's and
  # kolo_bench's. Not the LibTorch adapter: it reaches MPI only through the
  # runtime, and building it again would double the MPICH part's time (run
  # its tests under MPICH with a -DKOLO_WITH_TORCH=ON build and
  # `ctest -R '^torch_np'`).
  local runtime_programs
  runtime_programs=$(make -C "$mpich_build/tests/runtime" help |
    sed -n 's/^\.\.\. \(runtime_[a-z0-9_]*\)$/\1/p' |
    grep -vE '^runtime_(unit|plane)_tests$')
  # shellcheck disable=SC2086  # one target per word
  cmake --build "$mpich_build" -j "$(nproc)" --target $runtime_programs \
    kolorun mpi_topology_check allreduce_check elastic_worker kolo_bench \
    bench_json_check_test || return 1
  echo "test.sh: MPICH build took $((SECONDS - start)) s"
}
start=$SECONDS
(idle_priority && background_builds) >"$background_log" 2>&1 &
background=$!
tests_status=0
(cd "$build" && ctest --output-on-failure --timeout 600 "$@") || tests_status=$?
echo "test.sh: tests took $((SECONDS - start)) s"
background_status=0
wait "$background" || background_status=$?
grep -E "^(thread_safety|test)\.sh:" "$background_log" || true
echo "test.sh: the background builds ended $((SECONDS - start)) s after the tests began"
if [ "$background_status" != 0 ]; then
  tail -80 "$background_log"
  echo "test.sh: the background builds failed (log: $background_log)"
  exit 1
fi
[ "$tests_status" = 0 ] || exit "$tests_status"

[ "${MPICH_TESTS:-1}" = 0 ] && exit 0
# The disagreement and PID-namespace tests drive Open MPI's mpirun with its
# own flags (MPMD -x, --enable-recovery, --oversubscribe): Open MPI only.
# Left out to keep CI within its time (they test kolo's and kolorun's own
# logic, which does not depend on the MPI): the peer-failure cases that kill
# a rank between collectives (the mid-collective and stopped-rank cases
# stay), and the elastic cases but the one that sends a stop request
# through Hydra (which exits 0 after passing it on).
# --repeat until-pass:2: under MPICH a multi-rank test now and then fails at
# start-up within 0.3 s and passes when run again (not yet understood).
start=$SECONDS
(cd "$mpich_build" && ctest --output-on-failure --timeout 600 \
  --repeat until-pass:2 -R '^(runtime\.|kolorun\.|bench\.(smoke|json|mpi_baseline))' \
  -E '^(runtime\.(disagreement\.|peer_failure\.(shm\.pid_namespaces|.*\.victim))|kolorun\.elastic\.(rank0|all-gone|unreachable|min-np|bad-script|max-restarts))')
echo "test.sh: MPICH tests took $((SECONDS - start)) s"
