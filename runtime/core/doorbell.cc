// Implementation of the doorbells.
#include "runtime/core/doorbell.h"

#include <arpa/inet.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "runtime/common/futex.h"
#include "runtime/common/job_secret.h"
#include "runtime/common/logging.h"
#include "runtime/common/mpi_bootstrap.h"
#include "runtime/common/mpi_status.h"
#include "runtime/common/net.h"

namespace kolo {
namespace {

constexpr int kHostBytes = 256;
constexpr size_t kTagBytes = 8;
// Datagrams one wait reads at most, and how long the socket is ignored after
// a batch of nothing but junk.
constexpr int kMaxDrain = 32;
constexpr absl::Duration kMute = absl::Milliseconds(1);
constexpr absl::Duration kReportEvery = absl::Seconds(10);

// What each rank publishes when networked bells are made.
struct BellEndpoint {
  char host[kHostBytes];
  uint16_t port;  // host byte order
  int32_t address_count;
  uint32_t addresses[kMaxPublishedAddresses];  // IPv4, network byte order
};

void RingWord(std::atomic<uint32_t>* word) {
  word->fetch_add(1, std::memory_order_release);
  FutexWakeAll(word);
}

Status Errno(absl::string_view what) {
  return absl::InternalError(
      absl::StrCat("networked doorbell: ", what, ": ", std::strerror(errno)));
}

}  // namespace

Doorbell::Doorbell() = default;

Doorbell::~Doorbell() {
  if (udp_ >= 0) close(udp_);
  if (event_fd_ >= 0) close(event_fd_);
}

StatusOr<std::unique_ptr<Doorbell>> Doorbell::CreateShared(
    MPI_Comm local_comm) {
  auto bell = std::make_unique<Doorbell>();
  MpiBootstrap local(local_comm);
  StatusOr<HostSegments> segments = MapHostSegments(&local, 4096);
  if (!segments.ok()) return segments.status();
  bell->segments_ = *std::move(segments);
  int rank = 0;
  MPI_Comm_rank(local_comm, &rank);
  for (const ShmSegment& segment : bell->segments_.segments) {
    bell->peers_.push_back(
        reinterpret_cast<std::atomic<uint32_t>*>(segment.data()));
  }
  bell->mine_ = bell->peers_[rank];
  return bell;
}

StatusOr<std::unique_ptr<Doorbell>> Doorbell::CreateNetworked(
    MPI_Comm comm, const std::string& host, const std::string& iface,
    const std::string& secret) {
  auto bell = std::make_unique<Doorbell>();
  // Every rank takes part in the allgather below even when its own socket
  // failed (it then publishes no port), so that no rank is left waiting.
  Status local;
  BellEndpoint mine{};
  std::strncpy(mine.host, host.c_str(), kHostBytes - 1);
  bell->udp_ = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  bell->event_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  sockaddr_in any{};
  any.sin_family = AF_INET;
  any.sin_addr.s_addr = htonl(INADDR_ANY);
  socklen_t length = sizeof(any);
  if (bell->udp_ < 0 || bell->event_fd_ < 0) {
    local = Errno("socket/eventfd");
  } else if (bind(bell->udp_, reinterpret_cast<sockaddr*>(&any), sizeof(any)) !=
                 0 ||
             getsockname(bell->udp_, reinterpret_cast<sockaddr*>(&any),
                         &length) != 0) {
    local = Errno("bind");
  } else {
    mine.port = ntohs(any.sin_port);
    bell->port_ = mine.port;
    const std::vector<uint32_t> addresses = LocalIpv4Addresses(iface);
    mine.address_count = static_cast<int32_t>(
        std::min<size_t>(addresses.size(), kMaxPublishedAddresses));
    for (int i = 0; i < mine.address_count; ++i) {
      mine.addresses[i] = addresses[i];
    }
  }
  int size = 1;
  MPI_Comm_size(comm, &size);
  std::vector<BellEndpoint> endpoints(size);
  KOLO_MPI_RETURN_IF_ERROR(MPI_Allgather(&mine, sizeof(BellEndpoint), MPI_BYTE,
                                         endpoints.data(), sizeof(BellEndpoint),
                                         MPI_BYTE, comm));
  if (!local.ok()) return local;
  bell->tag_ = Mac(secret, "kolo-doorbell").substr(0, kTagBytes);
  bell->targets_.resize(size);
  for (int rank = 0; rank < size; ++rank) {
    const BellEndpoint& e = endpoints[rank];
    if (e.port == 0) continue;  // that rank has no socket: never rung
    sockaddr_in target{};
    target.sin_family = AF_INET;
    target.sin_port = htons(e.port);
    // A peer's rings come from its socket's port, through loopback or one
    // of its published addresses.
    target.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bell->senders_.push_back(target);
    const int count = std::clamp(e.address_count, 0, kMaxPublishedAddresses);
    for (int i = 0; i < count; ++i) {
      target.sin_addr.s_addr = e.addresses[i];
      bell->senders_.push_back(target);
    }
    if (std::strncmp(e.host, mine.host, kHostBytes) == 0) {
      target.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      bell->targets_[rank].push_back(target);
      continue;
    }
    // Which of a remote host's addresses is reachable is unknown; a ring
    // goes to each (rings are idempotent).
    for (int i = 0; i < count; ++i) {
      target.sin_addr.s_addr = e.addresses[i];
      bell->targets_[rank].push_back(target);
    }
  }
  return bell;
}

void Doorbell::RingSelf() {
  if (event_fd_ < 0) {
    RingWord(mine_);
    return;
  }
  mine_->fetch_add(1, std::memory_order_release);
  const uint64_t one = 1;
  // Fails only when the counter would overflow, i.e. it is readable anyway.
  [[maybe_unused]] ssize_t n = write(event_fd_, &one, sizeof(one));
}

void Doorbell::Ring(int rank) {
  if (udp_ < 0) {
    RingWord(peers_[rank]);
    return;
  }
  for (const sockaddr_in& target : targets_[rank]) {
    // Best effort: a full buffer or an unreachable address just means the
    // peer finds the message by its fallback poll.
    sendto(udp_, tag_.data(), tag_.size(), MSG_DONTWAIT | MSG_NOSIGNAL,
           reinterpret_cast<const sockaddr*>(&target), sizeof(target));
  }
}

void Doorbell::Wait(uint32_t seen, absl::Duration timeout) {
  if (Peek() != seen) return;
  if (udp_ < 0) {
    const timespec limit = absl::ToTimespec(timeout);
    FutexWait(mine_, seen, &limit);
    return;
  }
  // After a flood of junk the socket sits out a little; the caller's
  // fallback poll still finds the messages that rings would announce.
  const absl::Duration mute_left = muted_until_ - absl::Now();
  const bool muted = mute_left > absl::ZeroDuration();
  const timespec limit =
      absl::ToTimespec(muted ? std::min(timeout, mute_left) : timeout);
  pollfd fds[2] = {{event_fd_, POLLIN, 0}, {udp_, POLLIN, 0}};
  if (ppoll(fds, muted ? 1 : 2, &limit, nullptr) <= 0) return;
  if (fds[0].revents & POLLIN) {
    uint64_t count;
    [[maybe_unused]] ssize_t n = read(event_fd_, &count, sizeof(count));
  }
  if (muted || !(fds[1].revents & POLLIN)) return;
  bool rung = false;
  int junk = 0;
  sockaddr_in junk_from{};
  for (int i = 0; i < kMaxDrain; ++i) {
    char buffer[64];
    sockaddr_in from{};
    socklen_t length = sizeof(from);
    const ssize_t n = recvfrom(udp_, buffer, sizeof(buffer), MSG_DONTWAIT,
                               reinterpret_cast<sockaddr*>(&from), &length);
    if (n < 0) break;
    if (Accepted(from, buffer, n)) {
      rung = true;
    } else {
      ++junk;
      junk_from = from;
    }
  }
  // A peer's ring counts like a local one: the caller looks for messages.
  if (rung) mine_->fetch_add(1, std::memory_order_release);
  if (junk == 0) return;
  rejected_ += junk;
  const absl::Time now = absl::Now();
  if (junk == kMaxDrain) muted_until_ = now + kMute;
  if (now >= next_report_) {
    next_report_ = now + kReportEvery;
    Log().warn(
        "networked doorbell: dropped {} datagram(s) so far that did not come "
        "from this job's ranks (latest from {})",
        rejected_, FormatAddress(junk_from));
  }
}

bool Doorbell::Accepted(const sockaddr_in& from, const char* data,
                        ssize_t bytes) const {
  if (bytes != static_cast<ssize_t>(tag_.size()) ||
      !MacEquals(absl::string_view(data, bytes), tag_)) {
    return false;
  }
  for (const sockaddr_in& sender : senders_) {
    if (sender.sin_port == from.sin_port &&
        sender.sin_addr.s_addr == from.sin_addr.s_addr) {
      return true;
    }
  }
  return false;
}

}  // namespace kolo
