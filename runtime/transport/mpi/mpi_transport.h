// MpiTransport: Transport over MPI point-to-point on a communicator of its
// own (duplicated, so its messages never mix with anything else).
//
// Waiting tests the requests, briefly back to back and then with sleeps
// growing to 1 ms (MPI offers nothing to sleep on), and gives up with Aborted
// when a transfer has not completed within the peer timeout.
#ifndef KOLO_RUNTIME_TRANSPORT_MPI_MPI_TRANSPORT_H_
#define KOLO_RUNTIME_TRANSPORT_MPI_MPI_TRANSPORT_H_

#include <mpi.h>

#include "runtime/transport/transport.h"

namespace kolo {

class MpiTransport : public Transport {
 public:
  // peer_timeout_seconds: how long one transfer may take; 0 = forever.
  static StatusOr<std::unique_ptr<MpiTransport>> Create(
      MPI_Comm comm, double peer_timeout_seconds);
  ~MpiTransport() override;

  const char* name() const override { return "mpi"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  Status SendRecv(int send_peer, const void* send, int64_t send_bytes,
                  int recv_peer, void* recv, int64_t recv_bytes) override;
  // Peers find out by their own bounded waits.
  void Abandon() override {}

 private:
  MpiTransport() = default;

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  double peer_timeout_seconds_ = 5;
};

}  // namespace kolo

#endif  // KOLO_RUNTIME_TRANSPORT_MPI_MPI_TRANSPORT_H_
