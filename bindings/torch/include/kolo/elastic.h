// kolo/elastic.h: the training program's side of kolorun's elastic mode
// (included by kolo/torch.h).
//
// Contract with kolorun. In elastic mode kolorun sets, on every rank,
//   KOLO_ELASTIC_RESTART=<n>     relaunches before this launch (0 at first);
//   KOLO_ELASTIC_STOP_FILE=<p>   a host-local path. When kolorun wants the
//                                job to stop (hosts were added and it will
//                                relaunch with more ranks), the file appears
//                                on every host.
// A program that stops on request writes its checkpoint and exits with
// kStoppedExitCode (75); 0 means the job finished; any other status is a
// failure, after which kolorun relaunches on the hosts that remain. Without
// kolorun neither variable is set: restart_count() is 0, enabled() is false
// and no stop is ever requested.
//
// A relaunched job may have a different number of ranks. ElasticSampler
// hands out an epoch's samples so that every sample of the epoch is trained
// exactly once whatever the world sizes the epoch sees, given its saved
// state (four integers) from the last checkpoint.
//
// Thread safety: the free functions may be called from any thread;
// ElasticSampler is not safe for concurrent use without external
// synchronisation.
#ifndef KOLO_ELASTIC_H_
#define KOLO_ELASTIC_H_

#include <torch/serialize/archive.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kolo/process_set.h"

namespace kolo {
namespace torch {
namespace elastic {

// The exit status of a program that stopped because stop_requested() said
// so, after writing its checkpoint (EX_TEMPFAIL: run me again).
constexpr int kStoppedExitCode = 75;

// KOLO_ELASTIC_RESTART: 0 when unset or empty. Throws c10::Error naming the
// variable and its value when it is not a non-negative integer.
int restart_count();

// Whether KOLO_ELASTIC_STOP_FILE is set and not empty (launched by kolorun's
// elastic mode).
bool enabled();

// Collective (in elastic mode): every rank of `process_set` calls it at the
// same step boundary. True on every rank when the stop file exists on the
// host of any rank: each rank stat()s its local path, then one allreduce
// (max of a 1-element tensor, named "elastic.stop_requested") combines the
// answers. Not in elastic mode it returns false at once without
// communicating; the ranks still agree, since the environment, and so
// enabled(), is the same on all of them.
bool stop_requested(const ProcessSet& process_set = ProcessSet());

// ElasticSampler: the training sampler that survives world-size changes.
//
// Epoch order. Epoch e visits a permutation of 0..dataset_size-1: the
// Fisher-Yates / mt19937_64 order of DistributedSampler with shuffle (seeded
// with seed + e; see kolo/torch.h), the same on every rank. The epoch covers
// the first epoch_samples positions of that order (all by default).
//
// State: the epoch, epoch_samples, and the cursor: positions of the epoch
// consumed by all ranks together. It does not depend on the world size, so
// it survives a relaunch with a different number of ranks.
//
// Steps. NextStep(world, rank, batch) takes the next `rows` positions from
// the cursor and splits them into `world` consecutive shares, one per rank
// in rank order, then advances the cursor by `rows`. With remaining =
// epoch_samples - cursor:
//   - rows = min(world * batch, remaining); if exactly one sample would
//     remain after the step, the step takes it too (one rank then gets
//     batch + 1): no step of a single sample, which batch normalization
//     cannot train on.
//   - With rows >= 2, every non-empty share has at least 2 samples: k =
//     min(world, rows / 2) ranks get a share (only an epoch of one sample
//     gives a share of 1).
//   - The k shares differ by at most one; the lower ranks fill first (take
//     the larger shares), ranks k..world-1 get empty shares.
// Every rank calls NextStep with the same arguments at every step, so the
// cursors agree without communication, and the shares of all ranks over
// all steps cover the epoch's positions exactly once, whatever world sizes
// and batch sizes are used from step to step.
class ElasticSampler {
 public:
  struct Step {
    std::vector<size_t> indices;  // This rank's share (dataset indices).
    int64_t rows = 0;             // The step's total over all ranks.
  };

  // Starts at epoch 0 covering the whole data set.
  // REQUIRES: dataset_size >= 1.
  explicit ElasticSampler(size_t dataset_size, uint64_t seed = 0);

  // Starts `epoch` covering its first `epoch_samples` positions (0: all),
  // at position `cursor` (non-zero to continue an epoch, e.g. from a
  // checkpoint's values). Every rank must use the same values.
  // REQUIRES: epoch >= 0, epoch_samples <= dataset_size, cursor <= the
  // epoch's samples.
  void set_epoch(int64_t epoch, size_t epoch_samples = 0, size_t cursor = 0);

  // This rank's share of the next step (see above); the indices are empty
  // and rows 0 once the epoch is done.
  // REQUIRES: world_size >= 1, 0 <= rank < world_size, batch_size >= 1.
  Step NextStep(int world_size, int rank, int64_t batch_size);

  // The share sizes of a step that starts with `remaining` positions left,
  // indexed by rank (the rule above; NextStep uses it).
  static std::vector<int64_t> StepShares(int64_t remaining, int world_size,
                                         int64_t batch_size);

  // Steps left in the epoch if every remaining step uses (world_size,
  // batch_size).
  int64_t steps_left(int world_size, int64_t batch_size) const;

  int64_t epoch() const { return epoch_; }
  size_t epoch_samples() const { return epoch_samples_; }
  size_t cursor() const { return cursor_; }
  size_t dataset_size() const { return dataset_size_; }
  uint64_t seed() const { return seed_; }
  bool epoch_done() const { return cursor_ >= epoch_samples_; }
  // The epoch's progress, cursor / epoch_samples, in [0, 1].
  double epoch_fraction() const;

  // Writes and reads dataset_size, seed, epoch, epoch_samples and cursor
  // (int64 buffers under those names). load() throws c10::Error naming the
  // entry when the archive's dataset size or seed differ from this
  // sampler's, or its position is outside the epoch.
  void save(::torch::serialize::OutputArchive& archive) const;
  void load(::torch::serialize::InputArchive& archive);

 private:
  size_t dataset_size_;
  uint64_t seed_;
  int64_t epoch_ = 0;
  size_t epoch_samples_;
  size_t cursor_ = 0;
  std::vector<size_t> order_;  // The permutation of epoch_.
};

}  // namespace elastic
}  // namespace torch
}  // namespace kolo

#endif  // KOLO_ELASTIC_H_
