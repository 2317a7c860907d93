// kolo/process_set.h: collectives among a subset of the ranks.
//
// A process set is a group of ranks that runs collectives of its own:
// model-parallel groups, separate evaluation ranks, hierarchical schemes
// written by the application. Every set has its own runtime on its members:
// its own background thread, negotiation (its lowest rank coordinates),
// response cache, fusion and data plane, chosen for the set as Init()
// chooses for the job (shared memory when every member shares a host, the
// ring or hierarchical plane across hosts). So operations in different sets
// never wait for each other, and names are scoped by set: "loss" in set 1
// and "loss" in the global set are different operations.
//
// Creating and removing a set is collective over every rank of the job
// (all ranks call AddProcessSet with the same ranks, in the same order of
// calls): every rank checks that all asked for the same, so a set that
// differs across ranks fails on every rank, naming the ranks and what each
// asked for. A set runs only with MPI_THREAD_MULTIPLE (several runtimes
// talk through MPI at once); Open MPI and MPICH provide it when kolo
// initialises MPI.
//
// Ranks: membership is given and reported in global ranks. Inside a set,
// collectives order ranks by global rank: allgather concatenates in that
// order, alltoall takes one split per member in that order, and
// reducescatter gives the k-th member the k-th share. A broadcast's root is
// a global rank (as in Horovod) and must be a member. Messages from a set's
// runtime about a rank name its position in the set; ProcessSet::ranks()
// maps it back.
//
// Errors: submitting to a set this rank is not in fails with
// InvalidArgument naming the rank and the set; using a removed set fails
// with FailedPrecondition; an unknown id with NotFound.
//
// Thread safety: every function may be called from any thread; adds and
// removes on one rank run one at a time.
#ifndef KOLO_PROCESS_SET_H_
#define KOLO_PROCESS_SET_H_

#include <string>
#include <vector>

#include "kolo/kolo.h"

namespace kolo {

class ProcessSet {
 public:
  // The global set: every rank of the job. The free functions of kolo.h
  // are this set's collectives.
  ProcessSet() = default;
  // The set with this id (0 = global), as AddProcessSet numbered it; ids
  // are checked when the set is used. For bindings that pass ids around.
  static ProcessSet FromId(int id) { return ProcessSet(id); }

  int id() const { return id_; }
  bool is_global() const { return id_ == 0; }
  // The members' global ranks, ascending. Empty when the set does not
  // exist (before Init(), after its removal, an unknown id).
  std::vector<int> ranks() const;
  // Whether this rank is a member.
  bool Included() const;
  // This rank's position among the members (0-based); -1 when it is not a
  // member or the set does not exist.
  int Rank() const;
  // The number of members; -1 when the set does not exist.
  int Size() const;

  // The collectives of kolo.h, among the members. REQUIRES: this rank is a
  // member (else InvalidArgument).
  StatusOr<Handle> AllreduceAsync(const std::string& name, const Tensor& input,
                                  const Tensor& output,
                                  const AllreduceOptions& options = {}) const;
  StatusOr<Handle> GroupedAllreduceAsync(
      const std::vector<std::string>& names, const std::vector<Tensor>& inputs,
      const std::vector<Tensor>& outputs,
      const AllreduceOptions& options = {}) const;
  StatusOr<Handle> AllgatherAsync(const std::string& name, const Tensor& input,
                                  OutputAllocator allocator = nullptr) const;
  StatusOr<Handle> GroupedAllgatherAsync(
      const std::vector<std::string>& names, const std::vector<Tensor>& inputs,
      std::vector<OutputAllocator> allocators = {}) const;
  // root_rank: a global rank, a member of the set.
  StatusOr<Handle> BroadcastAsync(const std::string& name, const Tensor& buffer,
                                  int root_rank) const;
  // splits: one per member (global-rank order); empty = equal parts.
  StatusOr<Handle> AlltoallAsync(const std::string& name, const Tensor& input,
                                 std::vector<int64_t> splits = {},
                                 OutputAllocator allocator = nullptr) const;
  StatusOr<Handle> ReducescatterAsync(const std::string& name,
                                      const Tensor& input,
                                      OutputAllocator allocator = nullptr,
                                      ReduceOp op = ReduceOp::kAverage) const;
  StatusOr<Handle> GroupedReducescatterAsync(
      const std::vector<std::string>& names, const std::vector<Tensor>& inputs,
      ReduceOp op = ReduceOp::kAverage,
      std::vector<OutputAllocator> allocators = {}) const;
  Status Barrier() const;
  // Join among the members: returns the global rank that joined last.
  StatusOr<int> Join() const;
  Status Allreduce(const std::string& name, const Tensor& input,
                   const Tensor& output,
                   const AllreduceOptions& options = {}) const;
  Status Broadcast(const std::string& name, const Tensor& buffer,
                   int root_rank) const;

  // The set's CPU data plane on this rank ("shm", "ring", "hierarchical",
  // "mpi"); "" when this rank is not a member.
  std::string BackendName() const;
  // This rank's counters in the set's runtime (zeros when not a member).
  RuntimeStats GetStats() const;

  bool operator==(const ProcessSet& other) const { return id_ == other.id_; }
  bool operator!=(const ProcessSet& other) const { return id_ != other.id_; }

 private:
  explicit ProcessSet(int id) : id_(id) {}
  int id_ = 0;
};

// Creates a set of the given global ranks (any order, no duplicates, not
// empty) and returns it; its id is the same on every rank. Collective over
// every rank of the job, each passing the same ranks; fails on every rank
// when the ranks differ between ranks (FailedPrecondition, naming them),
// are out of range, repeat a rank, or equal an existing set's
// (InvalidArgument).
StatusOr<ProcessSet> AddProcessSet(const std::vector<int>& ranks);
// Removes a set: its pending operations fail with Cancelled, later use with
// FailedPrecondition. Collective over every rank of the job, as
// AddProcessSet. The global set cannot be removed.
Status RemoveProcessSet(const ProcessSet& set);
// The sets that exist now, the global one first.
std::vector<ProcessSet> ProcessSets();

}  // namespace kolo

#endif  // KOLO_PROCESS_SET_H_
