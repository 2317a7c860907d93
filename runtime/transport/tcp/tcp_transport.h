// TcpTransport: Transport over TCP sockets, one connection per pair of
// ranks, for traffic between hosts.
//
// Wire-up (collective over an MPI communicator): every rank listens on an
// ephemeral port and publishes its IPv4 interface addresses (KOLO_TCP_IFACE
// restricts them to one interface); each rank connects to every lower rank,
// trying the peer's addresses in order (loopback first when the peer is on
// the same host), and accepts connections from every higher rank. Transfers
// use non-blocking sockets driven by poll(): waiting never spins. A closed
// or reset connection fails with Aborted naming the peer.
#ifndef KOLO_RUNTIME_TRANSPORT_TCP_TCP_TRANSPORT_H_
#define KOLO_RUNTIME_TRANSPORT_TCP_TCP_TRANSPORT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <mpi.h>

#include "runtime/transport/transport.h"

namespace kolo {

// At most this many addresses per rank are published.
inline constexpr int kMaxTcpAddresses = 8;

// This host's IPv4 addresses (network byte order) that peers on other hosts
// may reach: up, not loopback, only KOLO_TCP_IFACE's when it is set.
std::vector<uint32_t> LocalIpv4Addresses();

class TcpTransport : public Transport {
 public:
  static StatusOr<std::unique_ptr<TcpTransport>> Create(MPI_Comm comm);
  ~TcpTransport() override;

  const char* name() const override { return "tcp"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  Status SendRecv(int send_peer, const void* send, int64_t send_bytes,
                  int recv_peer, void* recv, int64_t recv_bytes) override;

 private:
  TcpTransport() = default;

  int rank_ = 0;
  int size_ = 1;
  std::vector<int> sockets_;  // index = peer rank; -1 for this rank
};

}  // namespace kolo

#endif  // KOLO_RUNTIME_TRANSPORT_TCP_TCP_TRANSPORT_H_
