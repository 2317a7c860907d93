// chexnet_train checkpoints: everything a run needs to continue exactly where
// it stopped, in one LibTorch archive (a zip, torch::serialize format).
//
// Contents:
//   format        "kolo-chexnet-checkpoint-1"
//   meta/...      CheckpointMeta: architecture, input size, optimizer name,
//                 epochs completed, global step, seed, world size, the
//                 plateau schedule's state, the best validation loss so far,
//                 the per-epoch history and, in a mid-epoch (step)
//                 checkpoint, the epoch's steps and partial train-loss sums
//                 (entries older files lack read as 0: an epoch boundary)
//   model         the model's parameters and buffers under their state_dict
//                 names ('.' written as '/')
//   optimizer     the optimizer's state (Optimizer::save; absent in files
//                 written without one)
//   sampler       the training sampler's epoch and position (its save();
//                 chexnet_train writes kolo::torch::elastic::ElasticSampler's
//                 epoch, epoch_samples and cursor; files before it, a
//                 DistributedSampler's)
//
// Files are written atomically and fsync'ed (AtomicFileWriter in
// data/file_util.h): a reader never sees a partial checkpoint. Functions here
// are thread-compatible.
#ifndef KOLO_EXAMPLES_CHEXNET_TRAIN_CHECKPOINT_H_
#define KOLO_EXAMPLES_CHEXNET_TRAIN_CHECKPOINT_H_

#include <torch/data/samplers/base.h>
#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>
#include <torch/serialize/archive.h>

#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "examples/chexnet/models/chexnet_model.h"
#include "examples/chexnet/train/plateau_schedule.h"

namespace kolo::chexnet {

inline constexpr char kCheckpointFormat[] = "kolo-chexnet-checkpoint-1";

// The input sizes and epoch counts a checkpoint may record (chexnet_train's
// --image-size and --epochs ranges).
inline constexpr int64_t kMinCheckpointImageSize = 32;
inline constexpr int64_t kMaxCheckpointImageSize = 2048;
inline constexpr int64_t kMaxCheckpointEpochs = 100000;

// One finished epoch.
struct EpochRecord {
  int64_t epoch = 0;  // From 0.
  double train_loss = 0;
  double validation_loss = 0;
  double validation_auroc = 0;  // Mean over defined classes; NaN if none.
  double learning_rate = 0;     // At the end of the epoch.
  double seconds = 0;           // Training and validation wall time.
};

struct CheckpointMeta {
  std::string arch;  // "densenet121" or "vgg16"
  int64_t image_size = 224;
  int64_t num_classes = kNumFindings;
  std::string optimizer;  // "adam" or "adadelta"
  // The next epoch to run (epochs are numbered from 0).
  int64_t epochs_completed = 0;
  int64_t global_step = 0;
  uint64_t seed = 0;
  int64_t world_size = 1;
  PlateauState plateau;
  double best_validation_loss = std::numeric_limits<double>::infinity();
  int64_t best_epoch = -1;
  std::vector<EpochRecord> history;
  // Mid-epoch checkpoints (0 at an epoch boundary): steps taken so far in
  // epoch epochs_completed, and the sums over all ranks of its train loss
  // times rows, and of its rows.
  int64_t epoch_step = 0;
  double epoch_loss_sum = 0;
  int64_t epoch_loss_rows = 0;
};

using IndexSampler = ::torch::data::samplers::Sampler<std::vector<size_t>>;

// Writes and reads the checkpoint's "sampler" entry, for samplers that are
// not torch samplers (kolo::torch::elastic::ElasticSampler).
using SamplerSaver = std::function<void(::torch::serialize::OutputArchive&)>;
using SamplerLoader = std::function<void(::torch::serialize::InputArchive&)>;

// Writes a checkpoint atomically. optimizer and sampler may be null. Every
// tensor is written on the CPU (the model and optimizer may be on a GPU; the
// optimizer's state is copied off and back, and ends as it was).
absl::Status SaveCheckpoint(const std::string& path, const CheckpointMeta& meta,
                            const ::torch::nn::Module& model,
                            ::torch::optim::Optimizer* optimizer,
                            const IndexSampler* sampler);
absl::Status SaveCheckpoint(const std::string& path, const CheckpointMeta& meta,
                            const ::torch::nn::Module& model,
                            ::torch::optim::Optimizer* optimizer,
                            const SamplerSaver& save_sampler);

// Reads a checkpoint into *meta and, where not null, the model, optimizer
// and sampler (which must have the saved structure). Tensors are read onto
// the device of the optimizer's parameters (the CPU without an optimizer)
// and copied into the model wherever it is. Errors name the file:
// NotFound, InvalidArgument for a file that is not a regular file or not a
// chexnet_train checkpoint, whose meta is not one chexnet_train writes (an
// unknown arch, num_classes other than kNumFindings, an image size outside
// [kMinCheckpointImageSize, kMaxCheckpointImageSize], negative or
// inconsistent counts), or that does not match the model.
absl::Status LoadCheckpoint(const std::string& path, CheckpointMeta* meta,
                            ::torch::nn::Module* model,
                            ::torch::optim::Optimizer* optimizer,
                            IndexSampler* sampler);
absl::Status LoadCheckpoint(const std::string& path, CheckpointMeta* meta,
                            ::torch::nn::Module* model,
                            ::torch::optim::Optimizer* optimizer,
                            const SamplerLoader& load_sampler);

struct CheckpointModel {
  std::shared_ptr<ChexnetModel> model;  // In eval mode.
  CheckpointMeta meta;
};

// Builds the checkpoint's architecture and loads its weights (for predict).
absl::StatusOr<CheckpointModel> LoadModelFromCheckpoint(
    const std::string& path);

}  // namespace kolo::chexnet

#endif  // KOLO_EXAMPLES_CHEXNET_TRAIN_CHECKPOINT_H_
