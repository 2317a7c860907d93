// PeerLife: how the ranks of one host tell that each other is alive while
// they wait for each other in shared memory, without PIDs (which mean
// nothing across PID namespaces that share /dev/shm, and which a zombie
// keeps).
//
// Every rank has a PeerLifeState in its own segment. Its LifeSign keeps a
// thread of its own that
//   - holds `held`, a robust process-shared mutex: when the process dies
//     (crash, SIGKILL, zombie) the kernel releases it marked "owner died",
//     which a peer's trylock reports at once;
//   - counts `beats` every 100 ms: a process that is stopped (SIGSTOP, a
//     debugger) or starved keeps the mutex but stops counting, which a peer
//     notices after the peer timeout.
// A rank that gives up on a collective it cannot finish (a local failure)
// sets `abandoned` with a reason and wakes its peers' barrier, so they fail
// at once instead of waiting for it.
#ifndef KOLO_RUNTIME_BACKEND_SHM_PEER_LIFE_H_
#define KOLO_RUNTIME_BACKEND_SHM_PEER_LIFE_H_

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "absl/strings/string_view.h"
#include "kolo/status.h"
#include "runtime/common/mutex.h"

namespace kolo {

// Lives in shared memory, zero-initialised.
struct PeerLifeState {
  pthread_mutex_t held;
  std::atomic<uint32_t> started;    // 1 once `held` is held
  std::atomic<uint32_t> abandoned;  // 1 once `reason` is written
  std::atomic<uint64_t> beats;
  char reason[256];
};
static_assert(std::atomic<uint64_t>::is_always_lock_free);

class LifeSign {
 public:
  // Starts showing this process alive in `state` (this rank's); returns
  // once the mutex is held.
  static StatusOr<std::unique_ptr<LifeSign>> Start(PeerLifeState* state);
  // Stops the thread; peers then see this rank as gone.
  ~LifeSign();

  // Tells the peers this rank will not finish the collective they wait in.
  void Abandon(absl::string_view reason);

 private:
  explicit LifeSign(PeerLifeState* state) : state_(state) {}
  void Run();

  PeerLifeState* const state_;
  Mutex mu_;
  CondVar cv_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool held_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

// Checks the peers of one host while this rank waits for them.
// Not thread-safe: one waiter.
class PeerWatch {
 public:
  // peers[r]: local rank r's state (this rank's included, never checked);
  // timeout_seconds: how long a peer may show no beat (0: forever).
  PeerWatch(std::vector<PeerLifeState*> peers, int self,
            double timeout_seconds);

  // OK while every peer lives; Aborted naming the first that died, left,
  // abandoned the job or has shown no beat for the timeout.
  Status Check();

 private:
  using Clock = std::chrono::steady_clock;
  std::vector<PeerLifeState*> peers_;
  int self_;
  double timeout_seconds_;
  std::vector<uint64_t> last_beats_;
  std::vector<Clock::time_point> last_change_;
};

}  // namespace kolo

#endif  // KOLO_RUNTIME_BACKEND_SHM_PEER_LIFE_H_
