// Futex wait/wake on a 32-bit word, shared between processes when the word
// lives in shared memory (so not FUTEX_PRIVATE). Waits may return early
// (signals, spurious wake-ups): callers re-check their condition.
#ifndef KOLO_RUNTIME_COMMON_FUTEX_H_
#define KOLO_RUNTIME_COMMON_FUTEX_H_

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <cstdint>
#include <ctime>

namespace kolo {

// Sleeps while *word == expected, at most `timeout` (nullptr: no limit).
inline void FutexWait(std::atomic<uint32_t>* word, uint32_t expected,
                      const timespec* timeout) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT, expected,
          timeout, nullptr, 0);
}

inline void FutexWake(std::atomic<uint32_t>* word, int waiters) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE, waiters,
          nullptr, nullptr, 0);
}

inline void FutexWakeAll(std::atomic<uint32_t>* word) {
  FutexWake(word, INT_MAX);
}

}  // namespace kolo

#endif  // KOLO_RUNTIME_COMMON_FUTEX_H_
