// Implementation of the MPI transport.
#include "runtime/transport/mpi/mpi_transport.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <thread>

#include "absl/strings/str_cat.h"
#include "runtime/common/mpi_status.h"

namespace kolo {
namespace {
constexpr int kTag = 11;
// MPI counts are ints: transfers go in pieces of at most 1 GiB.
constexpr int64_t kPiece = int64_t{1} << 30;
constexpr int kBusyTests = 2000;
constexpr auto kLongestSleep = std::chrono::milliseconds(1);
}  // namespace

StatusOr<std::unique_ptr<MpiTransport>> MpiTransport::Create(
    MPI_Comm comm, double peer_timeout_seconds) {
  std::unique_ptr<MpiTransport> transport(new MpiTransport());
  transport->peer_timeout_seconds_ = peer_timeout_seconds;
  KOLO_MPI_RETURN_IF_ERROR(MPI_Comm_dup(comm, &transport->comm_));
  KOLO_MPI_RETURN_IF_ERROR(
      MPI_Comm_set_errhandler(transport->comm_, MPI_ERRORS_RETURN));
  MPI_Comm_rank(transport->comm_, &transport->rank_);
  MPI_Comm_size(transport->comm_, &transport->size_);
  return transport;
}

MpiTransport::~MpiTransport() {
  if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

Status MpiTransport::SendRecv(int send_peer, const void* send,
                              int64_t send_bytes, int recv_peer, void* recv,
                              int64_t recv_bytes) {
  // A transfer is one message, or several of at most kPiece bytes; both
  // sides derive the same count from the size they agree on.
  auto pieces = [](int peer, int64_t bytes) -> int64_t {
    return peer < 0 ? 0 : std::max<int64_t>(1, (bytes + kPiece - 1) / kPiece);
  };
  const int64_t send_pieces = pieces(send_peer, send_bytes);
  const int64_t recv_pieces = pieces(recv_peer, recv_bytes);
  for (int64_t i = 0; i < std::max(send_pieces, recv_pieces); ++i) {
    MPI_Request requests[2] = {MPI_REQUEST_NULL, MPI_REQUEST_NULL};
    if (i < recv_pieces) {
      const int64_t r = std::min(kPiece, recv_bytes - i * kPiece);
      KOLO_MPI_RETURN_IF_ERROR(MPI_Irecv(static_cast<char*>(recv) + i * kPiece,
                                         static_cast<int>(r), MPI_BYTE,
                                         recv_peer, kTag, comm_, &requests[0]));
    }
    if (i < send_pieces) {
      const int64_t s = std::min(kPiece, send_bytes - i * kPiece);
      KOLO_MPI_RETURN_IF_ERROR(MPI_Isend(
          static_cast<const char*>(send) + i * kPiece, static_cast<int>(s),
          MPI_BYTE, send_peer, kTag, comm_, &requests[1]));
    }
    const auto start = std::chrono::steady_clock::now();
    auto sleep = std::chrono::microseconds(10);
    for (int tests = 0;; ++tests) {
      int done = 0;
      KOLO_MPI_RETURN_IF_ERROR(
          MPI_Testall(2, requests, &done, MPI_STATUSES_IGNORE));
      if (done) break;
      if (tests < kBusyTests) continue;
      const double waited = std::chrono::duration<double>(
                                std::chrono::steady_clock::now() - start)
                                .count();
      if (peer_timeout_seconds_ > 0 && waited > peer_timeout_seconds_) {
        // The requests stay posted: the runtime abandons MPI after this.
        return absl::AbortedError(absl::StrCat(
            "mpi transport: a transfer with rank ",
            i < recv_pieces ? recv_peer : send_peer,
            " did not complete within ", peer_timeout_seconds_,
            " s (KOLO_PEER_TIMEOUT_SECONDS): the peer stopped or hung, or "
            "the network between the hosts is down"));
      }
      std::this_thread::sleep_for(sleep);
      sleep = std::min<std::chrono::microseconds>(2 * sleep, kLongestSleep);
    }
  }
  return absl::OkStatus();
}

}  // namespace kolo
