// The chexnet_train program: data-parallel CheXNet training on every rank of
// a kolo job, following the Horovod recipe. trainer.cc takes these steps in
// Trainer::Run, one method each.
//
//  1. kolo::torch::init(); torch threads per rank are set and printed.
//  2. Every rank reads the NIH split (validation carved out by patient) and
//     builds the same model from --seed; rank 0 may load --weights, or with
//     --resume the newest valid checkpoint (OUT/last.pt or a step
//     checkpoint) or a given one (model, optimizer, schedule, sampler
//     position, history).
//     broadcast_parameters and broadcast_optimizer_state then give every rank
//     rank 0's state.
//  3. Each epoch, every rank trains on its ElasticSampler share of every
//     step (kolo/elastic.h: every image of the epoch exactly once, whatever
//     world sizes the epoch sees) through a DistributedOptimizer (gradients
//     averaged during backward; a rank's loss is weighted by its share of
//     the step's images, so uneven last steps average per image). Adam's
//     learning rate is lr x ranks, reached by LearningRateWarmup over the
//     fractional epoch progress at the current world size; both optimizers'
//     rates are divided by 10 when the validation loss plateaus.
//     --checkpoint-every-steps writes mid-epoch checkpoints; under kolorun's
//     elastic mode a stop request (kolo::torch::elastic::stop_requested)
//     writes one and ends the run with status 75.
//  4. After each epoch rank 0's batch-norm statistics are broadcast (so every
//     rank evaluates the model that is checkpointed); each rank scores its
//     share of the validation list and the scores are allgathered, so the
//     loss and AUROC are exact over the whole list and the same on every
//     rank. Rank 0 writes OUT/last.pt and, on a new best validation loss,
//     OUT/best.pt, atomically.
//  5. The best model is scored on the test list the same way; rank 0 prints
//     the per-class AUROC table and writes metrics.json, metrics.csv and
//     roc.png into OUT.
//
// Determinism: the initial weights, the shard order, the flips and the
// per-step random state (seeded from --seed, the epoch, the step and the
// rank) depend only on the flags, so a run resumed from last.pt or a step
// checkpoint ends with exactly the parameters of an uninterrupted run with
// the same world size.
#ifndef KOLO_EXAMPLES_CHEXNET_TRAIN_TRAINER_H_
#define KOLO_EXAMPLES_CHEXNET_TRAIN_TRAINER_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "examples/chexnet/train/train_options.h"

namespace kolo::chexnet {

enum class TrainingOutcome {
  kFinished,
  // Stopped on kolorun's request after writing a step checkpoint (exit
  // status kolo::torch::elastic::kStoppedExitCode).
  kStopped,
};

// Runs the whole program on this rank. kolo errors are thrown as c10::Error
// (kolo/torch.h); data, checkpoint and metrics errors are returned.
absl::StatusOr<TrainingOutcome> RunTraining(const TrainOptions& options);

}  // namespace kolo::chexnet

#endif  // KOLO_EXAMPLES_CHEXNET_TRAIN_TRAINER_H_
