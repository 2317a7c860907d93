#!/usr/bin/env bash
# Builds kolo's libFuzzer targets (fuzz/) with clang into build-fuzz/ and runs
# each one briefly over its committed corpus (ctest label fuzz); exits
# non-zero if a build fails or a fuzzer finds a crash, leak, hang or broken
# property. Reruns reuse the build tree.
#
#   scripts/fuzz.sh                        every fuzzer, KOLO_FUZZ_SECONDS each
#   KOLO_FUZZ_SECONDS=600 scripts/fuzz.sh  longer runs
#   scripts/fuzz.sh -R wire_codec          extra arguments go to ctest
#
# Crashing inputs land in build-fuzz/fuzz/artifacts/; reproduce one with
#   build-fuzz/fuzz/<name>_fuzzer <file>
# and, once fixed, commit it under fuzz/corpus/<name>/ as a regression seed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build-fuzz
jobs=${KOLO_JOBS:-$(nproc)}

mkdir -p "$build"
# KOLO_WITH_NCCL=OFF: nvcc would need clang as its host compiler, and no
# fuzzer reaches CUDA code (the wire codec, including the NCCL unique id
# field, is built without it).
cmake -S "$root" -B "$build" -G "Unix Makefiles" \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKOLO_BUILD_FUZZERS=ON \
  -DKOLO_FUZZ_SECONDS="${KOLO_FUZZ_SECONDS:-20}" \
  -DKOLO_WITH_TORCH=OFF -DKOLO_BUILD_BENCH=OFF -DKOLO_WITH_NCCL=OFF \
  >"$build/configure.log" 2>&1 || { cat "$build/configure.log"; exit 1; }
cmake --build "$build" --target kolo_fuzzers -j "$jobs"
cd "$build"
ctest -L fuzz --no-tests=error --output-on-failure -j "$jobs" "$@"
