// A multi-threaded, prefetching batch loader over a ChestXrayDataset.
//
// Each epoch is given as the list of dataset indices to visit, in order (the
// training binary passes its rank's shard from the DistributedSampler).
// Consecutive runs of batch_size indices form batches, and Next() returns them
// in exactly that order whatever the worker threads' timing: workers decode
// batches ahead into a bounded set of slots, and the consumer takes them by
// sequence number. The contents of every batch, including the random flips,
// depend only on the indices, the epoch and the seed.
//
// Thread safety: one thread drives a BatchLoader (StartEpoch, Next); the
// workers are internal.
#ifndef KOLO_EXAMPLES_CHEXNET_DATA_BATCH_LOADER_H_
#define KOLO_EXAMPLES_CHEXNET_DATA_BATCH_LOADER_H_

#include <torch/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "examples/chexnet/data/dataset.h"
#include "examples/chexnet/data/image.h"

namespace kolo::chexnet {

struct Batch {
  ::torch::Tensor images;          // [B, 3, S, S] float32, preprocessed.
  ::torch::Tensor labels;          // [B, kNumLabels] float32, multi-hot.
  std::vector<std::string> names;  // Image file name of each row.
  std::vector<int64_t> indices;    // Dataset index of each row.
  // Images of this batch's slice that failed to load and were left out
  // (only with skip_bad_images): "<path>: <reason>" each.
  std::vector<std::string> skipped;
};

struct LoaderOptions {
  // Images per batch. The last batch of an epoch may be smaller.
  int64_t batch_size = 16;
  // Drop a final batch smaller than batch_size.
  bool drop_last = false;
  // Decoding threads. 0 decodes in the thread that calls Next().
  int num_workers = 2;
  // Most batches decoded ahead of the consumer (the queue bound); memory is
  // about prefetch_batches * batch_size * 3 * S * S * 4 bytes. At least 1.
  int prefetch_batches = 4;
  // Mirror each image left-right with probability 1/2 (training
  // augmentation). The decision for an image is a hash of (seed, epoch,
  // dataset index), so it is the same on every run and every rank.
  bool random_horizontal_flip = false;
  uint64_t seed = 0;
  // On a missing or undecodable image: false fails that batch's Next() with
  // the error; true leaves the image out of its batch, lists it in
  // Batch::skipped and counts it in skipped_images(). A batch whose images
  // all fail is still returned, with zero rows, so every rank sees the same
  // number of batches.
  bool skip_bad_images = false;
  // Allocate the batch tensors in page-locked host memory (LibTorch's
  // pinned allocator), so that copies to a GPU can be asynchronous
  // (non_blocking). Needs a CUDA LibTorch; leave off for CPU training.
  bool pin_memory = false;
};

class BatchLoader {
 public:
  // `dataset` must outlive the loader.
  BatchLoader(const ChestXrayDataset* dataset, LoaderOptions options);
  ~BatchLoader();

  BatchLoader(const BatchLoader&) = delete;
  BatchLoader& operator=(const BatchLoader&) = delete;

  // Begins an epoch over `indices` (each in [0, dataset size); repeats are
  // allowed) and starts the workers. An unfinished previous epoch is
  // abandoned. Returns InvalidArgument for an index out of range.
  absl::Status StartEpoch(std::vector<int64_t> indices, int64_t epoch);
  // As above, with the batches given explicitly (chexnet_train's elastic
  // shares): batch_size and drop_last do not apply, batches may differ in
  // size, and an empty one is returned as a batch of zero rows.
  absl::Status StartEpochBatches(
      const std::vector<std::vector<int64_t>>& batches, int64_t epoch);

  // The next batch of the epoch, nullopt after the last one, or the error of
  // an image that failed to load (naming its file). Blocks while the batch
  // is being decoded. REQUIRES: StartEpoch was called.
  absl::StatusOr<std::optional<Batch>> Next();

  // Batches in the current epoch.
  int64_t num_batches() const { return num_batches_; }

  // Images skipped in the batches returned so far, over all epochs.
  int64_t skipped_images() const { return skipped_images_; }

 private:
  // Starts the workers over indices_ cut at batch_starts_.
  absl::Status Start(int64_t epoch);
  void WorkerLoop();
  absl::StatusOr<Batch> BuildBatch(int64_t batch_number) const;
  void StopWorkers();

  const ChestXrayDataset* const dataset_;
  const LoaderOptions options_;

  // Set by StartEpoch while no worker runs; read-only while workers run.
  std::vector<int64_t> indices_;
  // Batch b is indices_[batch_starts_[b], batch_starts_[b + 1]).
  std::vector<int64_t> batch_starts_;
  int64_t epoch_ = 0;
  int64_t num_batches_ = 0;
  int64_t skipped_images_ = 0;  // Touched by the consumer thread only.
  std::vector<std::thread> workers_;

  absl::Mutex mu_;
  absl::CondVar work_cv_;   // Signalled when a slot frees up or on stop.
  absl::CondVar ready_cv_;  // Signalled when a batch is ready.
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  int64_t next_to_claim_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t next_to_return_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<int64_t, absl::StatusOr<Batch>> ready_ ABSL_GUARDED_BY(mu_);
};

// Copies a [3, H, W] Image into a new float32 tensor of that shape (add a
// batch dimension with unsqueeze(0) for a model).
::torch::Tensor ImageToTensor(const Image& image);

}  // namespace kolo::chexnet

#endif  // KOLO_EXAMPLES_CHEXNET_DATA_BATCH_LOADER_H_
