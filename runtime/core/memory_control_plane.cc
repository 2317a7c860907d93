// Implementation of the in-process control plane.
#include "runtime/core/memory_control_plane.h"

#include "absl/strings/str_cat.h"

namespace kolo {

std::vector<std::unique_ptr<InMemoryControlPlane>> InMemoryControlPlane::Create(
    int size) {
  auto hub = std::make_shared<Hub>(size);
  std::vector<std::unique_ptr<InMemoryControlPlane>> endpoints;
  for (int rank = 0; rank < size; ++rank) {
    endpoints.emplace_back(new InMemoryControlPlane(hub, rank));
  }
  return endpoints;
}

Status InMemoryControlPlane::Send(int dest,
                                  std::shared_ptr<const std::string> bytes) {
  MutexLock lock(&hub_->mu);
  if (dest < 0 || dest >= static_cast<int>(hub_->arrived.size())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "control plane: no rank ", dest, " among ", hub_->arrived.size()));
  }
  if (!hub_->closed[rank_]) outgoing_.emplace_back(dest, std::move(bytes));
  return absl::OkStatus();
}

Status InMemoryControlPlane::Pump(std::vector<int>* delivered,
                                  bool /*expecting*/) {
  MutexLock lock(&hub_->mu);
  for (auto& [dest, bytes] : outgoing_) {
    if (hub_->closed[dest]) continue;  // a dead rank reads nothing
    hub_->arrived[dest].push_back(Message{rank_, *bytes});
    if (delivered != nullptr) delivered->push_back(dest);
  }
  outgoing_.clear();
  std::deque<Message>& mine = hub_->arrived[rank_];
  while (!mine.empty()) {
    inbox_.push_back(std::move(mine.front()));
    mine.pop_front();
  }
  return absl::OkStatus();
}

std::optional<ControlPlane::Message> InMemoryControlPlane::Next() {
  if (inbox_.empty()) return std::nullopt;
  Message message = std::move(inbox_.front());
  inbox_.pop_front();
  return message;
}

void InMemoryControlPlane::Close() {
  MutexLock lock(&hub_->mu);
  hub_->closed[rank_] = true;
  hub_->arrived[rank_].clear();
}

}  // namespace kolo
