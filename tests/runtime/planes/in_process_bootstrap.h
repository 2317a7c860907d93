// InProcessGroup: a Bootstrap group (runtime/common/bootstrap.h) whose N
// ranks are threads of one process, so that the data planes' set-up runs in
// a unit test. Each rank takes its handle with Join(rank) and calls it from
// its own thread.
//
// Every collective is a numbered round: a rank leaves its contribution
// under the round's number and waits until every rank has left one, then
// reads them all; the round is forgotten once every rank has read it. A
// rank that never arrives does not hang the others: a wait longer than the
// group's timeout fails with DeadlineExceeded naming the missing ranks, and
// a rank whose handle is destroyed before it arrives fails them at once
// with Aborted. Ranks that disagree on a round's kind or size fail with
// InvalidArgument.
//
// Thread-safe: the group may be used by its N rank threads at once.
#ifndef KOLO_TESTS_RUNTIME_PLANES_IN_PROCESS_BOOTSTRAP_H_
#define KOLO_TESTS_RUNTIME_PLANES_IN_PROCESS_BOOTSTRAP_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "runtime/common/bootstrap.h"
#include "runtime/common/mutex.h"

namespace kolo::testing {

class InProcessGroup {
 public:
  // size ranks; timeout_seconds: how long a rank waits for the others in
  // one collective.
  InProcessGroup(int size, double timeout_seconds);

  int size() const { return size_; }
  // Rank `rank`'s handle. REQUIRES: called once per rank; the group
  // outlives the handle.
  std::unique_ptr<Bootstrap> Join(int rank);

 private:
  friend class InProcessBootstrap;

  struct Round {
    std::string kind;  // "allgather", "broadcast from 1", "barrier"
    int64_t bytes = 0;
    std::vector<std::string> contributions;
    std::vector<bool> arrived;
    int arrivals = 0;
    int reads = 0;
  };

  // Rank `rank`'s part in its round number `round`: leaves `contribution`
  // and, once every rank has, fills `all` (index = rank).
  Status Exchange(int rank, uint64_t round, const std::string& kind,
                  int64_t bytes, std::string contribution,
                  std::vector<std::string>* all);
  // The handle of `rank` is gone: rounds it never reaches fail.
  void Leave(int rank);

  const int size_;
  const double timeout_seconds_;
  Mutex mu_;
  CondVar changed_;
  std::map<uint64_t, Round> rounds_ ABSL_GUARDED_BY(mu_);
  std::vector<bool> left_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kolo::testing

#endif  // KOLO_TESTS_RUNTIME_PLANES_IN_PROCESS_BOOTSTRAP_H_
