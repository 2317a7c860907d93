// DistributedSampler: rank-sharded, epoch-shuffled indices (see kolo/torch.h
// for the exact order, which is part of the contract).
#include <torch/serialize/archive.h>
#include <torch/types.h>

#include <algorithm>
#include <cstdint>
#include <numeric>

#include "epoch_order.h"
#include "kolo/torch.h"

namespace kolo {
namespace torch {

DistributedSampler::DistributedSampler(size_t dataset_size, int num_replicas,
                                       int rank, bool shuffle, uint64_t seed,
                                       bool drop_last)
    : dataset_size_(dataset_size),
      num_replicas_(num_replicas),
      rank_(rank),
      shuffle_(shuffle),
      seed_(seed),
      drop_last_(drop_last) {
  TORCH_CHECK(num_replicas >= 1, "kolo: num_replicas must be at least 1, got ",
              num_replicas);
  TORCH_CHECK(rank >= 0 && rank < num_replicas, "kolo: rank ", rank,
              " is not in [0, ", num_replicas, ")");
  Recompute();
}

void DistributedSampler::Recompute() {
  std::vector<size_t> order(dataset_size_);
  if (shuffle_) {
    order = internal::ShuffledEpochOrder(dataset_size_, seed_, epoch_);
  } else {
    std::iota(order.begin(), order.end(), size_t{0});
  }
  const size_t replicas = static_cast<size_t>(num_replicas_);
  num_samples_ = drop_last_ ? dataset_size_ / replicas
                            : (dataset_size_ + replicas - 1) / replicas;
  const size_t total = num_samples_ * replicas;
  indices_.clear();
  indices_.reserve(num_samples_);
  for (size_t position = static_cast<size_t>(rank_); position < total;
       position += replicas) {
    // Positions past the end wrap around to the start of the order.
    indices_.push_back(order[position % order.size()]);
  }
  start_ = 0;
  position_ = 0;
}

void DistributedSampler::set_epoch(int64_t epoch) {
  TORCH_CHECK(epoch >= 0, "kolo: epoch must not be negative, got ", epoch);
  epoch_ = epoch;
  Recompute();
}

void DistributedSampler::set_start_batch(int64_t batch, int64_t batch_size) {
  TORCH_CHECK(batch >= 0 && batch_size > 0, "kolo: invalid start batch ", batch,
              " of size ", batch_size);
  start_ = std::min(static_cast<size_t>(batch * batch_size), indices_.size());
  position_ = start_;
}

std::vector<size_t> DistributedSampler::indices() const {
  return std::vector<size_t>(indices_.begin() + start_, indices_.end());
}

void DistributedSampler::reset(c10::optional<size_t> new_size) {
  if (new_size.has_value() && *new_size != dataset_size_) {
    dataset_size_ = *new_size;
    Recompute();
  }
  position_ = start_;
}

c10::optional<std::vector<size_t>> DistributedSampler::next(size_t batch_size) {
  if (position_ >= indices_.size()) return c10::nullopt;
  const size_t end = std::min(position_ + batch_size, indices_.size());
  std::vector<size_t> batch(indices_.begin() + position_,
                            indices_.begin() + end);
  position_ = end;
  return batch;
}

void DistributedSampler::save(
    ::torch::serialize::OutputArchive& archive) const {
  const auto write = [&archive](const char* key, int64_t value) {
    archive.write(key, at::tensor(value, at::kLong), /*is_buffer=*/true);
  };
  write("dataset_size", static_cast<int64_t>(dataset_size_));
  write("num_replicas", num_replicas_);
  write("rank", rank_);
  write("shuffle", shuffle_ ? 1 : 0);
  write("seed", static_cast<int64_t>(seed_));
  write("drop_last", drop_last_ ? 1 : 0);
  write("epoch", epoch_);
  write("start", static_cast<int64_t>(start_));
  write("position", static_cast<int64_t>(position_));
}

void DistributedSampler::load(::torch::serialize::InputArchive& archive) {
  const auto read = [&archive](const char* key) {
    at::Tensor value;
    archive.read(key, value, /*is_buffer=*/true);
    return value.item<int64_t>();
  };
  dataset_size_ = static_cast<size_t>(read("dataset_size"));
  num_replicas_ = static_cast<int>(read("num_replicas"));
  rank_ = static_cast<int>(read("rank"));
  shuffle_ = read("shuffle") != 0;
  seed_ = static_cast<uint64_t>(read("seed"));
  drop_last_ = read("drop_last") != 0;
  epoch_ = read("epoch");
  Recompute();
  start_ = std::min(static_cast<size_t>(read("start")), indices_.size());
  position_ = std::min(static_cast<size_t>(read("position")), indices_.size());
}

}  // namespace torch
}  // namespace kolo
