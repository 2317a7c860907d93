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
#include "runtime/core/mpi_context.h"
#include "runtime/transport/tcp/tcp_transport.h"

namespace kolo {
namespace {

constexpr int kHostBytes = 256;

// What each rank publishes when networked bells are made.
struct BellEndpoint {
  char host[kHostBytes];
  uint16_t port;  // host byte order
  int32_t address_count;
  uint32_t addresses[kMaxTcpAddresses];  // IPv4, network byte order
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
  StatusOr<HostSegments> segments = MapHostSegments(local_comm, 4096);
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
    MPI_Comm comm, const std::string& host) {
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
    const std::vector<uint32_t> addresses = LocalIpv4Addresses();
    mine.address_count = static_cast<int32_t>(
        std::min<size_t>(addresses.size(), kMaxTcpAddresses));
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
  bell->targets_.resize(size);
  for (int rank = 0; rank < size; ++rank) {
    const BellEndpoint& e = endpoints[rank];
    if (e.port == 0) continue;  // that rank has no socket: never rung
    auto add = [&](uint32_t address) {
      sockaddr_in target{};
      target.sin_family = AF_INET;
      target.sin_port = htons(e.port);
      target.sin_addr.s_addr = address;
      bell->targets_[rank].push_back(target);
    };
    if (std::strncmp(e.host, mine.host, kHostBytes) == 0) {
      add(htonl(INADDR_LOOPBACK));
      continue;
    }
    // Which of a remote host's addresses is reachable is unknown; a ring
    // goes to each (rings are idempotent).
    for (int i = 0; i < std::clamp(e.address_count, 0, kMaxTcpAddresses); ++i) {
      add(e.addresses[i]);
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
  const char byte = 1;
  for (const sockaddr_in& target : targets_[rank]) {
    // Best effort: a full buffer or an unreachable address just means the
    // peer finds the message by its fallback poll.
    sendto(udp_, &byte, 1, MSG_DONTWAIT | MSG_NOSIGNAL,
           reinterpret_cast<const sockaddr*>(&target), sizeof(target));
  }
}

void Doorbell::Wait(uint32_t seen, absl::Duration timeout) {
  if (Peek() != seen) return;
  const timespec limit = absl::ToTimespec(timeout);
  if (udp_ < 0) {
    FutexWait(mine_, seen, &limit);
    return;
  }
  pollfd fds[2] = {{event_fd_, POLLIN, 0}, {udp_, POLLIN, 0}};
  if (ppoll(fds, 2, &limit, nullptr) <= 0) return;
  if (fds[0].revents & POLLIN) {
    uint64_t count;
    [[maybe_unused]] ssize_t n = read(event_fd_, &count, sizeof(count));
  }
  if (fds[1].revents & POLLIN) {
    char buffer[64];
    bool rung = false;
    while (recv(udp_, buffer, sizeof(buffer), MSG_DONTWAIT) >= 0) rung = true;
    // A peer's ring counts like a local one: the caller looks for messages.
    if (rung) mine_->fetch_add(1, std::memory_order_release);
  }
}

}  // namespace kolo
