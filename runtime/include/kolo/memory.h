// kolo/memory.h: the memory allocator of a CPU training process.
//
// Training frees and reallocates activation buffers of several MiB on every
// step. glibc's malloc serves allocations of 128 KiB and up (its dynamic
// threshold rises to at most 32 MiB) with mmap and returns them with munmap,
// so every step page-faults its working set in again: on a 2-core VM that is
// most of a DenseNet-121 step at 64 px. tcmalloc and jemalloc keep freed
// memory; glibc does too with a fixed mmap threshold, no trimming and a top
// pad.
//
// Programs started by kolorun get this by default (kolorun
// --memory-allocator: tcmalloc preloaded when libtcmalloc-minimal4 is
// installed, else glibc tuned through MALLOC_* variables). A program started
// otherwise (mpirun, srun, a test harness) calls TuneMemoryAllocator() first
// thing in main(); it is what chexnet_train and train_bench do.
#ifndef KOLO_MEMORY_H_
#define KOLO_MEMORY_H_

#include <string>

namespace kolo {

// Tunes glibc's malloc for training (mallopt: 32 MiB mmap threshold, no
// trimming, 512 MiB top pad) unless something already decided: returns what
// is in effect, one of
//   "tcmalloc", "jemalloc"  preloaded (kolorun's default when installed)
//   "glibc (environment)"   MALLOC_*_ variables or GLIBC_TUNABLES malloc
//                           settings are set (kolorun's glibc choice, or the
//                           user's): left as they are
//   "system"                KOLO_MEMORY_ALLOCATOR=system: left as it is
//   "system (<error>)"      a KOLO_* variable is malformed: left as it is
//                           (Init() fails with the same error)
//   "glibc (tuned)"         tuned by this call
// Idempotent; safe to call before Init() and from any one thread.
std::string TuneMemoryAllocator();

}  // namespace kolo

#endif  // KOLO_MEMORY_H_
