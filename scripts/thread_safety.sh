#!/usr/bin/env bash
# Builds the runtime (libkolo) and the LibTorch adapter (libkolo_torch) with
# clang's thread-safety analysis as errors (KOLO_THREAD_SAFETY,
# cmake/KoloSanitizers.cmake) in build-tsa/; exits non-zero on any finding.
# Reruns reuse the build tree. CI runs it (scripts/test.sh).
#   KOLO_JOBS=1 scripts/thread_safety.sh   fewer compile jobs (default: nproc)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build-tsa
jobs=${KOLO_JOBS:-$(nproc)}
start=$SECONDS
mkdir -p "$build"
# Debug: no optimiser passes (the analysis runs in the front end).
CC=clang CXX=clang++ cmake -S "$root" -B "$build" -G "Unix Makefiles" \
  -DCMAKE_BUILD_TYPE=Debug -DKOLO_THREAD_SAFETY=ON -DKOLO_BUILD_BENCH=OFF \
  -DKOLO_BUILD_TESTS=OFF >"$build/configure.log" 2>&1 ||
  { cat "$build/configure.log"; exit 1; }
targets=(kolo)
grep -q 'kolo_torch' "$build/Makefile" && targets+=(kolo_torch)
if ! cmake --build "$build" -j "$jobs" --target "${targets[@]}" >"$build/build.log" 2>&1; then
  grep -E "warning:|error:" -A3 "$build/build.log" || tail -50 "$build/build.log"
  echo "thread_safety.sh: FAILED (${targets[*]}; log: $build/build.log)"
  exit 1
fi
echo "thread_safety.sh: ${targets[*]} clean under clang -Wthread-safety in $((SECONDS - start)) s"
