#!/usr/bin/env bash
# The README's test command: installs dependencies, builds kolo and runs the
# whole test suite (unit and multi-rank tests) with ctest.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${KOLO_BUILD_DIR:-$root/build}

"$root/scripts/install-deps.sh"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build "$build" -j "$(nproc)"
cd "$build"
ctest --output-on-failure --timeout 600 "$@"
