#!/usr/bin/env bash
# Builds kolo under ThreadSanitizer (build-tsan/) and under AddressSanitizer
# with UndefinedBehaviorSanitizer (build-asan/), then runs the runtime's unit
# and multi-rank tests in each; exits non-zero if a build fails, a test fails
# or a sanitizer reports anything. Reruns reuse the build trees.
#
#   scripts/sanitizers.sh              both suites
#   scripts/sanitizers.sh thread       one suite (thread or address)
#   KOLO_JOBS=1 scripts/sanitizers.sh  fewer compile jobs (default: nproc)
#
# Run-time options and third-party suppressions: tests/sanitizers/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
jobs=${KOLO_JOBS:-$(nproc)}
supp=$root/tests/sanitizers
suites=("$@")
[[ ${#suites[@]} -gt 0 ]] || suites=(thread address)

# Open MPI's ranks get these from mpirun: it starts local ranks with its own
# environment, which ctest sets to this script's. Reports also go to files
# (log_path, set per suite below), so that one in a rank whose exit status a
# test ignores (the peer-failure tests kill ranks and expect failures) still
# fails the suite.
tsan_options="suppressions=$supp/tsan.supp history_size=4 second_deadlock_stack=1"
asan_options="strict_string_checks=1 check_initialization_order=1 detect_stack_use_after_return=1"
ubsan_options="print_stacktrace=1 halt_on_error=1"

status=0
for suite in "${suites[@]}"; do
  case $suite in
    thread) build=$root/build-tsan ;;
    address) build=$root/build-asan ;;
    *) echo "sanitizers.sh: unknown suite '$suite' (thread or address)" >&2; exit 2 ;;
  esac
  start=$SECONDS
  echo "=== $suite: configure and build in $build"
  # Only what the runtime's tests need: no LibTorch, benchmarks or CUDA.
  # KOLO_WITH_NCCL=OFF: nvcc does not take the sanitizer flags, and the NCCL
  # executor cannot run without a GPU anyway; its host-side logic
  # (runtime/backend/nccl/nccl_plan.cc) is built and tested regardless.
  mkdir -p "$build"
  cmake -S "$root" -B "$build" -G "Unix Makefiles" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKOLO_SANITIZE="$suite" \
    -DKOLO_WITH_TORCH=OFF -DKOLO_BUILD_BENCH=OFF -DKOLO_WITH_NCCL=OFF \
    >"$build/configure.log" 2>&1 || { cat "$build/configure.log"; exit 1; }
  # The test programs under tests/runtime/ and what they link.
  make -C "$build/tests/runtime" -j "$jobs" all --no-print-directory >/dev/null
  echo "=== $suite: built in $((SECONDS - start)) s; testing"
  # The runtime's unit and multi-rank tests (launcher tests start mpirun and
  # kolorun themselves and are not the runtime's).
  logs=$build/sanitizer-reports
  rm -rf "$logs" && mkdir -p "$logs"
  export TSAN_OPTIONS="$tsan_options log_path=$logs/tsan"
  export UBSAN_OPTIONS="$ubsan_options log_path=$logs/ubsan"
  for label in unit mpi; do
    # Leaks are checked in the single-process tests only. Every rank of a
    # multi-rank test runs Open MPI, which never frees much of its
    # process-lifetime state (PMIx, hwloc, component data) and unloads its
    # mca_*.so components in MPI_Finalize, so at exit LeakSanitizer reports
    # those allocations with stacks ending in "<unknown module>" that no
    # suppression can name (the slow unwinder that would name them makes
    # these tests 5-10 times slower). ASan's other checks stay on.
    leaks=1
    [[ $label == mpi ]] && leaks=0
    export ASAN_OPTIONS="$asan_options detect_leaks=$leaks log_path=$logs/asan"
    # --repeat until-pass:2 reruns a failed test once, for the timing of
    # oversubscribed multi-rank runs under a sanitizer's slowdown; any
    # sanitizer report still fails the suite through the report files below.
    if ! (cd "$build" && ctest -L "^$label\$" -LE 'launcher|bench|torch|chexnet|chaos' \
            --repeat until-pass:2 \
            --no-tests=error --output-on-failure --timeout 900); then
      status=1
    fi
  done
  if [[ -n $(ls -A "$logs") ]]; then
    echo "=== $suite: sanitizer reports (one file per process) in $logs:"
    for report in "$logs"/*; do echo "--- $report"; cat "$report"; done
    status=1
  fi
  echo "=== $suite: done in $((SECONDS - start)) s"
done
exit $status
