#!/bin/bash
# kolo::TuneMemoryAllocator (kolo/memory.h) in real processes: it tunes
# glibc so that freed training buffers are reused (no mmap per step), and
# leaves alone what kolorun or the user already chose.
#   memory_allocator_test.sh PROBE
set -u
probe=$1
fail() { echo "FAIL: $*" >&2; exit 1; }
expect() {  # expect WANT ENV...
  local want=$1; shift
  local got
  got=$(env -u KOLO_MEMORY_ALLOCATOR -u MALLOC_MMAP_THRESHOLD_ -u MALLOC_TRIM_THRESHOLD_ \
    -u MALLOC_TOP_PAD_ -u GLIBC_TUNABLES -u LD_PRELOAD "$@" "$probe") || fail "$* $probe failed"
  [ "$got" = "$want" ] || fail "with '$*': expected '$want', got '$got'"
  echo "ok: ${*:-(defaults)} -> $got"
}
# Untouched glibc maps the first 8 MiB buffer (above its 128 KiB starting
# threshold) and raises its threshold when that is freed; setting any malloc
# variable fixes the threshold, so with MALLOC_TOP_PAD_=0 alone every step
# maps anew. Tuned, none is mapped.
expect "allocator=system new_mmaps=1" KOLO_MEMORY_ALLOCATOR=system
expect "allocator=glibc (tuned) new_mmaps=0"
expect "allocator=glibc (tuned) new_mmaps=0" KOLO_MEMORY_ALLOCATOR=glibc
expect "allocator=glibc (environment) new_mmaps=0" MALLOC_MMAP_THRESHOLD_=33554432
expect "allocator=glibc (environment) new_mmaps=3" MALLOC_TOP_PAD_=0
expect "allocator=glibc (environment) new_mmaps=3" GLIBC_TUNABLES=glibc.malloc.trim_threshold=0
for name in tcmalloc jemalloc; do
  case $name in
    tcmalloc) path=$(ls /usr/lib/*/libtcmalloc_minimal.so.4 2>/dev/null | head -1) ;;
    jemalloc) path=$(ls /usr/lib/*/libjemalloc.so.2 2>/dev/null | head -1) ;;
  esac
  [ -n "$path" ] || { echo "skip: $name is not installed"; continue; }
  # mallinfo2 is glibc's and counts nothing under another allocator.
  expect "allocator=$name new_mmaps=0" LD_PRELOAD="$path"
done
echo PASS
