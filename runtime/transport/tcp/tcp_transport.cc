// Implementation of the TCP transport.
#include "runtime/transport/tcp/tcp_transport.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <deque>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/common/job_secret.h"
#include "runtime/common/logging.h"
#include "runtime/common/net.h"

namespace kolo {
namespace {

constexpr int kHostBytes = 256;
// Loopback first, then the published interface addresses.
constexpr int kMaxListeners = kMaxPublishedAddresses + 1;
constexpr int kNonceBytes = 16;
constexpr char kMagic[8] = {'K', 'O', 'L', 'O', 'T', 'C', 'P', '1'};
// Listener -> connector: magic, listener's rank, listener's nonce.
constexpr size_t kHelloBytes = sizeof(kMagic) + 4 + kNonceBytes;
// Connector -> listener: connector's rank, its nonce, its MAC.
constexpr size_t kAnswerBytes = 4 + kNonceBytes + kMacBytes;
// Listener -> connector: the listener's MAC.
constexpr size_t kProofBytes = kMacBytes;
// Unauthenticated incoming connections held at once; more push out the
// oldest, so a flood of idle connections cannot exhaust descriptors.
constexpr size_t kMaxPendingAccepts = 64;
constexpr auto kRedialDelay = std::chrono::milliseconds(20);

using Clock = std::chrono::steady_clock;

// What each rank publishes at wire-up.
struct Endpoint {
  char host[kHostBytes];
  int32_t ok;  // 0: this rank could not listen (error[] says why)
  int32_t count;
  uint32_t addresses[kMaxListeners];  // IPv4, network byte order
  uint16_t ports[kMaxListeners];      // host byte order
  char error[256];
};

Status Errno(absl::string_view what) {
  return absl::InternalError(
      absl::StrCat("tcp transport: ", what, ": ", std::strerror(errno)));
}

std::string PutInt(int32_t value) {
  const uint32_t wire = htonl(static_cast<uint32_t>(value));
  return std::string(reinterpret_cast<const char*>(&wire), 4);
}

int32_t GetInt(const char* bytes) {
  uint32_t wire;
  std::memcpy(&wire, bytes, 4);
  return static_cast<int32_t>(ntohl(wire));
}

// What both sides MAC: the role, both ranks and both nonces, so a MAC proves
// the secret for this connection only.
std::string MacInput(absl::string_view role, int listener, int connector,
                     const std::string& listener_nonce,
                     const std::string& connector_nonce) {
  return absl::StrCat("kolo-tcp-", role, PutInt(listener), PutInt(connector),
                      listener_nonce, connector_nonce);
}

void SetNonBlocking(int fd) {
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

// A connection whose handshake is under way.
struct Handshake {
  enum class Stage {
    kConnecting,  // outgoing: connect() in progress
    kHello,       // outgoing: reading the listener's challenge
    kProof,       // outgoing: reading the listener's proof
    kAnswer,      // incoming: reading the connector's answer
    kFlush,       // incoming: sending the proof, then done
  };
  int fd = -1;
  bool outgoing = false;
  int peer = -1;  // outgoing: the rank dialled; incoming: the one claimed
  size_t candidate = 0;  // outgoing: index into the peer's addresses
  std::string where;     // the remote address, for logs
  Clock::time_point deadline;
  Stage stage = Stage::kConnecting;
  std::string in;
  size_t want = 0;
  std::string out;
  std::string listener_nonce;
  std::string connector_nonce;
};

// Wire-up state of one rank: its listeners, the handshakes in flight and
// the connections made.
class Wireup {
 public:
  Wireup(int rank, int size, const TcpTransportOptions& options,
         std::vector<Endpoint> endpoints, std::vector<int> listeners,
         std::vector<int>* sockets)
      : rank_(rank),
        size_(size),
        options_(options),
        endpoints_(std::move(endpoints)),
        listeners_(std::move(listeners)),
        sockets_(*sockets),
        redial_at_(size, Clock::time_point::min()),
        dialling_(size, false) {}

  ~Wireup() {
    for (Handshake& h : handshakes_) {
      if (h.fd >= 0) close(h.fd);
    }
  }

  Status Run();

 private:
  int Missing() const;
  std::vector<int> Candidates(int peer) const;
  void Dial(int peer, size_t candidate, Clock::time_point now);
  void Accept(int listener, Clock::time_point now);
  // Moves bytes and stages; returns false when the handshake is over (done
  // or dropped; its descriptor is then taken or closed).
  bool Advance(Handshake& h, short revents, Clock::time_point now);
  bool Process(Handshake& h, Clock::time_point now);
  // Ends a handshake that failed: incoming ones are logged and dropped,
  // outgoing ones try the peer's next address.
  void Fail(Handshake& h, absl::string_view why, Clock::time_point now);

  const int rank_;
  const int size_;
  const TcpTransportOptions& options_;
  const std::vector<Endpoint> endpoints_;
  const std::vector<int> listeners_;
  std::vector<int>& sockets_;
  std::vector<Clock::time_point> redial_at_;
  std::vector<bool> dialling_;
  std::deque<Handshake> handshakes_;
  Status error_;
};

int Wireup::Missing() const {
  int missing = 0;
  for (int peer = 0; peer < size_; ++peer) {
    if (peer != rank_ && sockets_[peer] < 0) ++missing;
  }
  return missing;
}

std::vector<int> Wireup::Candidates(int peer) const {
  const Endpoint& e = endpoints_[peer];
  const bool same_host =
      std::strncmp(e.host, endpoints_[rank_].host, kHostBytes) == 0;
  std::vector<int> out;
  const int count = std::clamp(e.count, 0, kMaxListeners);
  // On one host: loopback first, then the interface addresses; across hosts
  // only the interface addresses.
  if (same_host) {
    for (int i = 0; i < count; ++i) {
      if (e.addresses[i] == htonl(INADDR_LOOPBACK)) out.push_back(i);
    }
  }
  for (int i = 0; i < count; ++i) {
    if (e.addresses[i] != htonl(INADDR_LOOPBACK)) out.push_back(i);
  }
  return out;
}

void Wireup::Dial(int peer, size_t candidate, Clock::time_point now) {
  const std::vector<int> indices = Candidates(peer);
  if (candidate >= indices.size()) {
    // Every address failed this round; try them all again shortly.
    dialling_[peer] = false;
    redial_at_[peer] = now + kRedialDelay;
    return;
  }
  const Endpoint& e = endpoints_[peer];
  const int index = indices[candidate];
  sockaddr_in target{};
  target.sin_family = AF_INET;
  target.sin_port = htons(e.ports[index]);
  target.sin_addr.s_addr = e.addresses[index];
  Handshake h;
  h.outgoing = true;
  h.peer = peer;
  h.candidate = candidate;
  h.where = FormatAddress(target);
  h.deadline = now + absl::ToChronoNanoseconds(options_.handshake_timeout);
  h.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  dialling_[peer] = true;
  if (h.fd < 0) {
    error_ = Errno("socket");
    return;
  }
  if (connect(h.fd, reinterpret_cast<sockaddr*>(&target), sizeof(target)) !=
          0 &&
      errno != EINPROGRESS) {
    close(h.fd);
    Dial(peer, candidate + 1, now);
    return;
  }
  h.stage = Handshake::Stage::kConnecting;
  handshakes_.push_back(std::move(h));
}

void Wireup::Accept(int listener, Clock::time_point now) {
  while (true) {
    sockaddr_in from{};
    socklen_t length = sizeof(from);
    const int fd = accept4(listener, reinterpret_cast<sockaddr*>(&from),
                           &length, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;  // EAGAIN, or a connection that vanished
    size_t pending = 0;
    for (const Handshake& h : handshakes_) {
      pending += !h.outgoing && h.fd >= 0 ? 1 : 0;
    }
    if (pending >= kMaxPendingAccepts) {
      // Closed in place: the handshakes' order matches the poll set.
      for (Handshake& oldest : handshakes_) {
        if (oldest.outgoing || oldest.fd < 0) continue;
        Log().warn(
            "tcp transport: dropped a connection from {}: too many "
            "unauthenticated connections at once",
            oldest.where);
        close(oldest.fd);
        oldest.fd = -1;
        break;
      }
    }
    Handshake h;
    h.fd = fd;
    h.where = FormatAddress(from);
    h.deadline = now + absl::ToChronoNanoseconds(options_.handshake_timeout);
    h.stage = Handshake::Stage::kAnswer;
    h.want = kAnswerBytes;
    StatusOr<std::string> nonce = RandomBytes(kNonceBytes);
    if (!nonce.ok()) {
      error_ = nonce.status();
      close(fd);
      return;
    }
    h.listener_nonce = *nonce;
    h.out = absl::StrCat(absl::string_view(kMagic, sizeof(kMagic)),
                         PutInt(rank_), h.listener_nonce);
    handshakes_.push_back(std::move(h));
  }
}

void Wireup::Fail(Handshake& h, absl::string_view why, Clock::time_point now) {
  close(h.fd);
  h.fd = -1;
  if (h.outgoing) {
    Log().debug("tcp transport: connecting to rank {} at {}: {}", h.peer,
                h.where, std::string(why));
    Dial(h.peer, h.candidate + 1, now);
    return;
  }
  Log().warn("tcp transport: dropped a connection from {}: {}", h.where,
             std::string(why));
}

bool Wireup::Process(Handshake& h, Clock::time_point now) {
  const std::string& secret = options_.secret;
  switch (h.stage) {
    case Handshake::Stage::kHello: {
      if (std::memcmp(h.in.data(), kMagic, sizeof(kMagic)) != 0 ||
          GetInt(h.in.data() + sizeof(kMagic)) != h.peer) {
        Fail(h, "it is not that rank's kolo listener", now);
        return false;
      }
      h.listener_nonce = h.in.substr(sizeof(kMagic) + 4, kNonceBytes);
      StatusOr<std::string> nonce = RandomBytes(kNonceBytes);
      if (!nonce.ok()) {
        error_ = nonce.status();
        close(h.fd);
        h.fd = -1;
        return false;
      }
      h.connector_nonce = *nonce;
      h.out = absl::StrCat(
          PutInt(rank_), h.connector_nonce,
          Mac(secret, MacInput("connector", h.peer, rank_, h.listener_nonce,
                               h.connector_nonce)));
      h.stage = Handshake::Stage::kProof;
      h.in.clear();
      h.want = kProofBytes;
      return true;
    }
    case Handshake::Stage::kProof: {
      if (!MacEquals(h.in, Mac(secret, MacInput("listener", h.peer, rank_,
                                                h.listener_nonce,
                                                h.connector_nonce)))) {
        // The address answered as that rank but without the job's secret.
        Fail(h, "it could not prove it belongs to this job", now);
        return false;
      }
      sockets_[h.peer] = h.fd;
      dialling_[h.peer] = false;
      h.fd = -1;
      return false;
    }
    case Handshake::Stage::kAnswer: {
      const int claimed = GetInt(h.in.data());
      h.connector_nonce = h.in.substr(4, kNonceBytes);
      const std::string mac = h.in.substr(4 + kNonceBytes, kMacBytes);
      if (claimed <= rank_ || claimed >= size_) {
        Fail(h,
             absl::StrCat("it claimed rank ", claimed,
                          ", which does not connect to rank ", rank_),
             now);
        return false;
      }
      if (!MacEquals(mac, Mac(secret,
                              MacInput("connector", rank_, claimed,
                                       h.listener_nonce, h.connector_nonce)))) {
        Fail(h,
             absl::StrCat("it claimed rank ", claimed,
                          " without proving the job's secret"),
             now);
        return false;
      }
      if (sockets_[claimed] >= 0) {
        Fail(h, absl::StrCat("rank ", claimed, " is already connected"), now);
        return false;
      }
      h.peer = claimed;
      h.out = Mac(secret, MacInput("listener", rank_, claimed, h.listener_nonce,
                                   h.connector_nonce));
      h.stage = Handshake::Stage::kFlush;
      h.in.clear();
      h.want = 0;
      return true;
    }
    case Handshake::Stage::kConnecting:
    case Handshake::Stage::kFlush:
      break;
  }
  return true;
}

bool Wireup::Advance(Handshake& h, short revents, Clock::time_point now) {
  if (h.stage == Handshake::Stage::kConnecting) {
    if (!(revents & (POLLOUT | POLLERR | POLLHUP))) return true;
    int error = 0;
    socklen_t length = sizeof(error);
    getsockopt(h.fd, SOL_SOCKET, SO_ERROR, &error, &length);
    if (error != 0) {
      Fail(h, std::strerror(error), now);
      return false;
    }
    h.stage = Handshake::Stage::kHello;
    h.want = kHelloBytes;
    return true;
  }
  if ((revents & POLLOUT) && !h.out.empty()) {
    const ssize_t n = send(h.fd, h.out.data(), h.out.size(), MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
      Fail(h, std::strerror(errno), now);
      return false;
    }
    if (n > 0) h.out.erase(0, n);
  }
  if (h.stage == Handshake::Stage::kFlush && h.out.empty()) {
    sockets_[h.peer] = h.fd;
    h.fd = -1;
    return false;
  }
  if ((revents & (POLLIN | POLLHUP | POLLERR)) && h.in.size() < h.want) {
    char buffer[128];
    const ssize_t n =
        recv(h.fd, buffer, std::min(sizeof(buffer), h.want - h.in.size()), 0);
    if (n == 0) {
      Fail(h, "it closed the connection during the handshake", now);
      return false;
    }
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) return true;
      Fail(h, std::strerror(errno), now);
      return false;
    }
    h.in.append(buffer, n);
    if (h.in.size() == h.want && !Process(h, now)) return false;
  }
  return true;
}

Status Wireup::Run() {
  const Clock::time_point deadline =
      Clock::now() + absl::ToChronoNanoseconds(options_.connect_timeout);
  while (Missing() > 0 && error_.ok()) {
    Clock::time_point now = Clock::now();
    if (now >= deadline) break;
    for (int peer = 0; peer < rank_; ++peer) {
      if (sockets_[peer] < 0 && !dialling_[peer] && now >= redial_at_[peer]) {
        Dial(peer, 0, now);
      }
    }
    std::vector<pollfd> fds;
    for (int fd : listeners_) fds.push_back({fd, POLLIN, 0});
    Clock::time_point wake = deadline;
    for (const Handshake& h : handshakes_) {
      short events = 0;
      if (h.stage == Handshake::Stage::kConnecting || !h.out.empty()) {
        events |= POLLOUT;
      }
      if (h.in.size() < h.want) events |= POLLIN;
      fds.push_back({h.fd, events, 0});
      wake = std::min(wake, h.deadline);
    }
    for (int peer = 0; peer < rank_; ++peer) {
      if (sockets_[peer] < 0 && !dialling_[peer]) {
        wake = std::min(wake, redial_at_[peer]);
      }
    }
    const auto wait_ms = std::chrono::ceil<std::chrono::milliseconds>(
        std::max(wake - now, Clock::duration::zero()));
    if (poll(fds.data(), fds.size(), static_cast<int>(wait_ms.count())) < 0 &&
        errno != EINTR) {
      return Errno("poll");
    }
    now = Clock::now();
    for (size_t i = 0; i < listeners_.size(); ++i) {
      if (fds[i].revents & POLLIN) Accept(listeners_[i], now);
    }
    // Handshakes added by Accept() or Dial() during this pass (at the end)
    // were not polled yet; they are advanced from the next pass on.
    const size_t polled = fds.size() - listeners_.size();
    std::deque<Handshake> next;
    for (size_t i = 0; i < handshakes_.size(); ++i) {
      Handshake& h = handshakes_[i];
      bool keep = h.fd >= 0;
      if (keep && i < polled) {
        keep = Advance(h, fds[listeners_.size() + i].revents, now);
      }
      if (keep && h.fd >= 0 && now >= h.deadline) {
        Fail(h, "it sent no valid handshake in time", now);
        keep = false;
      }
      if (keep && h.fd >= 0) {
        next.push_back(std::move(h));
        h.fd = -1;
      }
    }
    handshakes_.swap(next);
  }
  if (!error_.ok()) return error_;
  if (Missing() == 0) return absl::OkStatus();
  std::vector<std::string> missing;
  for (int peer = 0; peer < size_; ++peer) {
    if (peer != rank_ && sockets_[peer] < 0) {
      missing.push_back(
          absl::StrCat("rank ", peer, " on host '",
                       std::string(endpoints_[peer].host,
                                   strnlen(endpoints_[peer].host, kHostBytes)),
                       "'"));
    }
  }
  return absl::DeadlineExceededError(absl::StrCat(
      "tcp transport: rank ", rank_, " could not connect with ",
      absl::StrJoin(missing, ", "), " within ",
      absl::FormatDuration(options_.connect_timeout),
      " (a firewall between the hosts, or set KOLO_TCP_IFACE to the interface "
      "that connects them)"));
}

// Listens on loopback and on each published address; fills `mine`.
Status Listen(const TcpTransportOptions& options, Endpoint* mine,
              std::vector<int>* listeners) {
  std::vector<uint32_t> addresses = {htonl(INADDR_LOOPBACK)};
  const std::vector<uint32_t> published = LocalIpv4Addresses(options.iface);
  if (!options.iface.empty() && published.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "KOLO_TCP_IFACE='", options.iface,
        "': no interface of that name is up with an IPv4 address"));
  }
  addresses.insert(addresses.end(), published.begin(), published.end());
  for (uint32_t address : addresses) {
    const int fd =
        socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return Errno("socket");
    listeners->push_back(fd);
    sockaddr_in at{};
    at.sin_family = AF_INET;
    at.sin_addr.s_addr = address;
    socklen_t length = sizeof(at);
    if (bind(fd, reinterpret_cast<sockaddr*>(&at), sizeof(at)) != 0 ||
        listen(fd, 128) != 0 ||
        getsockname(fd, reinterpret_cast<sockaddr*>(&at), &length) != 0) {
      return Errno(absl::StrCat("listen on ", FormatAddress(address, 0)));
    }
    mine->addresses[mine->count] = address;
    mine->ports[mine->count] = ntohs(at.sin_port);
    ++mine->count;
  }
  return absl::OkStatus();
}

void Configure(int fd, double peer_timeout_seconds) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  int buffer = 4 << 20;
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buffer, sizeof(buffer));
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buffer, sizeof(buffer));
  if (peer_timeout_seconds <= 0) return;
  // The kernel gives up on a peer that stops acknowledging (a host that lost
  // power, a cut link) within the peer timeout too, also while kolo is idle.
  const int third = std::max(1, static_cast<int>(peer_timeout_seconds / 3));
  const int probes = 3;
  const unsigned int user_timeout =
      static_cast<unsigned int>(peer_timeout_seconds * 1000);
  setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &third, sizeof(third));
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &third, sizeof(third));
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof(probes));
  setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout,
             sizeof(user_timeout));
}

}  // namespace

StatusOr<std::unique_ptr<TcpTransport>> TcpTransport::Create(
    Bootstrap* bootstrap, const TcpTransportOptions& options) {
  std::unique_ptr<TcpTransport> t(new TcpTransport());
  t->rank_ = bootstrap->rank();
  t->size_ = bootstrap->size();
  t->peer_timeout_seconds_ = options.peer_timeout_seconds;
  t->sockets_.assign(t->size_, -1);
  if (options.secret.size() != kJobSecretBytes) {
    return absl::InternalError("tcp transport: the job secret is missing");
  }

  // Every rank takes part in the exchange even when it could not listen, so
  // that every rank fails together, naming the one at fault.
  Endpoint mine{};
  std::strncpy(mine.host, options.hostname.c_str(), kHostBytes - 1);
  std::vector<int> listeners;
  const Status listening = Listen(options, &mine, &listeners);
  mine.ok = listening.ok() ? 1 : 0;
  std::strncpy(mine.error, std::string(listening.message()).c_str(),
               sizeof(mine.error) - 1);
  std::vector<Endpoint> endpoints(t->size_);
  auto close_listeners = [&listeners] {
    for (int fd : listeners) close(fd);
  };
  if (Status s = bootstrap->Allgather(&mine, endpoints.data(), sizeof(mine));
      !s.ok()) {
    close_listeners();
    return s;
  }
  for (int r = 0; r < t->size_; ++r) {
    if (!endpoints[r].ok) {
      close_listeners();
      return absl::FailedPreconditionError(absl::StrCat(
          "tcp transport: rank ", r, " could not listen: ",
          std::string(
              endpoints[r].error,
              strnlen(endpoints[r].error, sizeof(endpoints[r].error)))));
    }
    t->hosts_.emplace_back(endpoints[r].host,
                           strnlen(endpoints[r].host, kHostBytes));
  }
  Status status;
  {
    Wireup wireup(t->rank_, t->size_, options, std::move(endpoints), listeners,
                  &t->sockets_);
    status = wireup.Run();
  }
  close_listeners();
  // Every rank learns whether every rank is connected.
  StatusOr<bool> all_ok = bootstrap->AllTrue(status.ok());
  if (!all_ok.ok()) return all_ok.status();
  if (!status.ok()) return status;
  if (!*all_ok) {
    return absl::FailedPreconditionError(
        "tcp transport: another rank could not connect with its peers (its "
        "log says why)");
  }
  for (int fd : t->sockets_) {
    if (fd < 0) continue;
    Configure(fd, options.peer_timeout_seconds);
    SetNonBlocking(fd);
  }
  return t;
}

TcpTransport::~TcpTransport() {
  for (int fd : sockets_) {
    if (fd >= 0) close(fd);
  }
}

void TcpTransport::Abandon() {
  for (int fd : sockets_) {
    if (fd >= 0) shutdown(fd, SHUT_RDWR);
  }
}

Status TcpTransport::PeerLost(int peer, absl::string_view how) const {
  return absl::AbortedError(absl::StrCat("tcp transport: connection to rank ",
                                         peer, " on host '", hosts_[peer], "' ",
                                         how));
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
  const auto patience = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(peer_timeout_seconds_));
  Clock::time_point last_progress = Clock::now();
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
    int timeout_ms = -1;
    if (peer_timeout_seconds_ > 0) {
      const Clock::duration left = last_progress + patience - Clock::now();
      if (left <= Clock::duration::zero()) {
        const int silent = received < recv_bytes ? recv_peer : send_peer;
        return PeerLost(
            silent,
            absl::StrCat(received < recv_bytes ? "delivered no data"
                                               : "accepted no data",
                         " for ", peer_timeout_seconds_,
                         " s (KOLO_PEER_TIMEOUT_SECONDS): the peer stopped or "
                         "hung, or the network between the hosts is down"));
      }
      timeout_ms = static_cast<int>(
          std::chrono::ceil<std::chrono::milliseconds>(left).count());
    }
    const int ready = poll(fds, n, timeout_ms);
    if (ready < 0) {
      if (errno == EINTR) continue;
      return Errno("poll");
    }
    if (ready == 0) continue;
    if (recv_index >= 0 && fds[recv_index].revents) {
      const ssize_t got =
          ::recv(sockets_[recv_peer], in + received, recv_bytes - received, 0);
      if (got == 0) return PeerLost(recv_peer, "was closed by the peer");
      if (got < 0 && errno != EAGAIN && errno != EINTR) {
        return PeerLost(recv_peer, std::strerror(errno));
      }
      if (got > 0) {
        received += got;
        last_progress = Clock::now();
      }
    }
    if (send_index >= 0 && fds[send_index].revents) {
      const ssize_t put = ::send(sockets_[send_peer], out + sent,
                                 send_bytes - sent, MSG_NOSIGNAL);
      if (put < 0 && errno != EAGAIN && errno != EINTR) {
        return PeerLost(send_peer, std::strerror(errno));
      }
      if (put > 0) {
        sent += put;
        last_progress = Clock::now();
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace kolo
