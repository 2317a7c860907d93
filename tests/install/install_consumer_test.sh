#!/bin/bash
# The installed CMake package as its users meet it: `cmake --install` into a
# scratch prefix, then projects that only say find_package(kolo):
#   cxx    project(app CXX), kolo::kolo, the C++ API: built and run (one
#          rank, no launcher)
#   c      project(app C), kolo::kolo, the C API: built and run
#   torch  project(app CXX), kolo::kolo_torch: configured and generated (when
#          the build has the LibTorch adapter; compiling LibTorch's headers
#          would add a minute)
#   install_consumer_test.sh BUILD_DIR HAVE_TORCH
set -euo pipefail
BUILD=$1
HAVE_TORCH=$2
WORK=$(mktemp -d /tmp/kolo-install.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

cmake --install "$BUILD" --prefix "$WORK/prefix" >"$WORK/install.log" ||
  { cat "$WORK/install.log"; fail "cmake --install failed"; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

consumer() {  # NAME LANGUAGE TARGET SOURCE-FILE-NAME SOURCE
  local dir="$WORK/$1"
  mkdir -p "$dir"
  cat >"$dir/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.18)
project(app $2)
find_package(kolo REQUIRED)
add_executable(app $4)
target_link_libraries(app PRIVATE $3)
CMAKE
  printf '%s\n' "$5" >"$dir/$4"
  cmake -S "$dir" -B "$dir/build" -DCMAKE_PREFIX_PATH="$WORK/prefix" \
    >"$dir/configure.log" 2>&1 ||
    { cat "$dir/configure.log"; fail "$1: configuring a project(app $2) consumer failed"; }
}

consumer cxx CXX kolo::kolo main.cc '#include <kolo/kolo.h>
#include <cstdio>
int main() {
  absl::Status s = kolo::Init();
  if (!s.ok()) { std::fprintf(stderr, "%s\n", s.ToString().c_str()); return 1; }
  std::printf("cxx consumer: rank %d of %d\n", kolo::Rank(), kolo::Size());
  return kolo::Shutdown().ok() ? 0 : 1;
}'
cmake --build "$WORK/cxx/build" >"$WORK/cxx/build.log" 2>&1 ||
  { cat "$WORK/cxx/build.log"; fail "cxx: build failed"; }
out=$("$WORK/cxx/build/app") || fail "cxx: the program failed: $out"
[ "$out" = "cxx consumer: rank 0 of 1" ] || fail "cxx: printed '$out'"

consumer c C kolo::kolo main.c '#include <kolo/c_api.h>
#include <stdio.h>
int main(void) {
  if (kolo_init() != 0) { fprintf(stderr, "%s\n", kolo_last_error()); return 1; }
  printf("c consumer: rank %d of %d\n", kolo_rank(), kolo_size());
  return kolo_shutdown();
}'
cmake --build "$WORK/c/build" >"$WORK/c/build.log" 2>&1 ||
  { cat "$WORK/c/build.log"; fail "c: build failed"; }
out=$("$WORK/c/build/app") || fail "c: the program failed: $out"
[ "$out" = "c consumer: rank 0 of 1" ] || fail "c: printed '$out'"

if [ "$HAVE_TORCH" = 1 ]; then
  consumer torch CXX kolo::kolo_torch main.cc '#include <kolo/torch.h>
int main() { kolo::torch::init(); kolo::torch::shutdown(); }'
  grep -q "kolo_torch" "$WORK/torch/build/CMakeFiles/app.dir/link.txt" ||
    fail "torch: the generated link line does not name libkolo_torch"
fi
echo "PASS: the installed package works for CXX-only and C-only projects"
