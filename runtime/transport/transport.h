// Transport: point-to-point byte exchange among the ranks of a group, for
// the ring algorithms (runtime/backend/ring). Implementations: mpi/ (MPI
// point-to-point on a dedicated communicator) and tcp/ (sockets, one
// connection per pair, for traffic between hosts).
//
// Not thread-safe: used by the background thread only. A broken connection
// (a peer died) fails with Aborted naming the peer.
#ifndef KOLO_RUNTIME_TRANSPORT_TRANSPORT_H_
#define KOLO_RUNTIME_TRANSPORT_TRANSPORT_H_

#include <cstdint>

#include "kolo/status.h"

namespace kolo {

class Transport {
 public:
  virtual ~Transport() = default;

  virtual const char* name() const = 0;
  virtual int rank() const = 0;
  virtual int size() const = 0;

  // Sends send_bytes to send_peer while receiving recv_bytes from recv_peer
  // (either peer may be -1: no transfer that way); returns when both are
  // done. Both sides of each transfer must agree on its size.
  virtual Status SendRecv(int send_peer, const void* send, int64_t send_bytes,
                          int recv_peer, void* recv, int64_t recv_bytes) = 0;

  // Ends every connection so that peers waiting on this rank fail at once
  // (where the transport can tell them; otherwise their waits time out).
  virtual void Abandon() = 0;
};

}  // namespace kolo

#endif  // KOLO_RUNTIME_TRANSPORT_TRANSPORT_H_
