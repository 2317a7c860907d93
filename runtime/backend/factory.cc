// Implementation of the data-plane factory.
#include "runtime/backend/factory.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "runtime/backend/hierarchical/hierarchical_backend.h"
#include "runtime/backend/mpi/mpi_backend.h"
#include "runtime/backend/ring/ring_backend.h"
#include "runtime/backend/shm/shm_backend.h"
#include "runtime/common/mpi_bootstrap.h"
#include "runtime/common/mpi_status.h"
#include "runtime/transport/mpi/mpi_transport.h"
#include "runtime/transport/tcp/tcp_transport.h"

namespace kolo {
namespace {

StatusOr<std::unique_ptr<Backend>> MakeShmBackend(const Options& options,
                                                  const MpiContext& mpi) {
  MpiBootstrap local(mpi.local());
  StatusOr<std::unique_ptr<ShmComm>> comm = ShmComm::Create(
      &local, options.shm_slot_bytes, options.peer_timeout_seconds,
      options.shm_single_copy_bytes);
  if (!comm.ok()) return comm.status();
  return std::unique_ptr<Backend>(new ShmBackend(*std::move(comm)));
}

// Bytes a ring step moves at a time.
constexpr int64_t kRingChunkBytes = int64_t{1} << 20;

// The point-to-point transport for ring algorithms on `comm`
// (KOLO_RING_TRANSPORT).
StatusOr<std::unique_ptr<RingComm>> MakeRing(MPI_Comm comm,
                                             const Options& options,
                                             const MpiContext& mpi,
                                             const std::string& secret) {
  std::unique_ptr<Transport> transport;
  if (options.ring_transport == RingTransport::kTcp) {
    TcpTransportOptions tcp;
    tcp.secret = secret;
    tcp.iface = options.tcp_iface;
    tcp.hostname = mpi.hostname();
    tcp.peer_timeout_seconds = options.peer_timeout_seconds;
    MpiBootstrap bootstrap(comm);
    StatusOr<std::unique_ptr<TcpTransport>> made =
        TcpTransport::Create(&bootstrap, tcp);
    if (!made.ok()) return made.status();
    transport = *std::move(made);
  } else {
    StatusOr<std::unique_ptr<MpiTransport>> made =
        MpiTransport::Create(comm, options.peer_timeout_seconds);
    if (!made.ok()) return made.status();
    transport = *std::move(made);
  }
  return std::make_unique<RingComm>(std::move(transport), kRingChunkBytes);
}

}  // namespace

StatusOr<bool> Homogeneous(const MpiContext& mpi) {
  std::vector<int> local_sizes(mpi.size());
  int mine = mpi.local_size();
  KOLO_MPI_RETURN_IF_ERROR(MPI_Allgather(&mine, 1, MPI_INT, local_sizes.data(),
                                         1, MPI_INT, mpi.data()));
  for (int size : local_sizes) {
    if (size != mine) return false;
  }
  return true;
}

namespace {

StatusOr<std::unique_ptr<Backend>> MakeHierarchicalBackend(
    const Options& options, const MpiContext& mpi, const std::string& secret) {
  MpiBootstrap local_bootstrap(mpi.local());
  StatusOr<std::unique_ptr<ShmComm>> local = ShmComm::Create(
      &local_bootstrap, options.shm_slot_bytes, options.peer_timeout_seconds,
      options.shm_single_copy_bytes);
  if (!local.ok()) return local.status();
  StatusOr<std::unique_ptr<RingComm>> cross =
      MakeRing(mpi.cross(), options, mpi, secret);
  if (!cross.ok()) return cross.status();
  int mine[2] = {mpi.local_rank(), mpi.cross_rank()};
  std::vector<int> all(2 * mpi.size());
  KOLO_MPI_RETURN_IF_ERROR(
      MPI_Allgather(mine, 2, MPI_INT, all.data(), 2, MPI_INT, mpi.data()));
  std::vector<int> local_rank_of(mpi.size());
  std::vector<int> cross_rank_of(mpi.size());
  for (int r = 0; r < mpi.size(); ++r) {
    local_rank_of[r] = all[2 * r];
    cross_rank_of[r] = all[2 * r + 1];
  }
  return std::unique_ptr<Backend>(new HierarchicalBackend(
      *std::move(local), *std::move(cross),
      std::make_unique<MpiBackend>(mpi.data()), std::move(local_rank_of),
      std::move(cross_rank_of)));
}

StatusOr<std::unique_ptr<Backend>> MakeRingBackend(const Options& options,
                                                   const MpiContext& mpi,
                                                   const std::string& secret) {
  StatusOr<std::unique_ptr<RingComm>> ring =
      MakeRing(mpi.data(), options, mpi, secret);
  if (!ring.ok()) return ring.status();
  return std::unique_ptr<Backend>(new RingBackend(*std::move(ring)));
}

}  // namespace

StatusOr<std::unique_ptr<Backend>> MakeBackend(const Options& options,
                                               const MpiContext& mpi,
                                               const std::string& secret) {
  const bool one_host = mpi.local_size() == mpi.size();
  switch (options.cpu_operations) {
    case CpuOperations::kAuto: {
      if (one_host) return MakeShmBackend(options, mpi);
      StatusOr<bool> homogeneous = Homogeneous(mpi);
      if (!homogeneous.ok()) return homogeneous.status();
      return *homogeneous ? MakeHierarchicalBackend(options, mpi, secret)
                          : MakeRingBackend(options, mpi, secret);
    }
    case CpuOperations::kShm:
      if (!one_host) {
        return absl::FailedPreconditionError(absl::StrCat(
            "KOLO_CPU_OPERATIONS=shm needs every rank on one host, but rank ",
            mpi.rank(), " shares its host with only ", mpi.local_size(), " of ",
            mpi.size(), " ranks"));
      }
      return MakeShmBackend(options, mpi);
    case CpuOperations::kRing:
      return MakeRingBackend(options, mpi, secret);
    case CpuOperations::kHierarchical: {
      StatusOr<bool> homogeneous = Homogeneous(mpi);
      if (!homogeneous.ok()) return homogeneous.status();
      if (!*homogeneous) {
        return absl::FailedPreconditionError(
            "KOLO_CPU_OPERATIONS=hierarchical needs the same number of ranks "
            "on every host");
      }
      return MakeHierarchicalBackend(options, mpi, secret);
    }
    case CpuOperations::kMpi:
      break;
  }
  return std::unique_ptr<Backend>(new MpiBackend(mpi.data()));
}

StatusOr<std::unique_ptr<Backend>> MakeCrossBackend(const Options& options,
                                                    const MpiContext& mpi,
                                                    const std::string& secret) {
  StatusOr<std::unique_ptr<RingComm>> ring =
      MakeRing(mpi.cross(), options, mpi, secret);
  if (!ring.ok()) return ring.status();
  return std::unique_ptr<Backend>(new RingBackend(*std::move(ring)));
}

}  // namespace kolo
