// Timeline: a Chrome-trace JSON file (chrome://tracing, Perfetto) of what
// rank 0 saw, one row per tensor:
//   NEGOTIATE_<OP>   from the first rank's request until every rank's, with
//                    an instant tick (named after the rank) as each reports
//   QUEUE            from agreement until the collective starts
//   MEMCPY_IN_FUSION_BUFFER, <BACKEND>_<OP> (e.g. SHM_ALLREDUCE),
//   MEMCPY_OUT_FUSION_BUFFER
// and, optionally, a CYCLE marker per response list.
//
// Events are formatted on the caller's thread and written by a thread of
// the timeline's own. The file is a JSON array with one event per line; a
// clean Stop() closes it. Cut short (the process was killed), it lacks only
// the closing bracket, which chrome://tracing and Perfetto accept as is;
// appending "{}]" makes it strict JSON.
//
// Thread-safe.
#ifndef KOLO_RUNTIME_COMMON_TIMELINE_H_
#define KOLO_RUNTIME_COMMON_TIMELINE_H_

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "kolo/status.h"
#include "runtime/common/mutex.h"

namespace kolo {

class Timeline {
 public:
  Timeline() = default;
  ~Timeline() { Stop(); }

  // Starts writing to `path` (replacing a running timeline).
  Status Start(const std::string& path, bool mark_cycles);
  // Finishes the file. Safe to call when not running.
  void Stop();
  bool active() const { return active_.load(std::memory_order_acquire); }

  void NegotiateStart(const std::string& tensor, const char* op);
  void NegotiateRankReady(const std::string& tensor, int rank);
  void NegotiateEnd(const std::string& tensor);
  // A span of `activity` on the tensor's row, given in steady-clock ns.
  void Span(const std::string& tensor, const std::string& activity,
            int64_t start_ns, int64_t end_ns);
  // QUEUE: from the end of the tensor's negotiation to `start_ns`.
  void Queued(const std::string& tensor, int64_t start_ns);
  void Cycle();

 private:
  void WriterLoop();
  // Appends one event line (the caller holds mu_).
  void Emit(std::string line) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int RowOf(const std::string& tensor) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int64_t Micros(int64_t steady_ns) const {
    return (steady_ns - origin_ns_) / 1000;
  }

  std::atomic<bool> active_{false};
  bool mark_cycles_ = false;
  int64_t origin_ns_ = 0;
  Mutex mu_;
  CondVar wake_;
  std::FILE* file_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::vector<std::string> pending_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_map<std::string, int> rows_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, int64_t> agreed_ns_ ABSL_GUARDED_BY(mu_);
  std::thread writer_;
};

// Steady-clock nanoseconds, the timeline's time base.
int64_t TimelineNowNs();

}  // namespace kolo

#endif  // KOLO_RUNTIME_COMMON_TIMELINE_H_
