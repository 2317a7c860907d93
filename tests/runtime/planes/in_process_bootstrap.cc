// Implementation of the in-process bootstrap group.
#include "tests/runtime/planes/in_process_bootstrap.h"

#include <chrono>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace kolo::testing {

// One rank's handle: numbers its collectives and forwards them to the group.
class InProcessBootstrap : public Bootstrap {
 public:
  InProcessBootstrap(InProcessGroup* group, int rank)
      : group_(group), rank_(rank) {}
  ~InProcessBootstrap() override { group_->Leave(rank_); }

  int rank() const override { return rank_; }
  int size() const override { return group_->size(); }

  Status Allgather(const void* mine, void* all, int64_t bytes) override {
    std::vector<std::string> parts;
    if (Status s = group_->Exchange(
            rank_, next_round_++, "allgather", bytes,
            std::string(static_cast<const char*>(mine), bytes), &parts);
        !s.ok()) {
      return s;
    }
    for (int r = 0; r < size(); ++r) {
      std::memcpy(static_cast<char*>(all) + r * bytes, parts[r].data(), bytes);
    }
    return absl::OkStatus();
  }

  Status Broadcast(void* buffer, int64_t bytes, int root) override {
    std::vector<std::string> parts;
    std::string mine;
    if (rank_ == root) mine.assign(static_cast<const char*>(buffer), bytes);
    if (Status s = group_->Exchange(rank_, next_round_++,
                                    absl::StrCat("broadcast from ", root),
                                    bytes, std::move(mine), &parts);
        !s.ok()) {
      return s;
    }
    if (rank_ != root) std::memcpy(buffer, parts[root].data(), bytes);
    return absl::OkStatus();
  }

  Status Barrier() override {
    std::vector<std::string> parts;
    return group_->Exchange(rank_, next_round_++, "barrier", 0, "", &parts);
  }

 private:
  InProcessGroup* const group_;
  const int rank_;
  uint64_t next_round_ = 0;
};

InProcessGroup::InProcessGroup(int size, double timeout_seconds)
    : size_(size), timeout_seconds_(timeout_seconds), left_(size, false) {}

std::unique_ptr<Bootstrap> InProcessGroup::Join(int rank) {
  return std::make_unique<InProcessBootstrap>(this, rank);
}

void InProcessGroup::Leave(int rank) {
  MutexLock lock(&mu_);
  left_[rank] = true;
  changed_.SignalAll();
}

Status InProcessGroup::Exchange(int rank, uint64_t round,
                                const std::string& kind, int64_t bytes,
                                std::string contribution,
                                std::vector<std::string>* all) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point deadline =
      Clock::now() + std::chrono::duration_cast<Clock::duration>(
                         std::chrono::duration<double>(timeout_seconds_));
  MutexLock lock(&mu_);
  Round& r = rounds_[round];
  if (r.arrivals == 0) {
    r.kind = kind;
    r.bytes = bytes;
    r.contributions.resize(size_);
    r.arrived.assign(size_, false);
  } else if (r.kind != kind || r.bytes != bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "in-process bootstrap: rank ", rank, " called ", kind, " of ", bytes,
        " bytes as collective #", round, ", which another rank called as ",
        r.kind, " of ", r.bytes, " bytes"));
  }
  r.contributions[rank] = std::move(contribution);
  r.arrived[rank] = true;
  ++r.arrivals;
  changed_.SignalAll();
  while (r.arrivals < size_) {
    std::vector<int> missing;
    std::vector<int> gone;
    for (int peer = 0; peer < size_; ++peer) {
      if (r.arrived[peer]) continue;
      missing.push_back(peer);
      if (left_[peer]) gone.push_back(peer);
    }
    if (!gone.empty()) {
      return absl::AbortedError(absl::StrCat(
          "in-process bootstrap: rank(s) ", absl::StrJoin(gone, ", "),
          " left the group before collective #", round, " (", kind, ")"));
    }
    const double left_seconds =
        std::chrono::duration<double>(deadline - Clock::now()).count();
    if (left_seconds <= 0) {
      return absl::DeadlineExceededError(absl::StrCat(
          "in-process bootstrap: rank(s) ", absl::StrJoin(missing, ", "),
          " did not reach collective #", round, " (", kind, ") within ",
          timeout_seconds_, " s"));
    }
    changed_.WaitWithTimeout(&mu_, left_seconds);
  }
  *all = r.contributions;
  if (++r.reads == size_) rounds_.erase(round);
  return absl::OkStatus();
}

}  // namespace kolo::testing
