// Implementation of the in-memory transport.
#include "tests/runtime/planes/memory_transport.h"

#include <cstring>
#include <functional>
#include <string_view>

#include "absl/strings/str_cat.h"

namespace kolo::testing {
namespace {

uint64_t Checksum(const std::string& bytes) {
  return std::hash<std::string_view>()(bytes) ^ bytes.size();
}

}  // namespace

// One rank's endpoint.
class MemoryTransport : public Transport {
 public:
  MemoryTransport(MemoryNetwork* network, int rank)
      : network_(network), rank_(rank) {}
  ~MemoryTransport() override { network_->Close(rank_); }

  const char* name() const override { return "memory"; }
  int rank() const override { return rank_; }
  int size() const override { return network_->size(); }

  Status SendRecv(int send_peer, const void* send, int64_t send_bytes,
                  int recv_peer, void* recv, int64_t recv_bytes) override {
    if (send_peer == rank_ || recv_peer == rank_) {
      return absl::InternalError("memory transport: transfer to self");
    }
    if (send_peer >= 0) {
      if (Status s = network_->Send(rank_, send_peer, send, send_bytes);
          !s.ok()) {
        return s;
      }
    }
    if (recv_peer >= 0) {
      return network_->Receive(rank_, recv_peer, recv, recv_bytes);
    }
    return absl::OkStatus();
  }

  void Abandon() override { network_->Close(rank_); }

 private:
  MemoryNetwork* const network_;
  const int rank_;
};

MemoryNetwork::MemoryNetwork(int size, double peer_timeout_seconds)
    : size_(size),
      peer_timeout_seconds_(peer_timeout_seconds),
      mailboxes_(size * size),
      closed_(size, false),
      delay_seconds_(size, 0.0),
      corrupt_next_(size * size, false) {}

std::unique_ptr<Transport> MemoryNetwork::Connect(int rank) {
  return std::make_unique<MemoryTransport>(this, rank);
}

void MemoryNetwork::Close(int rank) {
  MutexLock lock(&mu_);
  closed_[rank] = true;
  changed_.SignalAll();
}

void MemoryNetwork::SetDelay(int rank, double seconds) {
  MutexLock lock(&mu_);
  delay_seconds_[rank] = seconds;
}

void MemoryNetwork::CorruptNext(int from, int to) {
  MutexLock lock(&mu_);
  corrupt_next_[Box(from, to)] = true;
}

Status MemoryNetwork::Send(int from, int to, const void* data, int64_t bytes) {
  Message message;
  message.bytes.assign(static_cast<const char*>(data), bytes);
  message.checksum = Checksum(message.bytes);
  MutexLock lock(&mu_);
  if (closed_[from]) {
    return absl::AbortedError(absl::StrCat(
        "memory transport: rank ", from, " sends after closing its endpoint"));
  }
  if (closed_[to]) {
    return absl::AbortedError(
        absl::StrCat("memory transport: rank ", to, " closed its endpoint"));
  }
  if (corrupt_next_[Box(from, to)] && bytes > 0) {
    corrupt_next_[Box(from, to)] = false;
    message.bytes[bytes / 2] ^= 0x40;
  }
  message.deliver_at =
      Clock::now() + std::chrono::duration_cast<Clock::duration>(
                         std::chrono::duration<double>(delay_seconds_[from]));
  mailboxes_[Box(from, to)].push_back(std::move(message));
  changed_.SignalAll();
  return absl::OkStatus();
}

Status MemoryNetwork::Receive(int to, int from, void* data, int64_t bytes) {
  const Clock::time_point give_up =
      Clock::now() + std::chrono::duration_cast<Clock::duration>(
                         std::chrono::duration<double>(peer_timeout_seconds_));
  MutexLock lock(&mu_);
  std::deque<Message>& box = mailboxes_[Box(from, to)];
  while (true) {
    if (closed_[to]) {
      return absl::AbortedError(absl::StrCat("memory transport: rank ", to,
                                             " receives after closing its "
                                             "endpoint"));
    }
    const Clock::time_point now = Clock::now();
    if (!box.empty() && box.front().deliver_at <= now) break;
    if (box.empty() && closed_[from]) {
      return absl::AbortedError(absl::StrCat("memory transport: rank ", from,
                                             " closed its endpoint"));
    }
    // A delayed message postpones the peer timeout: the peer did send.
    const Clock::time_point until =
        box.empty() ? give_up : std::max(give_up, box.front().deliver_at);
    if (now >= until) {
      return absl::AbortedError(absl::StrCat("memory transport: rank ", from,
                                             " delivered no data for ",
                                             peer_timeout_seconds_, " s"));
    }
    changed_.WaitWithTimeout(
        &mu_, std::chrono::duration<double>(
                  (box.empty() ? until : box.front().deliver_at) - now)
                  .count());
  }
  Message message = std::move(box.front());
  box.pop_front();
  if (static_cast<int64_t>(message.bytes.size()) != bytes) {
    return absl::InternalError(absl::StrCat(
        "memory transport: rank ", from, " sent ", message.bytes.size(),
        " bytes where rank ", to, " expected ", bytes));
  }
  if (Checksum(message.bytes) != message.checksum) {
    return absl::DataLossError(
        absl::StrCat("memory transport: the message "
                     "from rank ",
                     from, " to rank ", to, " was corrupted (checksum)"));
  }
  if (bytes > 0) std::memcpy(data, message.bytes.data(), bytes);
  return absl::OkStatus();
}

}  // namespace kolo::testing
