// TcpTransport: Transport over TCP sockets, one connection per pair of
// ranks, for traffic between hosts.
//
// Wire-up (collective over a Bootstrap, runtime/common/bootstrap.h): every rank
// listens on an ephemeral port on each address it publishes (its IPv4 interface
// addresses, only KOLO_TCP_IFACE's when that is set, plus loopback for peers on
// the same host) and nowhere else. Each rank connects to every lower rank,
// trying the peer's addresses in order (loopback first when the peer is on the
// same host), and accepts connections from every higher rank, all at once in
// one poll() loop. Every connection is authenticated both ways before it is
// used: the listener sends a challenge (a random nonce), the connecting rank
// answers with its rank, its own nonce and an HMAC over both under the job's
// secret, and the listener proves the secret back. A connection that sends
// anything else, or nothing within the handshake deadline, is dropped and
// logged with its address, and accepting goes on; wire-up as a whole is
// bounded too. The listeners are closed once every peer is connected.
//
// Transfers use non-blocking sockets driven by poll(): waiting never spins,
// and a wait in which a peer moves no byte for the peer timeout
// (KOLO_PEER_TIMEOUT_SECONDS) fails with Aborted naming the peer's rank and
// host, as does a closed or reset connection. TCP keepalive and
// TCP_USER_TIMEOUT bound what the kernel waits for too.
#ifndef KOLO_RUNTIME_TRANSPORT_TCP_TCP_TRANSPORT_H_
#define KOLO_RUNTIME_TRANSPORT_TCP_TCP_TRANSPORT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "runtime/common/bootstrap.h"
#include "runtime/transport/transport.h"

namespace kolo {

struct TcpTransportOptions {
  // The job's shared secret (runtime/common/job_secret.h); every rank of
  // the communicator holds the same.
  std::string secret;
  // KOLO_TCP_IFACE: publish and listen on this interface only; empty = all.
  std::string iface;
  // This rank's host name (ranks with the same name connect over loopback).
  std::string hostname;
  // A peer that moves no byte for this long while a transfer waits on it is
  // taken for dead; 0 waits forever.
  double peer_timeout_seconds = 5;
  // Bounds of the wire-up: all of it, and one connection's handshake.
  absl::Duration connect_timeout = absl::Seconds(30);
  absl::Duration handshake_timeout = absl::Seconds(10);
};

class TcpTransport : public Transport {
 public:
  // Collective over `bootstrap` (used during Create only).
  static StatusOr<std::unique_ptr<TcpTransport>> Create(
      Bootstrap* bootstrap, const TcpTransportOptions& options);
  ~TcpTransport() override;

  const char* name() const override { return "tcp"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  Status SendRecv(int send_peer, const void* send, int64_t send_bytes,
                  int recv_peer, void* recv, int64_t recv_bytes) override;
  void Abandon() override;

 private:
  TcpTransport() = default;
  Status PeerLost(int peer, absl::string_view how) const;

  int rank_ = 0;
  int size_ = 1;
  double peer_timeout_seconds_ = 5;
  std::vector<int> sockets_;        // index = peer rank; -1 for this rank
  std::vector<std::string> hosts_;  // index = peer rank
};

}  // namespace kolo

#endif  // KOLO_RUNTIME_TRANSPORT_TCP_TCP_TRANSPORT_H_
