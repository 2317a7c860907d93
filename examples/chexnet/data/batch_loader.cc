// BatchLoader: ordered prefetching over worker threads.
#include "examples/chexnet/data/batch_loader.h"

#include <algorithm>
#include <cstring>
#include <exception>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "examples/chexnet/data/random.h"

namespace kolo::chexnet {

BatchLoader::BatchLoader(const ChestXrayDataset* dataset, LoaderOptions options)
    : dataset_(dataset), options_(options) {}

BatchLoader::~BatchLoader() { StopWorkers(); }

void BatchLoader::StopWorkers() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  work_cv_.SignalAll();
  for (std::thread& worker : workers_) worker.join();
  workers_.clear();
}

absl::Status BatchLoader::StartEpoch(std::vector<int64_t> indices,
                                     int64_t epoch) {
  if (options_.batch_size <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("BatchLoader: batch_size (",
                                                   options_.batch_size,
                                                   ") must be positive"));
  }
  StopWorkers();
  indices_ = std::move(indices);
  const int64_t n = static_cast<int64_t>(indices_.size());
  const int64_t num_batches =
      options_.drop_last ? n / options_.batch_size
                         : (n + options_.batch_size - 1) / options_.batch_size;
  batch_starts_.clear();
  for (int64_t b = 0; b <= num_batches; ++b) {
    batch_starts_.push_back(std::min(b * options_.batch_size, n));
  }
  return Start(epoch);
}

absl::Status BatchLoader::StartEpochBatches(
    const std::vector<std::vector<int64_t>>& batches, int64_t epoch) {
  StopWorkers();
  indices_.clear();
  batch_starts_.assign(1, 0);
  for (const std::vector<int64_t>& batch : batches) {
    indices_.insert(indices_.end(), batch.begin(), batch.end());
    batch_starts_.push_back(static_cast<int64_t>(indices_.size()));
  }
  return Start(epoch);
}

absl::Status BatchLoader::Start(int64_t epoch) {
  if (options_.prefetch_batches <= 0 || options_.num_workers < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "BatchLoader: prefetch_batches (", options_.prefetch_batches,
        ") must be positive and "
        "num_workers (",
        options_.num_workers, ") non-negative"));
  }
  for (size_t i = 0; i < indices_.size(); ++i) {
    if (indices_[i] < 0 || indices_[i] >= dataset_->size()) {
      const int64_t bad = indices_[i];
      indices_.clear();
      batch_starts_.assign(1, 0);
      num_batches_ = 0;
      return absl::InvalidArgumentError(
          absl::StrCat("BatchLoader: index ", bad, " at position ", i,
                       " is outside the dataset [0, ", dataset_->size(), ")"));
    }
  }
  epoch_ = epoch;
  num_batches_ = static_cast<int64_t>(batch_starts_.size()) - 1;
  {
    absl::MutexLock lock(&mu_);
    stop_ = false;
    next_to_claim_ = 0;
    next_to_return_ = 0;
    ready_.clear();
  }
  const int64_t num_threads =
      std::min<int64_t>(options_.num_workers, num_batches_);
  for (int64_t i = 0; i < num_threads; ++i) {
    workers_.emplace_back([this] { WorkerLoop(); });
  }
  return absl::OkStatus();
}

void BatchLoader::WorkerLoop() {
  while (true) {
    int64_t batch_number;
    {
      absl::MutexLock lock(&mu_);
      while (!stop_ && next_to_claim_ < num_batches_ &&
             next_to_claim_ >= next_to_return_ + options_.prefetch_batches) {
        work_cv_.Wait(&mu_);
      }
      if (stop_ || next_to_claim_ >= num_batches_) return;
      batch_number = next_to_claim_++;
    }
    // An exception must not end the process from a worker thread (as
    // std::terminate would): Next() hands it to its caller as a Status.
    absl::StatusOr<Batch> batch = absl::UnknownError("no batch");
    try {
      batch = BuildBatch(batch_number);
    } catch (const std::exception& e) {
      batch = absl::InternalError(
          absl::StrCat("cannot build batch ", batch_number, ": ", e.what()));
    }
    {
      absl::MutexLock lock(&mu_);
      ready_.emplace(batch_number, std::move(batch));
    }
    ready_cv_.SignalAll();
  }
}

absl::StatusOr<std::optional<Batch>> BatchLoader::Next() {
  absl::StatusOr<Batch> batch = absl::UnknownError("no batch");
  int64_t wanted;
  {
    absl::MutexLock lock(&mu_);
    if (next_to_return_ >= num_batches_) return std::nullopt;
    wanted = next_to_return_++;
    // Returning a batch moves the prefetch window on by one.
    work_cv_.SignalAll();
    if (!workers_.empty()) {
      while (ready_.count(wanted) == 0) ready_cv_.Wait(&mu_);
      auto it = ready_.find(wanted);
      batch = std::move(it->second);
      ready_.erase(it);
    }
  }
  if (workers_.empty()) batch = BuildBatch(wanted);
  if (!batch.ok()) return batch.status();
  skipped_images_ += static_cast<int64_t>(batch->skipped.size());
  return std::optional<Batch>(*std::move(batch));
}

absl::StatusOr<Batch> BatchLoader::BuildBatch(int64_t batch_number) const {
  const int64_t begin = batch_starts_[batch_number];
  const int64_t end = batch_starts_[batch_number + 1];
  const int64_t size = dataset_->options().image_size;
  const int64_t image_floats = 3 * size * size;

  Batch batch;
  std::vector<Image> images;
  for (int64_t position = begin; position < end; ++position) {
    const int64_t index = indices_[position];
    const bool flip =
        options_.random_horizontal_flip &&
        (HashCombine(HashCombine(options_.seed, epoch_), index) & 1) != 0;
    absl::StatusOr<Image> image = dataset_->LoadImage(index, flip);
    if (!image.ok()) {
      if (!options_.skip_bad_images) return image.status();
      batch.skipped.emplace_back(image.status().message());
      continue;
    }
    images.push_back(*std::move(image));
    batch.indices.push_back(index);
    batch.names.push_back(dataset_->entry(index).image_index);
  }

  const int64_t rows = static_cast<int64_t>(images.size());
  const auto tensor_options =
      torch::TensorOptions(torch::kFloat32).pinned_memory(options_.pin_memory);
  batch.images = torch::empty({rows, 3, size, size}, tensor_options);
  batch.labels = torch::empty({rows, kNumLabels}, tensor_options);
  float* image_data = batch.images.data_ptr<float>();
  float* label_data = batch.labels.data_ptr<float>();
  for (int64_t row = 0; row < rows; ++row) {
    std::memcpy(image_data + row * image_floats, images[row].pixels.data(),
                image_floats * sizeof(float));
    const LabelVector& labels = dataset_->entry(batch.indices[row]).labels;
    std::copy(labels.begin(), labels.end(), label_data + row * kNumLabels);
  }
  return batch;
}

torch::Tensor ImageToTensor(const Image& image) {
  torch::Tensor tensor = torch::empty(
      {image.channels, image.height, image.width}, torch::kFloat32);
  std::memcpy(tensor.data_ptr<float>(), image.pixels.data(),
              image.pixels.size() * sizeof(float));
  return tensor;
}

}  // namespace kolo::chexnet
