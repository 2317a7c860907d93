// Implementation of the TCP transport.
#include "runtime/transport/tcp/tcp_transport.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "runtime/core/mpi_context.h"

namespace kolo {
namespace {

constexpr int kHostBytes = 256;
constexpr auto kConnectTimeout = std::chrono::seconds(30);

// What each rank publishes at wire-up.
struct Endpoint {
  char host[kHostBytes];
  uint16_t port;
  int32_t address_count;
  uint32_t addresses[kMaxTcpAddresses];  // IPv4, network byte order
};

Status Errno(absl::string_view what) {
  return absl::InternalError(
      absl::StrCat("tcp transport: ", what, ": ", std::strerror(errno)));
}

void Configure(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  int buffer = 4 << 20;
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buffer, sizeof(buffer));
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buffer, sizeof(buffer));
}

// Blocking full write/read, for the handshake only.
bool WriteAll(int fd, const void* data, size_t bytes) {
  const char* p = static_cast<const char*>(data);
  while (bytes > 0) {
    const ssize_t n = send(fd, p, bytes, MSG_NOSIGNAL);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      return false;
    }
    p += n;
    bytes -= n;
  }
  return true;
}

bool ReadAll(int fd, void* data, size_t bytes) {
  char* p = static_cast<char*>(data);
  while (bytes > 0) {
    const ssize_t n = recv(fd, p, bytes, 0);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      return false;
    }
    p += n;
    bytes -= n;
  }
  return true;
}

// Connects to one of the peer's addresses, retrying until the deadline.
StatusOr<int> ConnectTo(const std::vector<uint32_t>& addresses, uint16_t port,
                        int peer) {
  const auto deadline = std::chrono::steady_clock::now() + kConnectTimeout;
  while (std::chrono::steady_clock::now() < deadline) {
    for (uint32_t address : addresses) {
      const int fd = socket(AF_INET, SOCK_STREAM, 0);
      if (fd < 0) return Errno("socket");
      sockaddr_in target{};
      target.sin_family = AF_INET;
      target.sin_port = htons(port);
      target.sin_addr.s_addr = address;
      if (connect(fd, reinterpret_cast<sockaddr*>(&target), sizeof(target)) ==
          0) {
        return fd;
      }
      close(fd);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("tcp transport: could not connect to rank ", peer,
                   " within ", kConnectTimeout.count(),
                   " s (set KOLO_TCP_IFACE to the interface "
                   "that connects the hosts)"));
}

Status PeerLost(int peer, absl::string_view how) {
  return absl::AbortedError(
      absl::StrCat("tcp transport: connection to rank ", peer, " ", how));
}

}  // namespace

std::vector<uint32_t> LocalIpv4Addresses() {
  const char* only = std::getenv("KOLO_TCP_IFACE");
  std::vector<uint32_t> addresses;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return addresses;
  for (ifaddrs* a = list; a != nullptr; a = a->ifa_next) {
    if (a->ifa_addr == nullptr || a->ifa_addr->sa_family != AF_INET) continue;
    if (!(a->ifa_flags & IFF_UP) || (a->ifa_flags & IFF_LOOPBACK)) continue;
    if (only != nullptr && *only && std::strcmp(only, a->ifa_name) != 0) {
      continue;
    }
    const auto* in = reinterpret_cast<const sockaddr_in*>(a->ifa_addr);
    if (addresses.size() < kMaxTcpAddresses) {
      addresses.push_back(in->sin_addr.s_addr);
    }
  }
  freeifaddrs(list);
  return addresses;
}

StatusOr<std::unique_ptr<TcpTransport>> TcpTransport::Create(MPI_Comm comm) {
  std::unique_ptr<TcpTransport> t(new TcpTransport());
  MPI_Comm_rank(comm, &t->rank_);
  MPI_Comm_size(comm, &t->size_);
  t->sockets_.assign(t->size_, -1);

  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  if (listener < 0) return Errno("socket");
  int one = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in any{};
  any.sin_family = AF_INET;
  any.sin_addr.s_addr = htonl(INADDR_ANY);
  socklen_t length = sizeof(any);
  if (bind(listener, reinterpret_cast<sockaddr*>(&any), sizeof(any)) != 0 ||
      listen(listener, t->size_ + 8) != 0 ||
      getsockname(listener, reinterpret_cast<sockaddr*>(&any), &length) != 0) {
    const Status status = Errno("listen");
    close(listener);
    return status;
  }

  Endpoint mine{};
  gethostname(mine.host, kHostBytes - 1);
  if (const char* name = std::getenv("KOLO_HOSTNAME"); name && *name) {
    std::strncpy(mine.host, name, kHostBytes - 1);
  }
  mine.port = ntohs(any.sin_port);
  const std::vector<uint32_t> addresses = LocalIpv4Addresses();
  mine.address_count = static_cast<int32_t>(
      std::min<size_t>(addresses.size(), kMaxTcpAddresses));
  for (int i = 0; i < mine.address_count; ++i) {
    mine.addresses[i] = addresses[i];
  }
  std::vector<Endpoint> endpoints(t->size_);
  KOLO_MPI_RETURN_IF_ERROR(MPI_Allgather(&mine, sizeof(Endpoint), MPI_BYTE,
                                         endpoints.data(), sizeof(Endpoint),
                                         MPI_BYTE, comm));

  Status status;
  for (int peer = 0; peer < t->rank_ && status.ok(); ++peer) {
    const Endpoint& e = endpoints[peer];
    std::vector<uint32_t> candidates;
    if (std::strncmp(e.host, mine.host, kHostBytes) == 0) {
      candidates.push_back(htonl(INADDR_LOOPBACK));
    }
    for (int i = 0; i < std::clamp(e.address_count, 0, kMaxTcpAddresses);
         ++i) {
      candidates.push_back(e.addresses[i]);
    }
    StatusOr<int> fd = ConnectTo(candidates, e.port, peer);
    if (!fd.ok()) {
      status = fd.status();
      break;
    }
    int32_t me = t->rank_;
    if (!WriteAll(*fd, &me, sizeof(me))) {
      close(*fd);
      status = PeerLost(peer, "failed during the handshake");
      break;
    }
    t->sockets_[peer] = *fd;
  }
  for (int accepted = 0; accepted < t->size_ - 1 - t->rank_ && status.ok();
       ++accepted) {
    pollfd wait{listener, POLLIN, 0};
    if (poll(&wait, 1, static_cast<int>(kConnectTimeout.count() * 1000)) <= 0) {
      status = absl::DeadlineExceededError(
          "tcp transport: a higher rank did not connect in time");
      break;
    }
    const int fd = accept(listener, nullptr, nullptr);
    int32_t peer = -1;
    if (fd < 0 || !ReadAll(fd, &peer, sizeof(peer)) || peer <= t->rank_ ||
        peer >= t->size_ || t->sockets_[peer] >= 0) {
      if (fd >= 0) close(fd);
      status = absl::InternalError("tcp transport: bad handshake");
      break;
    }
    t->sockets_[peer] = fd;
  }
  close(listener);
  if (!status.ok()) return status;
  for (int fd : t->sockets_) {
    if (fd < 0) continue;
    Configure(fd);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  }
  return t;
}

TcpTransport::~TcpTransport() {
  for (int fd : sockets_) {
    if (fd >= 0) close(fd);
  }
}

Status TcpTransport::SendRecv(int send_peer, const void* send,
                              int64_t send_bytes, int recv_peer, void* recv,
                              int64_t recv_bytes) {
  if (send_peer == rank_ || recv_peer == rank_) {
    return absl::InternalError("tcp transport: transfer to self");
  }
  const char* out = static_cast<const char*>(send);
  char* in = static_cast<char*>(recv);
  int64_t sent = send_peer >= 0 ? 0 : send_bytes;
  int64_t received = recv_peer >= 0 ? 0 : recv_bytes;
  while (sent < send_bytes || received < recv_bytes) {
    pollfd fds[2];
    int n = 0;
    int send_index = -1;
    int recv_index = -1;
    if (sent < send_bytes) {
      send_index = n;
      fds[n++] = {sockets_[send_peer], POLLOUT, 0};
    }
    if (received < recv_bytes) {
      recv_index = n;
      fds[n++] = {sockets_[recv_peer], POLLIN, 0};
    }
    if (poll(fds, n, -1) < 0) {
      if (errno == EINTR) continue;
      return Errno("poll");
    }
    if (recv_index >= 0 && fds[recv_index].revents) {
      const ssize_t got =
          ::recv(sockets_[recv_peer], in + received, recv_bytes - received, 0);
      if (got == 0) return PeerLost(recv_peer, "was closed by the peer");
      if (got < 0 && errno != EAGAIN && errno != EINTR) {
        return PeerLost(recv_peer, std::strerror(errno));
      }
      if (got > 0) received += got;
    }
    if (send_index >= 0 && fds[send_index].revents) {
      const ssize_t put = ::send(sockets_[send_peer], out + sent,
                                 send_bytes - sent, MSG_NOSIGNAL);
      if (put < 0 && errno != EAGAIN && errno != EINTR) {
        return PeerLost(send_peer, std::strerror(errno));
      }
      if (put > 0) sent += put;
    }
  }
  return absl::OkStatus();
}

}  // namespace kolo
