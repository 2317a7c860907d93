// Mutex, MutexLock and CondVar: std::mutex and std::condition_variable with
// Abseil's thread-safety annotations, so the compiler checks GUARDED_BY.
// kolo uses these rather than absl::Mutex because ThreadSanitizer sees
// pthread locks but not the atomics inside a prebuilt (uninstrumented)
// Abseil, and kolo's tests run under ThreadSanitizer.
#ifndef KOLO_RUNTIME_COMMON_MUTEX_H_
#define KOLO_RUNTIME_COMMON_MUTEX_H_

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "absl/base/thread_annotations.h"

namespace kolo {

class ABSL_LOCKABLE Mutex {
 public:
  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }
  bool TryLock() ABSL_EXCLUSIVE_TRYLOCK_FUNCTION(true) {
    return mu_.try_lock();
  }

 private:
  friend class CondVar;
  std::mutex mu_;
};

class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) {
    mu_->Lock();
  }
  ~MutexLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* const mu_;
};

class CondVar {
 public:
  // Atomically releases *mu and sleeps until notified; re-acquires *mu.
  void Wait(Mutex* mu) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    std::unique_lock<std::mutex> lock(mu->mu_, std::adopt_lock);
    cv_.wait(lock);
    lock.release();
  }
  // Wait() for at most `seconds`; false when the time ran out.
  bool WaitWithTimeout(Mutex* mu, double seconds)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    std::unique_lock<std::mutex> lock(mu->mu_, std::adopt_lock);
    const bool signalled =
        cv_.wait_for(lock, std::chrono::duration<double>(seconds)) ==
        std::cv_status::no_timeout;
    lock.release();
    return signalled;
  }
  void SignalAll() { cv_.notify_all(); }

 private:
  std::condition_variable cv_;
};

}  // namespace kolo

#endif  // KOLO_RUNTIME_COMMON_MUTEX_H_
