// The data-plane factory: which CPU backend a job runs (KOLO_CPU_OPERATIONS
// resolved for its topology) and the transports under the ring algorithms
// (KOLO_RING_TRANSPORT). Every function here is collective over the job's
// communicators: every rank calls it at the same point and reaches the same
// decision.
#ifndef KOLO_RUNTIME_BACKEND_FACTORY_H_
#define KOLO_RUNTIME_BACKEND_FACTORY_H_

#include <memory>
#include <string>

#include "kolo/options.h"
#include "kolo/status.h"
#include "runtime/backend/backend.h"
#include "runtime/common/mpi_context.h"

namespace kolo {

// The CPU data plane: shared memory on one host; hierarchical (shared memory
// inside hosts, a ring across them) on several hosts with equal rank
// counts; a ring otherwise; or what options.cpu_operations forces
// (FailedPrecondition when the topology cannot run it). `secret`
// authenticates TCP transport connections (job_secret.h).
StatusOr<std::unique_ptr<Backend>> MakeBackend(const Options& options,
                                               const MpiContext& mpi,
                                               const std::string& secret);

// A ring over the cross communicator (this local rank on every host): the
// GPU executor's inter-host plane for hierarchical allreduce.
StatusOr<std::unique_ptr<Backend>> MakeCrossBackend(const Options& options,
                                                    const MpiContext& mpi,
                                                    const std::string& secret);

// Whether every host runs the same number of ranks.
StatusOr<bool> Homogeneous(const MpiContext& mpi);

}  // namespace kolo

#endif  // KOLO_RUNTIME_BACKEND_FACTORY_H_
