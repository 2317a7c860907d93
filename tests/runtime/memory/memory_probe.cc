// Prints what kolo::TuneMemoryAllocator() decided in this process and
// whether a freed 8 MiB buffer comes back without a new mmap, i.e. whether
// a training step's buffers are reused:
//   allocator=glibc (tuned) new_mmaps=0
// (memory_allocator_test.sh runs it under several environments).
#include <malloc.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "kolo/memory.h"

int main() {
  const std::string allocator = kolo::TuneMemoryAllocator();
  // Allocate, touch and free a buffer a few times, as consecutive steps do;
  // count the chunks glibc serves with mmap while the buffer is live.
  int new_mmaps = 0;
  for (int step = 0; step < 3; ++step) {
    const int before = mallinfo2().hblks;
    char* buffer = static_cast<char*>(std::malloc(8 << 20));
    if (buffer == nullptr) return 1;
    std::memset(buffer, step, 8 << 20);
    new_mmaps += static_cast<int>(mallinfo2().hblks) - before;
    std::free(buffer);
  }
  std::printf("allocator=%s new_mmaps=%d\n", allocator.c_str(), new_mmaps);
  return 0;
}
