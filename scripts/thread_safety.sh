#!/usr/bin/env bash
# Builds the runtime (libkolo) and the LibTorch adapter's files that share
# state between threads with clang's thread-safety analysis as errors
# (KOLO_THREAD_SAFETY, cmake/KoloSanitizers.cmake) in build-tsa/; exits
# non-zero on any finding.
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
fail() {
  grep -E "warning:|error:" -A3 "$build/build.log" || tail -50 "$build/build.log"
  echo "thread_safety.sh: FAILED ($1; log: $build/build.log)"
  exit 1
}
cmake --build "$build" -j "$jobs" --target kolo >"$build/build.log" 2>&1 ||
  fail "the runtime"
# The adapter's files that use the annotated Mutex (the analysis has nothing
# to check in the others), compiled without linking.
checked="libkolo"
if [ -f "$build/bindings/torch/Makefile" ]; then
  objects=()
  for source in $(grep -l '"runtime/common/mutex.h"' "$root"/bindings/torch/*.cc); do
    objects+=("$(basename "$source").o")
  done
  make -C "$build/bindings/torch" -j "$jobs" --no-print-directory "${objects[@]}" \
    >>"$build/build.log" 2>&1 || fail "the LibTorch adapter"
  checked="$checked and ${objects[*]} of the LibTorch adapter"
fi
echo "thread_safety.sh: $checked clean under clang -Wthread-safety in $((SECONDS - start)) s"
